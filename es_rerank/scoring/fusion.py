"""Score fusion: the final score of a hit is a weighted sum of its normalised cross-encoder,
BM25 and (optionally) dense bi-encoder scores.

Each input is normalised over the candidate window first, because the three live on
unrelated scales (BM25 grows with query length, cross-encoder logits are unbounded, cosines
lie in [-1, 1]). An input that cannot tell the candidates apart (all scores equal, or a single
candidate) normalises to all zeros, so it adds nothing to the order instead of dividing by zero.

Pure numpy: the proxy calls `parse_fusion_override` on `ext.rerank.fusion` and `fuse` on the
scores of one window; both are safe to call on the event loop.

Example:
    >>> weights = FusionWeights(ce=0.0, bm25=0.5, dense=0.5)
    >>> [round(float(x), 3) for x in fuse([12.0, 9.0, 3.0], None, [0.2, 0.9, 0.1], weights)]
    [0.254, 0.836, -1.09]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from es_rerank.data.candidates import SCORE_COLUMNS
from es_rerank.errors import ConfigError, ScoringError
from es_rerank.scoring.rerank import order_by_scores
from es_rerank.types import Hit

NORMS = ("zscore", "minmax")
INPUTS = SCORE_COLUMNS  # the candidates file names the same columns
DEFAULT_NORM = "zscore"


def normalise(scores: Sequence[float] | np.ndarray, norm: str = DEFAULT_NORM) -> np.ndarray:
    """Normalise one input's scores over the candidate window (float64).

    `zscore`: (x - mean) / std (population std). `minmax`: (x - min) / (max - min).
    All-equal scores and a single candidate give zeros; an empty window gives an empty array.
    NaN or infinite scores raise `ScoringError`: they mean a broken model or upstream, and the
    proxy falls back to BM25 on that error.

    Example:
        >>> normalise([1.0, 2.0, 3.0]).round(4).tolist()
        [-1.2247, 0.0, 1.2247]
        >>> normalise([1.0, 2.0, 3.0], "minmax").tolist()
        [0.0, 0.5, 1.0]
        >>> normalise([4.0, 4.0]).tolist(), normalise([7.0], "minmax").tolist()
        ([0.0, 0.0], [0.0])
    """
    if norm not in NORMS:
        raise ConfigError(f"unknown normalisation {norm!r}", hint=f"use one of: {', '.join(NORMS)}")
    values = _as_vector(scores, "scores")
    with np.errstate(over="ignore"):
        overflows = values.size and not np.isfinite(np.ptp(values))
    if overflows:  # finite scores whose range overflows float64
        values = values / np.abs(values).max()
    spread = float(np.ptp(values)) if values.size else 0.0
    if spread == 0.0:  # exact test: equal values (or one) carry no ordering information
        return np.zeros_like(values)
    if norm == "minmax":
        return (values - values.min()) / spread
    std = float(values.std())
    return (values - values.mean()) / std


def _finite(value: Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (e.g. 10**400 in a YAML config)
        return False


@dataclass(frozen=True)
class FusionWeights:
    """How much each normalised input counts, and how inputs are normalised.

    Weights are finite and >= 0 and at least one is > 0; they need not sum to 1 (only their
    ratios change the order; the sum scales the returned scores). A weight of 0 means the input
    is not computed at all: see `needs_ce` / `needs_dense`.

    Example:
        >>> FusionWeights(ce=0.6, bm25=0.4).needs_dense
        False
        >>> FusionWeights(ce=0.6, bm25=-1)
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: fusion weight bm25 must be a finite number >= 0, got -1 (set it to 0 to leave the input out)
    """

    ce: float = 1.0
    bm25: float = 0.0
    dense: float = 0.0
    norm: str = DEFAULT_NORM

    def __post_init__(self) -> None:
        for name in INPUTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not _finite(value) or value < 0:
                raise ConfigError(f"fusion weight {name} must be a finite number >= 0, got {value!r}",
                                  hint="set it to 0 to leave the input out")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.norm, str) or self.norm not in NORMS:
            raise ConfigError(f"fusion norm must be one of {', '.join(NORMS)}, got {self.norm!r}",
                              hint='"zscore" suits most cases; "minmax" maps each input to [0, 1]')
        if self.ce + self.bm25 + self.dense == 0:
            raise ConfigError("fusion weights ce, bm25 and dense are all 0",
                              hint="give at least one input a weight > 0")

    @property
    def needs_ce(self) -> bool:
        """Whether the cross-encoder must score the window."""
        return self.ce > 0

    @property
    def needs_dense(self) -> bool:
        """Whether the dense bi-encoder must score the window."""
        return self.dense > 0

    def as_dict(self) -> dict:
        """Plain data for configs, YAML recipes and JSON reports.

        Example:
            >>> FusionWeights(ce=0.5, bm25=0.5).as_dict()
            {'ce': 0.5, 'bm25': 0.5, 'dense': 0.0, 'norm': 'zscore'}
        """
        return {"ce": self.ce, "bm25": self.bm25, "dense": self.dense, "norm": self.norm}


CE_ONLY = FusionWeights(ce=1.0)


def weights_from_mapping(value: object, base: FusionWeights | None = None, where: str = "fusion") -> FusionWeights:
    """Build `FusionWeights` from plain data (a config block or a request's JSON object).

    Keys are `ce`, `bm25`, `dense` (numbers >= 0) and `norm` (`zscore` or `minmax`). Keys left
    out are taken from `base`; without `base`, a left-out weight is 0 and `norm` is zscore.
    Anything else raises `ConfigError` naming `where`, what came and what was expected.

    Example:
        >>> weights_from_mapping({"bm25": 0.3, "dense": 0.7}).as_dict()
        {'ce': 0.0, 'bm25': 0.3, 'dense': 0.7, 'norm': 'zscore'}
        >>> weights_from_mapping({"norm": "minmax"}, base=FusionWeights(ce=0.5, bm25=0.5)).as_dict()
        {'ce': 0.5, 'bm25': 0.5, 'dense': 0.0, 'norm': 'minmax'}
    """
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be an object with keys {', '.join(INPUTS)}, norm; got {_describe(value)}",
                          hint='e.g. {"ce": 0.5, "bm25": 0.3, "dense": 0.2, "norm": "zscore"}')
    unknown = sorted(str(key) for key in value if key not in (*INPUTS, "norm"))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}",
                          hint=f"allowed keys: {', '.join(INPUTS)}, norm")
    start = base.as_dict() if base is not None else {"ce": 0.0, "bm25": 0.0, "dense": 0.0, "norm": DEFAULT_NORM}
    fields = {**start, **value}
    for name in INPUTS:
        weight = fields[name]
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise ConfigError(f"{where}.{name} must be a number >= 0, got {_describe(weight)}",
                              hint="weights are JSON numbers, e.g. 0.5")
    if not isinstance(fields["norm"], str):
        raise ConfigError(f"{where}.norm must be a string, got {_describe(fields['norm'])}",
                          hint=f"use one of: {', '.join(NORMS)}")
    try:
        return FusionWeights(ce=fields["ce"], bm25=fields["bm25"], dense=fields["dense"], norm=fields["norm"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def load_weights(path: str | Path) -> FusionWeights:
    """Read the `weights` block of a fusion recipe (`recipes/fusion/*.yaml`, written by `fit-fusion`).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read fusion weights from {path}: {exc}",
                          hint="pass a YAML file written by `es-rerank fit-fusion`") from exc
    if not isinstance(data, dict) or "weights" not in data:
        raise ConfigError(f"{path} has no top-level `weights` block",
                          hint="expected e.g. weights: {ce: 0.5, bm25: 0.3, dense: 0.2, norm: zscore}")
    return weights_from_mapping(data["weights"], where=f"{path}: weights")


