"""Configurations to compare: a proxy URL or an exported model, plus per-request rerank knobs.

`--variants FILE` (YAML or JSON) lists more than one reranked configuration; BM25 straight from
OpenSearch is always the baseline. Each entry names a `proxy` URL or a `model` export directory,
and may set `rerank` knobs that travel in the search body as `ext.rerank` (the proxy reads and
removes them before the request goes upstream) and extra request `headers`::

    - name: minilm-w50
      proxy: http://127.0.0.1:8080
      rerank: {window: 50}
    - name: minilm-w100
      proxy: http://127.0.0.1:8080
      rerank: {window: 100}
    - name: bm25-through-proxy
      proxy: http://127.0.0.1:8080
      headers: {X-Rerank: "off"}

Example:
    >>> [v.name for v in parse_variants([{"name": "w50", "proxy": "http://p:8080", "rerank": {"window": 50}}])]
    ['w50']
    >>> RerankKnobs(window=50).as_ext()
    {'rerank': {'window': 50}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from es_rerank.evaluation.protocol import BM25
from es_rerank.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KNOBS = ("enabled", "window", "fields", "query_text")
VARIANT_KEYS = ("name", "proxy", "model", "rerank", "headers")


@dataclass(frozen=True)
class RerankKnobs:
    """Per-request settings the proxy reads from `ext.rerank`; None leaves the proxy's default."""

    enabled: bool | None = None
    window: int | None = None
    fields: tuple[str, ...] | None = None
    query_text: str | None = None

    def __post_init__(self) -> None:
        if self.enabled is not None and not isinstance(self.enabled, bool):
            raise ConfigError(f"rerank.enabled must be true or false, got {self.enabled!r}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or self.window < 1):
            raise ConfigError(f"rerank.window must be a positive integer, got {self.window!r}")
        if self.fields is not None and (not self.fields or not all(isinstance(f, str) and f for f in self.fields)):
            raise ConfigError(f"rerank.fields must be a non-empty list of field names, got {self.fields!r}")
        if self.query_text is not None and not isinstance(self.query_text, str):
            raise ConfigError(f"rerank.query_text must be a string, got {self.query_text!r}")

    def as_ext(self) -> dict:
        """The `ext` member to merge into a search body; empty when no knob is set."""
        knobs = {name: getattr(self, name) for name in KNOBS if getattr(self, name) is not None}
        if "fields" in knobs:
            knobs["fields"] = list(knobs["fields"])
        return {"rerank": knobs} if knobs else {}

    @classmethod
    def from_mapping(cls, data: object, where: str) -> "RerankKnobs":
        """Build from a mapping such as a variants-file entry's `rerank:`."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: rerank must be a mapping of {', '.join(KNOBS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(KNOBS))
        if unknown:
            raise ConfigError(f"{where}: unknown rerank knob(s) {unknown}", hint=f"allowed: {', '.join(KNOBS)}")
        fields = data.get("fields")
        if isinstance(fields, str):
            fields = [part.strip() for part in fields.split(",")]
        return cls(enabled=data.get("enabled"), window=data.get("window"),
                   fields=tuple(fields) if isinstance(fields, (list, tuple)) else fields,
                   query_text=data.get("query_text"))


@dataclass(frozen=True)
class Variant:
    """One reranked configuration: served by `proxy` (a URL) or by an in-process proxy on `model`."""

    name: str
    proxy: str | None = None
    model: Path | None = None
    rerank: RerankKnobs = field(default_factory=RerankKnobs)
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise ConfigError(f"variant name {self.name!r} is not usable in file names",
                              hint="use letters, digits, '.', '_' or '-', at most 64 characters")
        if self.name == BM25:
            raise ConfigError(f"variant name {BM25!r} is reserved for the OpenSearch baseline",
                              hint="pick another name, e.g. 'bm25-through-proxy'")
        if (self.proxy is None) == (self.model is None):
            raise ConfigError(f"variant {self.name!r} needs exactly one of proxy (a URL) or model (an export dir)",
                              hint=f"got proxy={self.proxy!r}, model={self.model!r}")


def parse_variants(entries: object, where: str = "variants") -> list[Variant]:
    """Validate the decoded variants file: a list of mappings with unique names.

    Example:
        >>> parse_variants([{"name": "a", "proxy": "http://x"}, {"name": "a", "proxy": "http://y"}])
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: variants: variant name 'a' appears twice (give each variant its own name)
    """
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: expected a non-empty list of variants, got {type(entries).__name__}",
                          hint="each item: {name, proxy | model, rerank: {...}, headers: {...}}")
    variants, names = [], set()
    for position, entry in enumerate(entries, start=1):
        label = f"{where} item {position}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label}: expected a mapping, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(VARIANT_KEYS))
        if unknown:
            raise ConfigError(f"{label}: unknown key(s) {unknown}", hint=f"allowed: {', '.join(VARIANT_KEYS)}")
        headers = entry.get("headers") or {}
        if not isinstance(headers, dict):
            raise ConfigError(f"{label}: headers must be a mapping of header name to value")
        variant = Variant(
            name=str(entry.get("name") or ""),
            proxy=entry.get("proxy"),
            model=Path(entry["model"]) if entry.get("model") else None,
            rerank=RerankKnobs.from_mapping(entry.get("rerank"), label),
            headers=tuple((str(k), str(v)) for k, v in headers.items()),
        )
        if variant.name in names:
            raise ConfigError(f"{where}: variant name {variant.name!r} appears twice",
                              hint="give each variant its own name")
        names.add(variant.name)
        variants.append(variant)
    return variants


def load_variants(path: Path) -> list[Variant]:
    """Read and validate a YAML or JSON variants file.
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read variants file {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"variants file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}",
                          hint="see `es-rerank ab --help` for the format") from exc
    variants = parse_variants(data, where=str(path.name))
    # A relative model path means relative to the variants file, wherever the command runs from.
    return [replace(v, model=path.parent / v.model) if v.model and not v.model.is_absolute() else v
            for v in variants]
