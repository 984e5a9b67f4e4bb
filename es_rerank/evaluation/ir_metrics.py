"""nDCG@k and MRR@k of ranked id lists: the project's one nDCG, without ir_measures (the GPU
machine does not have it). `es-rerank ab`, fusion fitting and training all measure with it.

The definitions are trec_eval's, as ir_measures computes them (a unit test checks that):
nDCG@k uses the judged grade as gain and log2(rank + 1) as discount, the ideal ranking being
the judged grades sorted; MRR@k is 1/rank of the first document with grade >= 1 in the top k.
Every query in the qrels counts; one missing from the rankings scores 0 (as `es-rerank ab` does).

Example:
    >>> qrels = {"q1": {"a": 1, "b": 0}, "q2": {"c": 1}}
    >>> round(ndcg_at_k({"q1": ["b", "a"], "q2": []}, qrels, 10)["q1"], 4)
    0.6309
    >>> mrr_at_k({"q1": ["b", "a"]}, qrels, 10)
    {'q1': 0.5, 'q2': 0.0}
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]
Rankings = Mapping[str, Sequence[str]]


def ndcg_at_k(rankings: Rankings, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Per-query nDCG@k over every query in `qrels`."""
    _check_k(k)
    values = {}
    for qid, judged in qrels.items():
        gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        ranked = _unique(rankings.get(qid, ()))[:k]
        dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        values[qid] = dcg / ideal if ideal > 0 else 0.0
    return values


def mrr_at_k(rankings: Rankings, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Per-query reciprocal rank of the first relevant (grade >= 1) document within the top k."""
    _check_k(k)
    values = {}
    for qid, judged in qrels.items():
        ranked = _unique(rankings.get(qid, ()))[:k]
        values[qid] = next((1.0 / (i + 1) for i, d in enumerate(ranked) if judged.get(d, 0) >= 1), 0.0)
    return values


def summary(rankings: Rankings, qrels: Qrels) -> dict[str, float]:
    """Means over the judged queries: {"ndcg@10", "mrr@10", "queries"}.

    Example:
        >>> summary({"q": ["a"]}, {"q": {"a": 1}})
        {'ndcg@10': 1.0, 'mrr@10': 1.0, 'queries': 1}
    """
    ndcg, mrr = ndcg_at_k(rankings, qrels, 10), mrr_at_k(rankings, qrels, 10)
    n = len(qrels)
    return {"ndcg@10": sum(ndcg.values()) / n if n else 0.0, "mrr@10": sum(mrr.values()) / n if n else 0.0,
            "queries": n}


def scored_rankings(run: Mapping[str, Mapping[str, float]]) -> dict[str, list[str]]:
    """Rankings of a scored run (`{qid: {doc: score}}`) as trec_eval orders it: score descending,
    ties by document id descending.

    Example:
        >>> scored_rankings({"q": {"a": 1.0, "b": 2.0, "c": 1.0}})
        {'q': ['b', 'c', 'a']}
    """
    return {qid: [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]
            for qid, scores in run.items()}


def _unique(ranked: Sequence[str]) -> list[str]:
    """The first occurrence of each id (a duplicate would count its gain twice)."""
    return list(dict.fromkeys(ranked))


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