def parse_fusion_override(value: object, base: FusionWeights | None = None) -> FusionWeights:
    """Validate a request's `ext.rerank.fusion` value; `ConfigError` means answer 400.

    Weights left out of the request come from `base` (the index's configured weights), so
    `{"norm": "minmax"}` only changes the normalisation.

    Example:
        >>> parse_fusion_override({"ce": 0.5, "bm25": 0.3, "dense": 0.2, "norm": "zscore"}).dense
        0.2
        >>> parse_fusion_override({"ce": "high"})
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: ext.rerank.fusion.ce must be a number >= 0, got the string 'high' (weights are JSON numbers, e.g. 0.5)
    """
    return weights_from_mapping(value, base=base, where="ext.rerank.fusion")


def fuse(bm25_scores: Sequence[float] | np.ndarray, ce_scores: Sequence[float] | np.ndarray | None,
         dense_scores: Sequence[float] | np.ndarray | None, weights: FusionWeights) -> np.ndarray:
    """Fused float32 scores for one candidate window, in input order.

    Each input with a weight > 0 is normalised over the window (`weights.norm`) and the
    weighted normalised scores are summed. Inputs with weight 0 are ignored and may be None.
    A missing input that has a weight, arrays of different lengths, or NaN/inf scores raise
    `ScoringError`, on which the proxy serves the BM25 order.

    Example:
        >>> fuse([3.0, 2.0, 1.0], [0.1, 0.9, 0.5], None, FusionWeights(ce=1, bm25=1, norm="minmax")).tolist()
        [1.0, 1.5, 0.5]
    """
    inputs = {"bm25": bm25_scores, "ce": ce_scores, "dense": dense_scores}
    size = None
    total = None
    for name in ("bm25", "ce", "dense"):  # BM25 first: its length is the window's
        weight = getattr(weights, name)
        scores = inputs[name]
        if weight == 0:
            continue
        if scores is None:
            raise ScoringError(f"fusion weight {name}={weight} but no {name} scores were given",
                               hint=f"configure a {name} model for this index or set its fusion weight to 0")
        values = _as_vector(scores, f"{name} scores")
        if size is not None and values.size != size:
            raise ScoringError(f"fusion inputs differ in length: {name} has {values.size} scores, expected {size}",
                               hint="score every candidate of the window with every model")
        size = values.size
        part = weight * normalise(values, weights.norm)
        total = part if total is None else total + part
    return total.astype(np.float32)


