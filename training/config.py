"""Fine-tuning settings: one frozen dataclass per command, read from a recipe and overridden on the command line.

`FineTuningConfig` holds what the one training loop (`training.loop`) reads, whatever it
optimises: model, batch shape, optimiser, lengths, precision, seed, logging and saving.
`TrainConfig` (`es-rerank train`, supervised LCE/BCE on mined groups) adds the step count,
the negatives and the dev evaluation; `adapt_config.AdaptConfig` (`es-rerank adapt`,
distillation) adds the teacher and the epochs. Each builds its objective (`objective()`).

A recipe is a YAML mapping whose keys are the field names (dashes or underscores). Data
paths are not settings: they differ per machine and come from the command line.

What "a step" means, so that runs with different losses and group sizes compare fairly: one
optimizer update over `queries_per_step` training queries (summed over all processes and
gradient-accumulation micro-batches). Runs with the same `steps` and `queries_per_step` see the
same queries the same number of times; the number of (query, document) pairs per step is
`queries_per_step * group_size` and so grows with the group size.

Example:
    >>> config = TrainConfig(base_model="m", loss="lce", group_size=4)
    >>> config.pairs_per_step
    128
    >>> merge_settings({"lr": 1e-4}, {"lr": 3e-5})["lr"]
    3e-05
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from es_rerank.errors import ConfigError

if TYPE_CHECKING:
    from es_rerank.training.losses import Objective

LOSSES = ("bce", "lce")
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class FineTuningConfig:
    """The settings every fine-tuning run shares. Validated on construction."""

    SETTING: ClassVar[str] = "setting"  # how error messages name a field
    OPEN_LOW: ClassVar[str] = "["  # how they open a range whose low end is excluded ("[": train's messages)

    base_model: str
    group_size: int = 8
    queries_per_step: int = 32
    grad_accum: int = 1
    optimizer: str = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 512
    query_max_length: int = 64
    precision: str = "auto"
    dropout: float | None = None
    seed: int = 0
    log_every: int = 10
    save_every: int = 100
    num_workers: int = 2
    compile: bool = False
    deterministic: bool = False  # deterministic kernels (training.provenance): same seed, same weights
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self._check(isinstance(self.base_model, str) and self.base_model != "", "base_model",
                    "a local model directory or a hub id")
        self._check(self.optimizer in OPTIMIZERS, "optimizer", " or ".join(OPTIMIZERS))
        self._check(self.precision in PRECISIONS, "precision", ", ".join(PRECISIONS))
        self._integers(("group_size", 2), ("queries_per_step", 1), ("grad_accum", 1), ("max_length", 8),
                       ("query_max_length", 1), ("seed", 0), ("log_every", 1), ("save_every", 0), ("num_workers", 0))
        self._numbers(("lr", 0.0, 1.0, True), ("weight_decay", 0.0, 1.0, False), ("warmup_fraction", 0.0, 1.0, False),
                      ("max_grad_norm", 0.0, math.inf, False))
        if self.dropout is not None:
            self._check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0, "dropout",
                        "a number in [0, 1) or null (keep the model's own)")
        self._check(self.query_max_length < self.max_length - 4, "query_max_length",
                    f"fewer than max_length - 4 = {self.max_length - 4} tokens, so a document fits")
        self._booleans("compile", "deterministic")

    def objective(self) -> Objective:
        """What the loop minimises (see `training.losses`)."""
        raise NotImplementedError

    @property
    def pairs_per_step(self) -> int:
        """Pairs in one optimizer step when every group is full."""
        return self.queries_per_step * self.group_size

    def check_world(self, world_size: int) -> None:
        """Each process must get the same whole number of queries in each micro-batch.

        Example:
            >>> TrainConfig(base_model="m", queries_per_step=6).check_world(4)
            Traceback (most recent call last):
            ...
            es_rerank.errors.ConfigError: queries_per_step 6 does not split into 4 processes x 1 accumulation micro-batches (set queries_per_step to a multiple of 4)
        """
        parts = world_size * self.grad_accum
        if self.queries_per_step % parts:
            raise ConfigError(f"queries_per_step {self.queries_per_step} does not split into {world_size} processes "
                              f"x {self.grad_accum} accumulation micro-batches",
                              hint=f"set queries_per_step to a multiple of {parts}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def setting_names(cls) -> list[str]:
        """The keys a recipe may hold."""
        return [f.name for f in dataclasses.fields(cls)]

    def _check(self, ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ConfigError(f"{self.SETTING} {name}: expected {expected}, got {getattr(self, name)!r}")

    def _integers(self, *limits: tuple[str, int]) -> None:
        for name, low in limits:
            value = getattr(self, name)
            self._check(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                        f"an integer >= {low}")

    def _numbers(self, *limits: tuple[str, float, float, bool]) -> None:
        """(name, low, high, strictly): a finite number in [low, high], and not 0 when `strictly`."""
        for name, low, high, strictly in limits:
            value = getattr(self, name)
            self._check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                        and low <= value <= high and not (strictly and value == 0), name,
                        f"a number in {self.OPEN_LOW if strictly else '['}{low}, {high}]")

    def _booleans(self, *names: str) -> None:
        for name in names:
            self._check(isinstance(getattr(self, name), bool), name, "true or false")


@dataclass(frozen=True)
class TrainConfig(FineTuningConfig):
    """Every setting of one `es-rerank train` run: supervised LCE or BCE on mined groups."""

    loss: str = "lce"
    bce_balanced: bool = True
    neg_depth: int = 100
    steps: int = 300
    dev_fraction: float = 0.1
    split_seed: int = 0
    eval_every: int = 50
    eval_depth: int = 100
    eval_batch_size: int = 128
    # source name -> how many times each of its groups is listed per epoch (a mixture's query ids are
    # `NAME:id`, `es-rerank mix`); sources not named keep 1. Recipe only: no command-line option.
    source_repeats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.loss in LOSSES, "loss", " or ".join(LOSSES))
        self._integers(("neg_depth", 1), ("steps", 1), ("eval_depth", 1), ("eval_batch_size", 1), ("eval_every", 0),
                       ("split_seed", 0))
        self._numbers(("dev_fraction", 0.0, 0.9, False))
        self._booleans("bce_balanced")
        self._check(is_source_repeats(self.source_repeats), "source_repeats",
                    "a mapping of source name to an integer >= 1, e.g. {scifact: 4}")
        # a plain copy: the recipe written beside a run (yaml.safe_dump) takes no other mapping type
        object.__setattr__(self, "source_repeats", dict(self.source_repeats))

    def objective(self) -> Objective:
        from es_rerank.training.losses import Supervised  # torch: not at option-parsing time

        return Supervised(self.loss, self.bce_balanced)

    @property
    def warmup_steps(self) -> int:
        return int(round(self.steps * self.warmup_fraction))


def is_source_repeats(value: Any) -> bool:
    """Whether `value` maps non-empty source names to whole repeat counts >= 1.

    Example:
        >>> is_source_repeats({"scifact": 4}), is_source_repeats({"scifact": 0}), is_source_repeats({"scifact": True})
        (True, False, False)
    """
    return isinstance(value, Mapping) and all(
        isinstance(name, str) and name != "" and isinstance(count, int) and not isinstance(count, bool) and count >= 1
        for name, count in value.items())


def setting_names() -> list[str]:
    """The keys a train recipe may hold."""
    return TrainConfig.setting_names()


def read_yaml(path: Path) -> Any:
    """A recipe file's YAML, with errors that say which file and what to pass instead."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}", hint="pass an existing YAML file to --config") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from exc


