"""Training settings: one frozen dataclass, read from a recipe file and overridden on the command line.

A recipe is a YAML mapping whose keys are the field names below (dashes or underscores). Data
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
from typing import Any, Mapping

from es_rerank.errors import ConfigError

LOSSES = ("bce", "lce")
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run. Validated on construction."""

    base_model: str
    loss: str = "lce"
    group_size: int = 8
    bce_balanced: bool = True
    neg_depth: int = 100
    queries_per_step: int = 32
    grad_accum: int = 1
    steps: int = 300
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
    dev_fraction: float = 0.1
    split_seed: int = 0
    eval_every: int = 50
    eval_depth: int = 100
    eval_batch_size: int = 128
    log_every: int = 10
    save_every: int = 100
    num_workers: int = 2
    compile: bool = False
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.base_model, str) and self.base_model != "", "base_model",
               "a local model directory or a hub id", self.base_model)
        _check(self.loss in LOSSES, "loss", " or ".join(LOSSES), self.loss)
        _check(self.optimizer in OPTIMIZERS, "optimizer", " or ".join(OPTIMIZERS), self.optimizer)
        _check(self.precision in PRECISIONS, "precision", ", ".join(PRECISIONS), self.precision)
        for name, low in (("group_size", 2), ("neg_depth", 1), ("queries_per_step", 1), ("grad_accum", 1),
                          ("steps", 1), ("max_length", 8), ("query_max_length", 1), ("eval_depth", 1),
                          ("eval_batch_size", 1), ("log_every", 1), ("eval_every", 0), ("save_every", 0),
                          ("num_workers", 0), ("seed", 0), ("split_seed", 0)):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                   f"an integer >= {low}", value)
        for name, low, high in (("lr", 0.0, 1.0), ("weight_decay", 0.0, 1.0), ("warmup_fraction", 0.0, 1.0),
                                ("max_grad_norm", 0.0, math.inf), ("dev_fraction", 0.0, 0.9)):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
                   and not (name == "lr" and value == 0), name, f"a number in [{low}, {high}]", value)
        if self.dropout is not None:
            _check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0, "dropout",
                   "a number in [0, 1) or null (keep the model's own)", self.dropout)
        _check(self.query_max_length < self.max_length - 4, "query_max_length",
               f"fewer than max_length - 4 = {self.max_length - 4} tokens, so a document fits", self.query_max_length)
        for name in ("bce_balanced", "compile"):
            _check(isinstance(getattr(self, name), bool), name, "true or false", getattr(self, name))

    @property
    def pairs_per_step(self) -> int:
        """Pairs in one optimizer step when every group is full."""
        return self.queries_per_step * self.group_size

    @property
    def warmup_steps(self) -> int:
        return int(round(self.steps * self.warmup_fraction))

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


def setting_names() -> list[str]:
    """The keys a recipe may hold."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def read_recipe(path: Path) -> dict[str, Any]:
    """Read a YAML recipe into a plain dict with underscore keys; unknown keys are an error.

    Example:
        >>> read_recipe(Path("recipes/scifact-minilm-l6-lce-g8.yaml"))["loss"]   # doctest: +SKIP
        'lce'
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}", hint="pass an existing YAML file to --config") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from exc
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
    if not settings.get("base_model"):
        raise ConfigError("no base model given", hint="set base_model in the recipe or pass --base-model")
    unknown = sorted(set(settings) - set(setting_names()))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    return TrainConfig(**settings)


def write_recipe(config: TrainConfig, path: Path) -> None:
    """Save the resolved settings as a recipe, so a run can be repeated from its output folder."""
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"setting {name}: expected {expected}, got {got!r}")
