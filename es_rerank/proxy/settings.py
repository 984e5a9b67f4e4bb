"""Settings for `es-rerank serve`: frozen dataclasses built once by the CLI and passed down.

Per-index rerank rules (which indices, text fields, window, deadline, score fusion, or reranking
switched off) come from `--index` options or from a small YAML/TOML file; everything else comes
from options or `ES_RERANK_*` environment variables. Nothing here reads the environment itself.

Switch reranking off (`rerank: false`) for any index where an A/B test (`es-rerank ab`, or the
online one) shows the reranked order losing to BM25: its searches then pass through untouched.

Example:
    >>> rules = rules_from_mapping({"indices": {"scifact": {"window": 50}}}, IndexRule("*"))
    >>> rules[0].pattern, rules[0].fields, rules[0].window
    ('scifact', ('title', 'text'), 50)
    >>> rules[0].matches("scifact"), rules[0].matches("other")
    (True, False)
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlsplit

from es_rerank.errors import ConfigError

if TYPE_CHECKING:
    from es_rerank.proxy.online_ab.assignment import OnlineAbConfig
    from es_rerank.scoring.fusion import FusionWeights

DEFAULT_FIELDS = ("title", "text")
OVERLOAD_ACTIONS = ("shed", "degrade")
# --upstream-engine: auto tells the engine from its answers (es_rerank.proxy.upstream_engine).
UPSTREAM_ENGINES = ("auto", "opensearch", "elasticsearch")
RULE_KEYS = ("deadline_ms", "dense_model", "fields", "fusion", "fusion_file", "rerank", "window")
PATTERN_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class IndexRule:
    """How searches on indices matching `pattern` (a name, alias or `*` pattern) are reranked.

    `rerank=False` switches reranking off: matching searches pass through untouched.
    `fusion` mixes the cross-encoder score with BM25 and dense scores (None: cross-encoder
    only); `dense_model` names the bi-encoder export that gives the dense scores.

    Example:
        >>> IndexRule("docs-*", fields=("body",)).matches("docs-2024")
        True
        >>> IndexRule("x", window=0)
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: rerank window for 'x' must be a positive integer, got 0 (set window to e.g. 100)
    """

    pattern: str
    fields: tuple[str, ...] = DEFAULT_FIELDS
    window: int = 100
    deadline_ms: int = 1000
    rerank: bool = True
    fusion: FusionWeights | None = None
    dense_model: str | None = None

    def __post_init__(self) -> None:
        if not self.pattern or not isinstance(self.pattern, str):
            raise ConfigError(f"index pattern must be a non-empty string, got {self.pattern!r}",
                              hint="name an index, alias or pattern such as scifact or docs-*")
        if not self.fields or not all(isinstance(f, str) and f for f in self.fields):
            raise ConfigError(f"text fields for {self.pattern!r} must be non-empty names, got {self.fields!r}",
                              hint="give e.g. fields: [title, text]")
        _positive_int(self.window, f"rerank window for {self.pattern!r}", "set window to e.g. 100")
        _positive_int(self.deadline_ms, f"rerank deadline for {self.pattern!r}", "set deadline_ms to e.g. 1000")
        if not isinstance(self.rerank, bool):
            raise ConfigError(f"rerank for {self.pattern!r} must be true or false, got {self.rerank!r}",
                              hint="rerank: false lets this index's searches pass through unreranked")
        if self.dense_model is not None and (not isinstance(self.dense_model, str) or not self.dense_model):
            raise ConfigError(f"dense_model for {self.pattern!r} must be a directory name, got {self.dense_model!r}",
                              hint="give the directory `es-rerank export-dense` wrote")

    @property
    def is_pattern(self) -> bool:
        """True when `pattern` has wildcards (`*`, `?`, `[`), False for a plain index or alias name.

        Example:
            >>> IndexRule("logs-*").is_pattern, IndexRule("logs-1").is_pattern
            (True, False)
        """
        return any(char in PATTERN_CHARS for char in self.pattern)

    def check_dense(self) -> None:
        """Refuse fusion weights that need dense scores when no dense model is configured.

        Example:
            >>> from es_rerank.scoring.fusion import FusionWeights
            >>> IndexRule("a", fusion=FusionWeights(ce=0.5, dense=0.5)).check_dense()
            Traceback (most recent call last):
            ...
            es_rerank.errors.ConfigError: index 'a' fuses dense scores (fusion weight dense=0.5) but has no dense model (give it dense_model: DIR in the config, or pass --dense-model DIR (a bi-encoder export from `es-rerank export-dense`); or set its dense weight to 0)
        """
        if self.rerank and self.fusion is not None and self.fusion.needs_dense and self.dense_model is None:
            raise ConfigError(f"index {self.pattern!r} fuses dense scores (fusion weight dense={self.fusion.dense:g}) "
                              "but has no dense model",
                              hint="give it dense_model: DIR in the config, or pass --dense-model DIR (a bi-encoder "
                                   "export from `es-rerank export-dense`); or set its dense weight to 0")

    def matches(self, index: str) -> bool:
        """True when the (already URL-decoded) index name falls under this rule.

        Example:
            >>> IndexRule("logs-*").matches("logs-1"), IndexRule("logs-*").matches("metrics")
            (True, False)
        """
        return fnmatch.fnmatchcase(index, self.pattern)


@dataclass(frozen=True)
class UpstreamSettings:
    """Where OpenSearch is and how long to wait for it. The URL is fixed here, never taken from a request.

    For an `https` URL, `ca_file` names a PEM bundle of CAs to trust instead of the system's (a
    private CA); `verify=False` turns certificate checks off altogether (test clusters only).
    `engine` is the engine whose answers the proxy's own look like (`auto`: told from its answers).

    Example:
        >>> UpstreamSettings("http://h:9200", ca_file=Path("ca.pem"))
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: a CA file only applies to an https OpenSearch URL, got 'http://h:9200' (use https://... or drop --opensearch-ca-file)
    """

    url: str
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 60.0
    pool_size: int = 256
    ca_file: Path | None = None
    verify: bool = True
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.engine not in UPSTREAM_ENGINES:
            raise ConfigError(f"upstream engine must be one of {', '.join(UPSTREAM_ENGINES)}, got {self.engine!r}",
                              hint="use --upstream-engine auto (told from the upstream's answers)")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OpenSearch URL {self.url!r} is not an http(s) URL", hint="use e.g. http://127.0.0.1:9200")
        if parts.username or parts.password:
            raise ConfigError("the proxy's OpenSearch URL must not carry credentials",
                              hint="clients send their own Authorization header, which the proxy forwards as sent")
        if parts.query or parts.fragment:
            raise ConfigError(f"OpenSearch URL {self.url!r} must not have a query or fragment", hint="give scheme://host:port[/prefix]")
        _positive_number(self.connect_timeout_s, "connect timeout", "e.g. --connect-timeout-s 2")
        _positive_number(self.read_timeout_s, "read timeout", "e.g. --read-timeout-s 60")
        _positive_int(self.pool_size, "upstream connection pool size", "e.g. 256")
        if (self.ca_file is not None or not self.verify) and parts.scheme != "https":
            what = "a CA file" if self.ca_file is not None else "turning certificate checks off"
            flag = "--opensearch-ca-file" if self.ca_file is not None else "--opensearch-insecure"
            raise ConfigError(f"{what} only applies to an https OpenSearch URL, got {self.url!r}",
                              hint=f"use https://... or drop {flag}")
        if self.ca_file is not None and not self.verify:
            raise ConfigError("--opensearch-ca-file and --opensearch-insecure contradict each other",
                              hint="keep the CA file and drop --opensearch-insecure: it checks the certificate")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigError(f"OpenSearch CA file {self.ca_file} does not exist",
                              hint="pass the PEM file of the CA that signed OpenSearch's HTTP certificate")

    @property
    def base(self) -> str:
        """The URL without a trailing slash; request paths are appended to it unchanged.

        Example:
            >>> UpstreamSettings("http://h:9200/").base
            'http://h:9200'
        """
        return self.url.rstrip("/")


@dataclass(frozen=True)
class LimitSettings:
    """Request limits. 100 MiB matches OpenSearch's own `http.max_content_length` default."""

    max_body_bytes: int = 100 * 1024 * 1024
    max_json_depth: int = 100
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _positive_int(self.max_body_bytes, "body size limit", "e.g. --max-body-bytes 104857600")
        _positive_int(self.max_json_depth, "JSON depth limit", "e.g. --max-json-depth 100")
        _positive_number(self.body_timeout_s, "body read timeout", "e.g. --body-timeout-s 30")


@dataclass(frozen=True)
class LoadSettings:
    """How many reranked searches may run at once, and what happens past that bound.

    `shed` answers `shed_status` (429 or 503) with `Retry-After`; `degrade` serves the BM25 page.
    """

    max_in_flight: int = 64
    overload: str = "shed"
    shed_status: int = 429
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        _positive_int(self.max_in_flight, "max in-flight reranks", "e.g. --max-in-flight 64")
        if self.overload not in OVERLOAD_ACTIONS:
            raise ConfigError(f"overload action must be one of {OVERLOAD_ACTIONS}, got {self.overload!r}",
                              hint="use --overload shed or --overload degrade")
        if self.shed_status not in (429, 503):
            raise ConfigError(f"shed status must be 429 or 503, got {self.shed_status!r}", hint="use --shed-status 429")
        _positive_int(self.retry_after_s, "Retry-After seconds", "e.g. --retry-after-s 1")


@dataclass(frozen=True)
class BatchSettings:
    """The scoring worker: how many pairs one model call may take, and whether requests share calls."""

    max_pairs: int = 512
    cross_request: bool = True
    # Threads that tokenize searches before they queue for the model (0: one per CPU, at most 8).
    encode_threads: int = 0

    def __post_init__(self) -> None:
        _positive_int(self.max_pairs, "batch size in pairs", "e.g. --batch-max-pairs 512")
        if not isinstance(self.encode_threads, int) or self.encode_threads < 0:
            raise ConfigError(f"encode threads must be an int >= 0, got {self.encode_threads!r}",
                              hint="e.g. --encode-threads 4 (0: one per CPU, at most 8)")


@dataclass(frozen=True)
class ServerSettings:
    """Where the proxy listens and how it drains on SIGTERM."""

    host: str = "127.0.0.1"
    port: int = 9201
    drain_delay_s: float = 0.0
    drain_timeout_s: float = 30.0
    header_timeout_s: float = 10.0  # from a request's first byte to the end of its headers
    max_connections: int = 1024  # client connections open at once; more are closed on arrival
    # One of `serve --workers N`'s processes: share the port with the others (SO_REUSEPORT), also
    # answer on `own_socket` (a Unix socket), and sum the peers' metrics read from `peer_sockets`.
    reuse_port: bool = False
    own_socket: str | None = None
    peer_sockets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _positive_number(self.header_timeout_s, "header timeout", "e.g. --header-timeout-s 10")
        _positive_int(self.max_connections, "connection cap", "e.g. --max-connections 1024")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port!r}", hint="e.g. --port 9201 (0 picks a free port)")
        if self.drain_delay_s < 0:
            raise ConfigError(f"drain delay must be >= 0, got {self.drain_delay_s!r}", hint="e.g. --drain-delay-s 5")
        _positive_number(self.drain_timeout_s, "drain timeout", "e.g. --drain-timeout-s 30")


