"""A document's score as the best of its passages' scores (BERT-MaxP, Dai & Callan 2019), for experiments.

A cross-encoder reads only the first `max_length` tokens of a pair, so in a collection of long
documents (TIME's median is about 600 tokens) it never sees most of the text BM25 matched. This
wrapper splits each document into overlapping word windows, scores every (query, window) pair
through an inner `Scorer`, and keeps each document's maximum.

Example:
    >>> import numpy as np
    >>> class CountX:
    ...     def score_pairs(self, queries, documents):
    ...         return np.array([d.count("x") for d in documents], dtype=np.float32)
    >>> windows("a b c d e", words=2, stride=2, most=3)
    ['a b', 'c d', 'e']
    >>> PassageMaxScorer(CountX(), words=2, stride=2, most=3).score_pairs(["q", "q"], ["a b x x c", "x"]).tolist()
    [2.0, 1.0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from es_rerank.scoring.cross_encoder import Scorer


def windows(text: str, words: int, stride: int, most: int) -> list[str]:
    """At most `most` windows of `words` words, `stride` words apart; a short text is one window."""
    tokens = text.split()
    if len(tokens) <= words:
        return [text]
    starts = list(range(0, len(tokens) - words + stride, stride))[:most]
    return [" ".join(tokens[s:s + words]) for s in starts]


class PassageMaxScorer:
    """Implements `Scorer`: each document scores as the maximum over its windows."""

    def __init__(self, inner: Scorer, words: int, stride: int, most: int) -> None:
        self.inner, self.words, self.stride, self.most = inner, words, stride, most

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        owners: list[int] = []
        pair_queries: list[str] = []
        passages: list[str] = []
        for i, (query, document) in enumerate(zip(queries, documents)):
            for passage in windows(document, self.words, self.stride, self.most):
                owners.append(i)
                pair_queries.append(query)
                passages.append(passage)
        scores = np.asarray(self.inner.score_pairs(pair_queries, passages), dtype=np.float32)
        best = np.full(len(documents), -np.inf, dtype=np.float32)
        np.maximum.at(best, np.array(owners, dtype=np.int64), scores)
        return best
