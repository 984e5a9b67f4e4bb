"""Settings of `es-rerank adapt`: how the student is trained on prepared pseudo-query groups.

An adapt recipe (`recipes/adapt/*.yaml`) has two blocks: `prepare` (the fields of
`adapt_prepare.PrepareSettings`: which pseudo-queries, how many, BM25 depth) and `train` (the
fields of `AdaptConfig` below: `config.FineTuningConfig`'s, which every fine-tuning run shares, and
the teacher's). Command-line options override the recipe, the recipe the defaults.

The teacher is a fusion of the raw inputs stored in the prepared file, normalised over each
group as the serving fusion normalises over a candidate window (`es_rerank.scoring.fusion`):
`teacher = w_bm25 * norm(bm25) + w_dense * norm(dense) + w_ce * norm(ce)`.

Example:
    >>> config = AdaptConfig(base_model="m", loss="kl", temperature=0.5)
    >>> config.teacher_weights().as_dict()
    {'ce': 0.0, 'bm25': 0.5, 'dense': 0.5, 'norm': 'zscore'}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from es_rerank.errors import ConfigError
from es_rerank.scoring.fusion import NORMS, FusionWeights
from es_rerank.training.config import FineTuningConfig, build_settings, read_yaml

if TYPE_CHECKING:
    from es_rerank.training.losses import Objective

LOSSES = ("kl", "margin_mse")


@dataclass(frozen=True)
class AdaptConfig(FineTuningConfig):
    """Every training setting of one adapt run: the shared fine-tuning settings (other defaults:
    shorter pairs, bigger groups) and the teacher's. Validated on construction."""

    SETTING: ClassVar[str] = "adapt setting"
    OPEN_LOW: ClassVar[str] = "("

    group_size: int = 16
    lr: float = 3e-5
    max_length: int = 192
    query_max_length: int = 48
    num_workers: int = 0
    loss: str = "kl"
    temperature: float = 1.0
    margin_scale: float = 1.0
    teacher_norm: str = "zscore"
    teacher_bm25: float = 0.5
    teacher_dense: float = 0.5
    teacher_ce: float = 0.0
    include_positive: bool = True
    positive_lce_weight: float = 0.0
    train_sources: tuple[str, ...] | None = None
    epochs: float = 1.0
    labelled_weight: float = 1.0
    freeze_embeddings: bool = False
    probe_queries: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.loss in LOSSES, "loss", " or ".join(LOSSES))
        self._check(self.teacher_norm in NORMS, "teacher_norm", " or ".join(NORMS))
        self._integers(("probe_queries", 0))
        self._numbers(("temperature", 0.0, math.inf, True), ("margin_scale", 0.0, math.inf, True),
                      ("epochs", 0.0, 1000.0, True), ("labelled_weight", 0.0, math.inf, False),
                      ("positive_lce_weight", 0.0, math.inf, False), ("teacher_bm25", 0.0, math.inf, False),
                      ("teacher_dense", 0.0, math.inf, False), ("teacher_ce", 0.0, math.inf, False))
        self._check(self.positive_lce_weight == 0 or self.include_positive, "positive_lce_weight",
                    "0 when include_positive is false (the LCE target is the masked positive)")
        self._booleans("include_positive", "freeze_embeddings")
        if self.train_sources is not None:
            from es_rerank.data.pseudo_queries import SOURCES

            sources = tuple(self.train_sources) if not isinstance(self.train_sources, str) else (self.train_sources,)
            self._check(bool(sources) and all(s in SOURCES for s in sources), "train_sources",
                        f"null (every source in the file) or a list among {', '.join(SOURCES)}")
            object.__setattr__(self, "train_sources", sources)
        self.teacher_weights()  # at least one teacher weight > 0

    def objective(self) -> Objective:
        from es_rerank.training.losses import Distillation  # torch: not at option-parsing time

        return Distillation(self.loss, self.temperature, self.margin_scale, self.labelled_weight,
                            self.positive_lce_weight)

    def teacher_weights(self) -> FusionWeights:
        """The teacher's fusion weights; raises `ConfigError` when all are 0."""
        return FusionWeights(ce=self.teacher_ce, bm25=self.teacher_bm25, dense=self.teacher_dense,
                             norm=self.teacher_norm)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.train_sources is not None:
            data["train_sources"] = list(self.train_sources)
        return data


def setting_names() -> list[str]:
    """The keys of a recipe's `train` block."""
    return AdaptConfig.setting_names()


def prepare_names() -> list[str]:
    """The keys of a recipe's `prepare` block."""
    from es_rerank.training.adapt_prepare import PrepareSettings

    return [f.name for f in dataclasses.fields(PrepareSettings)]


def read_adapt_recipe(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prepare settings, train settings) of a recipe; unknown keys are an error.

    Example:
        >>> read_adapt_recipe(Path("recipes/adapt/fused-teacher-kl.yaml"))[1]["loss"]
        'kl'
    """
    data = read_yaml(path) or {}
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
    return build_settings(AdaptConfig, settings, "pass --base or set train.base_model in the recipe",
                          "adapt setting(s)")


def write_adapt_recipe(prepare: Mapping[str, Any] | None, config: AdaptConfig, path: Path) -> None:
    """Save the resolved settings as a recipe, so a run can be repeated from its output folder."""
    import yaml

    data = {"prepare": dict(prepare) if prepare else None, "train": config.to_dict()}
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False),
                    encoding="utf-8")