@dataclass(frozen=True)
class ProxySettings:
    """Everything the proxy needs, built once.

    Example:
        >>> s = ProxySettings(UpstreamSettings("http://127.0.0.1:9200"), rules=(IndexRule("scifact"),))
        >>> s.rule_for(["scifact"]).window
        100
        >>> s.rule_for(["scifact", "other"]) is None
        True
    """

    upstream: UpstreamSettings
    rules: tuple[IndexRule, ...] = ()
    max_window: int = 1000
    limits: LimitSettings = field(default_factory=LimitSettings)
    load: LoadSettings = field(default_factory=LoadSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    online_ab: OnlineAbConfig | None = None   # --ab-split and friends; None: no online A/B test

    def __post_init__(self) -> None:
        _positive_int(self.max_window, "max window", "e.g. --max-window 1000")
        for rule in self.rules:
            if rule.window > self.max_window:
                raise ConfigError(f"window {rule.window} for {rule.pattern!r} exceeds the max window {self.max_window}",
                                  hint="lower the window or raise --max-window")
            rule.check_dense()

    def rule_for(self, indices: list[str]) -> IndexRule | None:
        """The one rule covering every target index, or None (then the search passes through).

        For each index a rule naming it exactly wins over patterns; among patterns the first
        listed wins. So `docs-legal: {rerank: false}` switches one index off under `docs-*`.

        Example:
            >>> ProxySettings(UpstreamSettings("http://h:9200"), rules=(IndexRule("a*"),)).rule_for(["a1", "a2"]).pattern
            'a*'
            >>> rules = (IndexRule("a*"), IndexRule("a2", rerank=False))
            >>> ProxySettings(UpstreamSettings("http://h:9200"), rules=rules).rule_for(["a2"]).rerank
            False
        """
        found = None
        for index in indices:
            rule = next((r for r in self.rules if not r.is_pattern and r.pattern == index), None) or \
                next((r for r in self.rules if r.matches(index)), None)
            if rule is None or (found is not None and rule is not found):
                return None
            found = rule
        return found


def read_config_file(path: str | Path) -> dict:
    """Load a YAML (.yaml/.yml) or TOML (.toml) file into a mapping.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "proxy.toml")
        >>> _ = path.write_text('[indices.scifact]\\nfields = ["title", "text"]\\n')
        >>> read_config_file(path)["indices"]
        {'scifact': {'fields': ['title', 'text']}}
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="pass an existing .yaml/.yml/.toml file to --config")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise ConfigError("TOML config files need Python 3.11 or newer", hint="use a .yaml file") from None

            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {path} has suffix {suffix!r}", hint="use .yaml, .yml or .toml")
    except ConfigError:
        raise
    except Exception as exc:  # yaml.YAMLError / tomllib.TOMLDecodeError: say where the file is broken
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {exc}", hint="fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, got {type(data).__name__}",
                          hint="start the file with `indices:`")
    return data


def rules_from_mapping(data: Mapping, defaults: IndexRule,
                       base_dir: str | Path | None = None) -> tuple[IndexRule, ...]:
    """Build rules from a config mapping `{"indices": {pattern: {key: value}}}`.

    Keys per index: `fields`, `window`, `deadline_ms`; `rerank` (false: pass through unreranked);
    `fusion` (`{ce, bm25, dense, norm}` weights) or `fusion_file` (a recipe written by
    `es-rerank fit-fusion`); `dense_model` (a bi-encoder export directory). Keys left out take
    their value from `defaults` (the CLI's --fields/--window/--deadline-ms/--fusion-file/
    --dense-model). Relative `fusion_file` and `dense_model` paths are read from `base_dir` (the
    config file's folder).

    Example:
        >>> rules_from_mapping({"indices": {"a": {"fields": "body"}}}, IndexRule("*"))[0].fields
        ('body',)
        >>> rules_from_mapping({"indices": {"a": {"fusion": {"ce": 0.5, "bm25": 0.5}}}}, IndexRule("*"))[0].fusion.bm25
        0.5
        >>> rules_from_mapping({"indices": {"a": {"rerank": False}}}, IndexRule("*"))[0].rerank
        False
        >>> rules_from_mapping({"indices": {"a": {"windw": 5}}}, IndexRule("*"))
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: index 'a' has unknown key(s) ['windw'] (allowed: deadline_ms, dense_model, fields, fusion, fusion_file, rerank, window)
    """
    unknown = sorted(set(data) - {"indices"})
    if unknown:
        raise ConfigError(f"config has unknown top-level key(s) {unknown}", hint="only `indices` is read from the file")
    indices = data.get("indices") or {}
    if not isinstance(indices, Mapping):
        raise ConfigError(f"`indices` must map index patterns to settings, got {type(indices).__name__}",
                          hint="e.g. indices: {scifact: {fields: [title, text]}}")
    rules = []
    for pattern, values in indices.items():
        values = values or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"settings for index {pattern!r} must be a mapping, got {values!r}",
                              hint="e.g. scifact: {window: 100}")
        extra = sorted(set(values) - set(RULE_KEYS))
        if extra:
            raise ConfigError(f"index {pattern!r} has unknown key(s) {extra}", hint=f"allowed: {', '.join(RULE_KEYS)}")
        fields = values.get("fields", defaults.fields)
        dense_model = values.get("dense_model", defaults.dense_model)
        if "dense_model" in values and isinstance(dense_model, str) and dense_model:
            dense_model = str(_from_base(dense_model, base_dir))
        rules.append(replace(defaults, pattern=str(pattern), fields=parse_fields(fields),
                             window=values.get("window", defaults.window),
                             deadline_ms=values.get("deadline_ms", defaults.deadline_ms),
                             rerank=values.get("rerank", defaults.rerank),
                             fusion=_rule_fusion(str(pattern), values, defaults.fusion, base_dir),
                             dense_model=dense_model))
    return tuple(rules)


def _rule_fusion(pattern: str, values: Mapping, default: FusionWeights | None,
                 base_dir: str | Path | None) -> FusionWeights | None:
    """An index's fusion weights: its `fusion` block, its `fusion_file`, or the default."""
    from es_rerank.scoring.fusion import load_weights, weights_from_mapping

    if "fusion" in values and "fusion_file" in values:
        raise ConfigError(f"index {pattern!r} has both fusion and fusion_file",
                          hint="keep one: fusion: {ce, bm25, dense, norm} or fusion_file: a fit-fusion recipe")
    if "fusion" in values:
        return weights_from_mapping(values["fusion"], where=f"indices.{pattern}.fusion")
    if "fusion_file" in values:
        path = values["fusion_file"]
        if not isinstance(path, str) or not path:
            raise ConfigError(f"indices.{pattern}.fusion_file must be a file name, got {path!r}",
                              hint="e.g. fusion_file: recipes/fusion/minilm_ce_bm25_dense.yaml")
        return load_weights(_from_base(path, base_dir))
    return default


def _from_base(path: str, base_dir: str | Path | None) -> Path:
    """`path` as given when absolute or without `base_dir`, else under `base_dir`."""
    return Path(path) if base_dir is None or Path(path).is_absolute() else Path(base_dir) / path


def parse_fields(value) -> tuple[str, ...]:
    """Accept `"title,text"`, `"title text"` or `["title", "text"]`.

    Example:
        >>> parse_fields("title, text")
        ('title', 'text')
    """
    if isinstance(value, str):
        names = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        names = [str(v).strip() for v in value]
    else:
        raise ConfigError(f"fields must be a list or a comma-separated string, got {value!r}", hint="e.g. title,text")
    return tuple(n for n in names if n)


def _positive_int(value, what: str, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}", hint=hint)


def _positive_number(value, what: str, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}", hint=hint)