def fused_order(hits: Sequence[Hit], ce_scores: Sequence[float] | np.ndarray | None,
                dense_scores: Sequence[float] | np.ndarray | None,
                weights: FusionWeights) -> list[tuple[Hit, float]]:
    """Hits with fused scores, best first; the BM25 input is each hit's own `score`.

    Ties keep the incoming BM25 order, as in `rerank.order_by_scores`.

    Example:
        >>> hits = [Hit("a", 9.0), Hit("b", 8.0), Hit("c", 1.0)]
        >>> [h.doc_id for h, _ in fused_order(hits, [0.0, 5.0, 0.0], None, FusionWeights(ce=1, bm25=1))]
        ['b', 'a', 'c']
    """
    fused = fuse([hit.score for hit in hits], ce_scores, dense_scores, weights)
    return order_by_scores(hits, fused)


def _as_vector(scores: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    try:
        values = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"{name} are not numbers ({exc})", hint="pass a list or array of floats") from None
    if values.ndim != 1:
        raise ScoringError(f"{name} must be one score per candidate (1-D), got shape {values.shape}",
                           hint="pass a flat list or array")
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ScoringError(f"{name} hold {int(bad.sum())} NaN or infinite value(s), first at position {first}",
                           hint="the model or upstream produced invalid scores; serve the BM25 order instead")
    return values


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"{type(value).__name__} {value!r}"
