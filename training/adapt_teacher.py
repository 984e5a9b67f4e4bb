"""The teacher's score for every entry of a prepared pseudo group. Torch-free.

The teacher fuses the raw inputs of the prepared file exactly as serving fuses a candidate
window (`es_rerank.scoring.fusion.normalise`, then a weighted sum), over the whole stored group: BM25
plus the dense bi-encoder beat either alone on every collection measured, so their fusion is
the better label than the bi-encoder the naive probe of issue 8 distilled from.

The masked positive has no BM25 score (the index can only score the unmasked document, which
contains the query verbatim). It gets the best normalised BM25 value of its group: the
document a query was cut from is taken to match it at least as well, lexically, as any other.

Example:
    >>> group = PseudoGroup("t-1-0", "title", "1", "q", "masked", ("a", "b"),
    ...                     {"bm25": np.array([np.nan, 4.0, 2.0]), "dense": np.array([0.9, 0.2, 0.4])})
    >>> [round(float(x), 3) for x in teacher_scores(group, FusionWeights(ce=0, bm25=0.5, dense=0.5))]
    [1.179, -0.01, -0.67]
"""

from __future__ import annotations

import numpy as np

from es_rerank.errors import DatasetError
from es_rerank.scoring.fusion import FusionWeights, normalise
from es_rerank.training.adapt_groups import PseudoGroup


def teacher_scores(group: PseudoGroup, weights: FusionWeights) -> np.ndarray:
    """float32 teacher scores, one per entry (positive first when there is one).

    Example:
        >>> g = PseudoGroup("t-1-0", "title", "1", "q", None, ("a", "b"), {"dense": np.array([0.5, 0.5])})
        >>> teacher_scores(g, FusionWeights(ce=0, bm25=0, dense=1)).tolist()
        [0.0, 0.0]
    """
    total = np.zeros(group.size, dtype=np.float64)
    for name in ("bm25", "dense", "ce"):
        weight = getattr(weights, name)
        if weight == 0:
            continue
        values = group.scores.get(name)
        if values is None:
            raise DatasetError(f"the teacher weighs {name} ({weight}) but group {group.qid} has no {name} scores",
                               hint=f"prepare the file with a {name} teacher, or set teacher_{name} to 0")
        total += weight * normalise_known(values, weights.norm)
    return total.astype(np.float32)


def normalise_known(values: np.ndarray, norm: str) -> np.ndarray:
    """Normalise the finite values over the group; NaN entries get the best normalised value.

    Example:
        >>> normalise_known(np.array([np.nan, 3.0, 1.0]), "minmax").tolist()
        [1.0, 1.0, 0.0]
    """
    values = np.asarray(values, dtype=np.float64)
    known = np.isfinite(values)
    out = np.zeros(values.shape, dtype=np.float64)
    if known.any():
        out[known] = normalise(values[known], norm)
        out[~known] = out[known].max()
    return out
