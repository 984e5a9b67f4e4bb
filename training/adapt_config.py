"""Settings of `es-rerank adapt`: how the student is trained on prepared pseudo-query groups.

An adapt recipe (`recipes/adapt/*.yaml`) has two blocks: `prepare` (the fields of
`adapt_prepare.PrepareSettings`: which pseudo-queries, how many, BM25 depth) and `train` (the
fields of `AdaptConfig` below). Command-line options override the recipe, the recipe the defaults.

The teacher is a fusion of the raw inputs stored in the prepared file, normalised over each
group as the serving fusion normalises over a candidate window (`es_rerank.fusion`):
`teacher = w_bm25 * norm(bm25) + w_dense * norm(dense) + w_ce * norm(ce)`.

Example:
    >>> config = AdaptConfig(base_model="m", loss="kl", temperature=0.5)
    >>> config.teacher_weights().as_dict()
    {'ce': 0.0, 'bm25': 0.5, 'dense': 0.5, 'norm': 'zscore'}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from es_rerank.errors import ConfigError
from es_rerank.fusion import NORMS, FusionWeights

LOSSES = ("kl", "margin_mse")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class AdaptConfig:
    """Every training setting of one adapt run. Validated on construction."""

    base_model: str
    loss: str = "kl"
    temperature: float = 1.0
    margin_scale: float = 1.0
    teacher_bm25: float = 0.5
    teacher_dense: float = 0.5
    teacher_ce: float = 0.0
    teacher_norm: str = "zscore"
    include_positive: bool = True
    positive_lce_weight: float = 0.0
    train_sources: tuple[str, ...] | None = None
    group_size: int = 16
    queries_per_step: int = 32
    epochs: float = 1.0
    labelled_weight: float = 1.0
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 192
    query_max_length: int = 48
    precision: str = "auto"
    dropout: float | None = None
    freeze_embeddings: bool = False
    seed: int = 0
    probe_queries: int = 64
    log_every: int = 10
    save_every: int = 100
    num_workers: int = 0
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.base_model, str) and self.base_model != "", "base_model",
               "a local model directory or a hub id", self.base_model)
        _check(self.loss in LOSSES, "loss", " or ".join(LOSSES), self.loss)
        _check(self.precision in PRECISIONS, "precision", ", ".join(PRECISIONS), self.precision)
        _check(self.teacher_norm in NORMS, "teacher_norm", " or ".join(NORMS), self.teacher_norm)
        for name, low in (("group_size", 2), ("queries_per_step", 1), ("max_length", 8), ("query_max_length", 1),
                          ("seed", 0), ("probe_queries", 0), ("log_every", 1), ("save_every", 0),
                          ("num_workers", 0)):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                   f"an integer >= {low}", value)
        for name, low, high in (("temperature", 0.0, math.inf), ("margin_scale", 0.0, math.inf),
                                ("epochs", 0.0, 1000.0), ("lr", 0.0, 1.0), ("labelled_weight", 0.0, math.inf),
                                ("positive_lce_weight", 0.0, math.inf),
                                ("teacher_bm25", 0.0, math.inf), ("teacher_dense", 0.0, math.inf),
                                ("teacher_ce", 0.0, math.inf), ("weight_decay", 0.0, 1.0),
                                ("warmup_fraction", 0.0, 1.0), ("max_grad_norm", 0.0, math.inf)):
            value = getattr(self, name)
            strictly = name in ("temperature", "margin_scale", "epochs", "lr")
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                   and low <= value <= high and not (strictly and value == 0), name,
                   f"a number in {'(' if strictly else '['}{low}, {high}]", value)
        if self.dropout is not None:
            _check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0, "dropout",
                   "a number in [0, 1) or null (keep the model's own)", self.dropout)
        _check(self.query_max_length < self.max_length - 4, "query_max_length",
               f"fewer than max_length - 4 = {self.max_length - 4} tokens, so a document fits", self.query_max_length)
        _check(self.positive_lce_weight == 0 or self.include_positive, "positive_lce_weight",
               "0 when include_positive is false (the LCE target is the masked positive)", self.positive_lce_weight)
        for name in ("include_positive", "freeze_embeddings"):
            _check(isinstance(getattr(self, name), bool), name, "true or false", getattr(self, name))
        if self.train_sources is not None:
            from es_rerank.pseudo_queries import SOURCES

            sources = tuple(self.train_sources) if not isinstance(self.train_sources, str) else (self.train_sources,)
            _check(bool(sources) and all(s in SOURCES for s in sources), "train_sources",
                   f"null (every source in the file) or a list among {', '.join(SOURCES)}", self.train_sources)
            object.__setattr__(self, "train_sources", sources)
        self.teacher_weights()  # at least one teacher weight > 0

    def teacher_weights(self) -> FusionWeights:
        """The teacher's fusion weights; raises `ConfigError` when all are 0."""
        return FusionWeights(ce=self.teacher_ce, bm25=self.teacher_bm25, dense=self.teacher_dense,
                             norm=self.teacher_norm)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.train_sources is not None:
            data["train_sources"] = list(self.train_sources)
        return data


def setting_names() -> list[str]:
    """The keys of a recipe's `train` block."""
    return [f.name for f in dataclasses.fields(AdaptConfig)]


def prepare_names() -> list[str]:
    """The keys of a recipe's `prepare` block."""
    from es_rerank.training.adapt_prepare import PrepareSettings

    return [f.name for f in dataclasses.fields(PrepareSettings)]


def read_adapt_recipe(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prepare settings, train settings) of a recipe; unknown keys are an error.

    Example:
        >>> read_adapt_recipe(Path("recipes/adapt/fused-teacher-kl.yaml"))[1]["loss"]   # doctest: +SKIP
        'kl'
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}", hint="pass an existing YAML file to --config") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from exc
    data = data or {}
    if not isinstance(data, dict) or set(data) - {"prepare", "train", "notes"}:
        raise ConfigError(f"recipe {path} must be a mapping with blocks prepare and train",
                          hint="see recipes/adapt/README.md for the layout")
    blocks = []
    for block, known in (("prepare", prepare_names()), ("train", setting_names())):
        values = data.get(block) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"recipe {path}: {block} must be a mapping of setting: value")
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"recipe {path}: unknown {block} setting(s) {', '.join(unknown)}",
                              hint=f"known: {', '.join(known)}")
        blocks.append(values)
    return blocks[0], blocks[1]


def build_adapt_config(settings: Mapping[str, Any]) -> AdaptConfig:
    """A validated AdaptConfig; missing settings take the defaults.

    Example:
        >>> build_adapt_config({"loss": "kl"})
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: no base model given (pass --base or set train.base_model in the recipe)
    """
    if not settings.get("base_model"):
        raise ConfigError("no base model given", hint="pass --base or set train.base_model in the recipe")
    unknown = sorted(set(settings) - set(setting_names()))
    if unknown:
        raise ConfigError(f"unknown adapt setting(s): {', '.join(unknown)}")
    return AdaptConfig(**settings)


def write_adapt_recipe(prepare: Mapping[str, Any] | None, config: AdaptConfig, path: Path) -> None:
    """Save the resolved settings as a recipe, so a run can be repeated from its output folder."""
    import yaml

    data = {"prepare": dict(prepare) if prepare else None, "train": config.to_dict()}
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False),
                    encoding="utf-8")


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"adapt setting {name}: expected {expected}, got {got!r}")
