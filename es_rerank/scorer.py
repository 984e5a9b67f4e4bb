"""Scoring (query, document) pairs with a cross-encoder.

`Scorer` is the one interface the proxy, `ab`, `mine` and training evaluation score through.
Implementations return float32 scores in input order.

Example:
    >>> scorer: Scorer = OnnxScorer.load("exports/minilm")            # doctest: +SKIP
    >>> scorer.score("gene therapy", ["doc one", "doc two"]).dtype   # doctest: +SKIP
    dtype('float32')
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores pairs. Must be safe to call from several threads."""

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Score `queries[i]` against `documents[i]`; float32 array of len(documents), input order."""
        ...


def score(scorer: Scorer, query: str, documents: Sequence[str]) -> np.ndarray:
    """Score one query against many documents.

    Example:
        >>> class Length:
        ...     def score_pairs(self, queries, documents):
        ...         return np.array([len(d) for d in documents], dtype=np.float32)
        >>> score(Length(), "q", ["a", "abc"]).tolist()
        [1.0, 3.0]
    """
    if not documents:
        return np.zeros(0, dtype=np.float32)
    return scorer.score_pairs([query] * len(documents), documents)
