"""Reorder BM25 hits by cross-encoder score: the one function the proxy, `ab` and training
evaluation all rerank with, so what is measured is what is served.

Example:
    >>> class Length:
    ...     def score_pairs(self, queries, documents):
    ...         return np.array([len(d) for d in documents], dtype=np.float32)
    >>> hits = [Hit("a", 9.0, {"text": "x"}), Hit("b", 8.0, {"text": "xyz"})]
    >>> [(h.doc_id, s) for h, s in rerank_hits(Length(), "q", hits, ("text",))]
    [('b', 3.0), ('a', 1.0)]
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from es_rerank.scoring.cross_encoder import Scorer, score
from es_rerank.types import Hit


def rerank_hits(scorer: Scorer, query: str, hits: Sequence[Hit], fields: tuple[str, ...]) -> list[tuple[Hit, float]]:
    """Hits with their new scores, best first. Ties keep BM25 order (stable sort)."""
    scores = score(scorer, query, [hit.text(fields) for hit in hits])
    return order_by_scores(hits, scores)


T = TypeVar("T")


def order_by_scores(hits: Sequence[T], scores: np.ndarray) -> list[tuple[T, float]]:
    """Sort hits by descending score; equal scores keep their incoming (BM25) order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [(hits[i], float(scores[i])) for i in order]
