"""Measure an adapted cross-encoder on a scored candidates file, alone and fused with BM25 (and dense).

Runs where the model runs (the GPU machine has no ir_measures): the candidates file
(`es-rerank fusion-candidates`, with dense scores from `score-candidates`) gets the student's
scores as its `ce` column, written back so `es-rerank bench fusion` can recompute every figure
with ir_measures; nDCG@10 here comes from `training.metrics_eval` (trec_eval's definition).

The fused systems use fixed weights chosen before any measurement (equal z-score weights, the
least committed choice), so no collection's judgments pick them:

- `adapted_fused`: 0.5 adapted + 0.5 BM25
- `adapted_fused_dense`: 1/3 each of adapted, BM25 and dense
- `bm25_dense_fused`: the reference without the adapted model (recipes/fusion/bm25_dense_minilm.yaml)

Example:
    >>> figures = evaluate_student(scorer, Path("cranfield-test.scored.jsonl.gz"), qrels, "adapted")  # doctest: +SKIP
    >>> sorted(figures)   # doctest: +SKIP
    ['adapted', 'adapted_fused', 'adapted_fused_dense', 'bm25', 'bm25_dense_fused', 'dense']
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from es_rerank.datasets import Qrels
from es_rerank.fusion import FusionWeights, fuse
from es_rerank.fusion_fit import CandidateSet, judged_qrels, read_candidates, score_candidates, write_candidates
from es_rerank.scorer import Scorer
from es_rerank.training.metrics_eval import ndcg_at_k

FUSED_SYSTEMS = {
    "adapted_fused": FusionWeights(ce=0.5, bm25=0.5, dense=0.0, norm="zscore"),
    "adapted_fused_dense": FusionWeights(ce=1 / 3, bm25=1 / 3, dense=1 / 3, norm="zscore"),
    "bm25_dense_fused": FusionWeights(ce=0.0, bm25=0.5, dense=0.5, norm="minmax"),
}
SYSTEM_INPUT = {"bm25": "bm25", "dense": "dense", "adapted": "ce"}


def rankings(cands: CandidateSet, how: str | FusionWeights) -> dict[str, list[str]]:
    """`{qid: doc ids best first}` by one score column or by fused weights; ties keep BM25 order.

    Example:
        >>> from es_rerank.fusion_fit import QueryCandidates
        >>> c = CandidateSet({}, {}, [QueryCandidates("1", "q", ["a", "b"], {"bm25": np.array([2.0, 1.0]),
        ...                                                                  "ce": np.array([0.0, 1.0])})])
        >>> rankings(c, "ce"), rankings(c, FusionWeights(ce=1, bm25=1))
        ({'1': ['b', 'a']}, {'1': ['a', 'b']})
    """
    out = {}
    for query in cands.queries:
        if isinstance(how, FusionWeights):
            scores = fuse(query.scores["bm25"], query.scores.get("ce"), query.scores.get("dense"), how)
        else:
            scores = query.scores[how]
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        out[query.query_id] = [query.doc_ids[i] for i in order]
    return out


def system_figures(cands: CandidateSet, qrels: Qrels,
                   fused: Mapping[str, FusionWeights] = FUSED_SYSTEMS) -> dict[str, float]:
    """Mean nDCG@10 of every system the file's columns allow, over the judged queries.

    Example:
        >>> from es_rerank.fusion_fit import QueryCandidates
        >>> c = CandidateSet({}, {}, [QueryCandidates("1", "q", ["a", "b"], {"bm25": np.array([2.0, 1.0])})])
        >>> system_figures(c, {"1": {"b": 1}}, {})
        {'bm25': 0.6309297535714575}
    """
    judged = judged_qrels(cands, qrels)
    present = cands.inputs()
    systems: dict[str, str | FusionWeights] = {name: col for name, col in SYSTEM_INPUT.items() if col in present}
    for name, weights in fused.items():
        needed = [n for n in ("ce", "bm25", "dense") if getattr(weights, n) > 0]
        if all(n in present for n in needed):
            systems[name] = weights
    figures = {}
    for name, how in systems.items():
        per_query = ndcg_at_k(rankings(cands, how), judged, 10)
        figures[name] = sum(per_query.values()) / len(per_query)
    return figures


def evaluate_student(scorer: Scorer, candidates: Path, qrels: Qrels, label: str,
                     scored_out: Path | None = None) -> dict[str, float]:
    """Score `candidates` with `scorer` as its `ce` column, optionally write the file, return the figures."""
    cands = read_candidates(candidates)
    score_candidates(cands, "ce", scorer, label)
    if scored_out is not None:
        history = cands.meta.setdefault("history", [])
        history.append(f"scored with the adapted cross-encoder {label} (es_rerank.training.adapt_eval)")
        write_candidates(cands, scored_out)
    return system_figures(cands, qrels)
