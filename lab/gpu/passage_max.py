"""A document's score as the best of its passages' scores (BERT-MaxP, Dai & Callan 2019), for experiments.

A cross-encoder reads only the first `max_length` tokens of a pair, so in a collection of long
documents (TIME's median is about 600 tokens) it never sees most of the text BM25 matched. This
wrapper splits each document into passages, scores every (query, passage) pair through an inner
`Scorer`, and keeps each document's maximum. Two ways to split:

- `WordWindows`: fixed windows of words, whatever fits in the pair;
- `BudgetWindows`: windows of the tokens a pair has room for beside its query, so the first
  passage is exactly what the plain pair sees and a document that fits stays one passage.

Example:
    >>> import numpy as np
    >>> class CountX:
    ...     def score_pairs(self, queries, documents):
    ...         return np.array([d.count("x") for d in documents], dtype=np.float32)
    >>> WordWindows(words=2, stride=2, most=3)("q", "a b c d e")
    ['a b', 'c d', 'e']
    >>> PassageMaxScorer(CountX(), WordWindows(words=2, stride=2, most=3)).score_pairs(["q", "q"], ["a b x x c", "x"]).tolist()
    [2.0, 1.0]
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from es_rerank.scoring.cross_encoder import Scorer

# (query, document) -> the document's passages, the first one first
Splitter = Callable[[str, str], list[str]]


class WordWindows:
    """At most `most` windows of `words` words, `stride` words apart; a short text is one window."""

    def __init__(self, words: int, stride: int, most: int) -> None:
        self.words, self.stride, self.most = words, stride, most

    def __call__(self, query: str, document: str) -> list[str]:
        tokens = document.split()
        if len(tokens) <= self.words:
            return [document]
        starts = list(range(0, len(tokens) - self.words + self.stride, self.stride))[:self.most]
        return [" ".join(tokens[s:s + self.words]) for s in starts]


class BudgetWindows:
    """Windows of the document tokens a pair holds beside its (cut) query, overlapping by `overlap` tokens.

    `tokenizer` is a `tokenizers.Tokenizer`; passages are cut from the document's own text at token
    offsets, so each is a span of the original, never a re-decoded string.
    """

    def __init__(self, tokenizer, max_length: int, query_max_length: int, overlap: int, most: int) -> None:
        self.tokenizer = tokenizer
        self.max_length, self.query_max_length = max_length, query_max_length
        self.overlap, self.most = overlap, most
        self.special_tokens = tokenizer.num_special_tokens_to_add(True)  # as PairEncoder counts them

    def __call__(self, query: str, document: str) -> list[str]:
        query_tokens = min(len(self.tokenizer.encode(query, add_special_tokens=False).ids), self.query_max_length)
        budget = self.max_length - self.special_tokens - query_tokens
        offsets = self.tokenizer.encode(document, add_special_tokens=False).offsets
        if budget <= self.overlap or len(offsets) <= budget:
            return [document]
        passages = []
        for start in range(0, len(offsets), budget - self.overlap):
            end = min(start + budget, len(offsets))
            passages.append(document[offsets[start][0]:offsets[end - 1][1]])
            if end == len(offsets) or len(passages) == self.most:
                break
        return passages


class PassageMaxScorer:
    """Implements `Scorer`: each document scores as the maximum over its passages."""

    def __init__(self, inner: Scorer, split: Splitter) -> None:
        self.inner, self.split = inner, split

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        owners: list[int] = []
        pair_queries: list[str] = []
        passages: list[str] = []
        for i, (query, document) in enumerate(zip(queries, documents)):
            for passage in self.split(query, document):
                owners.append(i)
                pair_queries.append(query)
                passages.append(passage)
        scores = np.asarray(self.inner.score_pairs(pair_queries, passages), dtype=np.float32)
        best = np.full(len(documents), -np.inf, dtype=np.float32)
        np.maximum.at(best, np.array(owners, dtype=np.int64), scores)
        return best
