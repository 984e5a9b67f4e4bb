"""The one check that a scorer's output is usable: one finite score per pair."""

from __future__ import annotations

import numpy as np

from es_rerank.errors import ScoringError


def check_scores(scores: np.ndarray, pairs: int, source: str = "the scorer") -> None:
    """Raise `ScoringError` unless `scores` holds exactly one finite number for each of `pairs`.

    A wrong count would pair scores with the wrong documents; NaN or inf would order hits
    arbitrarily and serialise as null. `source` names the scorer in the message.

    Example:
        >>> check_scores(np.array([0.5, -1.0], dtype=np.float32), 2)
        >>> check_scores(np.array([0.5, np.nan]), 2, "the dense scorer")
        Traceback (most recent call last):
        ...
        es_rerank.errors.ScoringError: the dense scorer returned shape (2,) with 1 non-finite values for 2 pairs (expected one finite score per pair; check the model export)
    """
    finite = np.isfinite(scores)
    if scores.shape != (pairs,) or not finite.all():
        raise ScoringError(f"{source} returned shape {scores.shape} with {int((~finite).sum())} non-finite values "
                           f"for {pairs} pairs", hint="expected one finite score per pair; check the model export")
