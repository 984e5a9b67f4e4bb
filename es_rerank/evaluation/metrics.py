"""Per-query retrieval metrics, by trec_eval's definitions: nDCG@10 and MRR@10 from the project's
one implementation (`es_rerank.evaluation.ir_metrics`), Recall@100 and MAP through ir_measures (pytrec_eval).

A run is the ranked list of document ids each query got, in the order the user saw them. The
scores handed to ir_measures are derived from that order (`depth - rank`), so the evaluator
cannot re-sort ties differently from what was served.

Example:
    >>> qrels = {"q1": {"a": 1, "b": 0}, "q2": {"c": 1}}
    >>> values = per_query_metrics(qrels, {"q1": ["b", "a"], "q2": []})
    >>> values["MRR@10"]
    {'q1': 0.5, 'q2': 0.0}
    >>> round(values["nDCG@10"]["q1"], 4)
    0.6309
"""

from __future__ import annotations

from typing import Mapping, Sequence

from es_rerank.evaluation.ir_metrics import mrr_at_k, ndcg_at_k

Qrels = Mapping[str, Mapping[str, int]]
RankedIds = Mapping[str, Sequence[str]]

# Display name -> ir_measures measure name. MAP is average precision over the whole run depth.
MEASURES = {
    "nDCG@10": "nDCG@10",
    "MRR@10": "RR@10",
    "Recall@100": "R@100",
    "MAP": "AP",
}
PRIMARY = "nDCG@10"


def per_query_metrics(qrels: Qrels, run: RankedIds, names: Sequence[str] = tuple(MEASURES)) -> dict[str, dict[str, float]]:
    """`{metric: {query_id: value}}` for every query in `qrels`; a query with no hits scores 0.

    nDCG@10 and MRR@10 are the project's own (`es_rerank.evaluation.ir_metrics`, equal to ir_measures'),
    the others ir_measures'.

    Example:
        >>> per_query_metrics({"q": {"d": 1}}, {"q": ["x", "d"]}, ["Recall@100"])
        {'Recall@100': {'q': 1.0}}
    """
    unknown = [name for name in names if name not in MEASURES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(MEASURES)}")
    values = {name: {query_id: 0.0 for query_id in qrels} for name in names}
    own = {"nDCG@10": ndcg_at_k, "MRR@10": mrr_at_k}
    for name in names:
        if name in own:
            values[name] = own[name](run, qrels, 10)
    others = [name for name in names if name not in own]
    if others:
        import ir_measures

        by_measure = {ir_measures.parse_measure(MEASURES[name]): name for name in others}
        judged_run = {query_id: rank_scores(run.get(query_id, ())) for query_id in qrels}
        qrels_dict = {query_id: dict(judged) for query_id, judged in qrels.items()}
        for metric in ir_measures.iter_calc(list(by_measure), qrels_dict, judged_run):
            values[by_measure[metric.measure]][metric.query_id] = float(metric.value)
    return values


def rank_scores(doc_ids: Sequence[str]) -> dict[str, float]:
    """Scores that reproduce the served order exactly: the first id gets the highest score.

    Example:
        >>> rank_scores(["b", "a", "c"])
        {'b': 3.0, 'a': 2.0, 'c': 1.0}
    """
    depth = len(doc_ids)
    return {doc_id: float(depth - rank) for rank, doc_id in enumerate(doc_ids)}


def mean(values: Mapping[str, float]) -> float:
    """Arithmetic mean over queries (0.0 for none).

    Example:
        >>> mean({"a": 1.0, "b": 0.0})
        0.5
    """
    return sum(values.values()) / len(values) if values else 0.0