def read_recipe(path: Path) -> dict[str, Any]:
    """Read a YAML recipe into a plain dict with underscore keys; unknown keys are an error.

    Example:
        >>> read_recipe(Path("recipes/scifact-minilm-l6-lce-g8.yaml"))["loss"]
        'lce'
    """
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of setting: value, got {type(data).__name__}")
    settings = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - set(setting_names()))
    if unknown:
        raise ConfigError(f"recipe {path} has unknown setting(s): {', '.join(unknown)}",
                          hint=f"known settings: {', '.join(setting_names())}")
    return settings


def merge_settings(recipe: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Recipe values, with `overrides` (explicit command-line options) winning."""
    return {**recipe, **overrides}


def build_config(settings: Mapping[str, Any]) -> TrainConfig:
    """A validated TrainConfig; missing settings take the dataclass defaults.

    Example:
        >>> build_config({"base_model": "m", "loss": "bce", "group_size": 2}).loss
        'bce'
        >>> build_config({"loss": "lce"})
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: no base model given (set base_model in the recipe or pass --base-model)
    """
    return build_settings(TrainConfig, settings, "set base_model in the recipe or pass --base-model", "setting(s)")


def build_settings(kind: type[FineTuningConfig], settings: Mapping[str, Any], base_model_hint: str, what: str):
    """A validated `kind` (a FineTuningConfig class) from plain settings; missing ones take the defaults."""
    if not settings.get("base_model"):
        raise ConfigError("no base model given", hint=base_model_hint)
    unknown = sorted(set(settings) - set(kind.setting_names()))
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(unknown)}")
    return kind(**settings)


def write_recipe(config: TrainConfig, path: Path) -> None:
    """Save the resolved settings as a recipe, so a run can be repeated from its output folder."""
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
