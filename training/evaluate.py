"""Rerank a BM25 run with any `Scorer` through `es_rerank.rerank.rerank_hits`, and score it. Torch-free.

This is the serving path's rerank function, fed from files: a run written by `es-rerank
bm25-run` supplies the candidates and the corpus their `_source`, so dev evaluation during
training and the final test measure what the proxy would serve.

Example:
    >>> import numpy as np
    >>> class Length:
    ...     def score_pairs(self, queries, documents):
    ...         return np.array([len(d) for d in documents], dtype=np.float32)
    >>> run = {"q": [Hit("a", 2.0), Hit("b", 1.0)]}
    >>> sources = {"a": {"title": "x"}, "b": {"title": "xyz"}}
    >>> rerank_run(Length(), run, {"q": "query"}, sources, depth=100)
    {'q': ['b', 'a']}
"""

from __future__ import annotations

from typing import Mapping, Sequence

from es_rerank.rerank import rerank_hits
from es_rerank.retrieval import DEFAULT_FIELDS
from es_rerank.scorer import Scorer
from es_rerank.types import Hit
from es_rerank.training.metrics_eval import Qrels, summary


def rerank_run(scorer: Scorer, run: Mapping[str, Sequence[Hit]], queries: Mapping[str, str],
               sources: Mapping[str, dict], depth: int, fields: tuple[str, ...] = DEFAULT_FIELDS) -> dict[str, list[str]]:
    """The top `depth` hits of each query, reordered by `scorer`; `{qid: [doc ids]}`."""
    rankings = {}
    for qid, hits in run.items():
        candidates = [Hit(h.doc_id, h.score, sources[h.doc_id]) for h in hits[:depth]]
        rankings[qid] = [hit.doc_id for hit, _ in rerank_hits(scorer, queries[qid], candidates, fields)]
    return rankings


def bm25_rankings(run: Mapping[str, Sequence[Hit]], depth: int) -> dict[str, list[str]]:
    """The run's own order, cut to `depth`: the baseline the reranker must beat.

    Example:
        >>> bm25_rankings({"q": [Hit("a", 2.0), Hit("b", 1.0)]}, 1)
        {'q': ['a']}
    """
    return {qid: [h.doc_id for h in hits[:depth]] for qid, hits in run.items()}


def evaluate_scorer(scorer: Scorer, run: Mapping[str, Sequence[Hit]], queries: Mapping[str, str],
                    sources: Mapping[str, dict], qrels: Qrels, depth: int) -> dict[str, float]:
    """nDCG@10 and MRR@10 of the reranked run over the queries of `qrels`."""
    judged_run = {qid: run.get(qid, []) for qid in qrels}
    return summary(rerank_run(scorer, judged_run, queries, sources, depth), qrels)
