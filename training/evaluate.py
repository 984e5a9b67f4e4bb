"""Measure a fine-tuned cross-encoder through any `Scorer`. Torch-free.

Two measures, one per kind of evaluation data:

- `evaluate_scorer` (`es-rerank train`'s dev split): rerank a BM25 run through the serving
  path's rerank function, `es_rerank.scoring.rerank.rerank_hits`, fed from files: a run written by
  `es-rerank bm25-run` supplies the candidates and the corpus their `_source`, so dev
  evaluation during training and the final test measure what the proxy would serve.
- `evaluate_student` (`es-rerank adapt`): score a scored candidates file (`es-rerank
  fusion-candidates`, with dense scores from `score-candidates`) as its `ce` column, alone and
  fused with BM25 (and dense). It runs where the model runs (the GPU machine has no
  ir_measures); the file can be written back so `es-rerank bench fusion` can recompute every
  figure with ir_measures. The fused systems use fixed weights chosen before any measurement
  (equal z-score weights, the least committed choice), so no collection's judgments pick them:
  `adapted_fused` (0.5 adapted + 0.5 BM25), `adapted_fused_dense` (1/3 each of adapted, BM25
  and dense) and `bm25_dense_fused`, the reference without the adapted model
  (recipes/fusion/bm25_dense_minilm.yaml).

nDCG@10 here comes from `es_rerank.evaluation.ir_metrics` (trec_eval's definition), over the rankings of
`fusion_fit.ranking_run` (ties keep BM25 order, as the proxy breaks them).

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

from pathlib import Path
from typing import Mapping, Sequence

from es_rerank.data.beir import Qrels
from es_rerank.scoring.fusion import FusionWeights
from es_rerank.data.candidates import CandidateSet, read_candidates, write_candidates
from es_rerank.evaluation.fusion_fit import judged_qrels, mean_ndcg10, ranking_run, score_candidates
from es_rerank.scoring.rerank import rerank_hits
from es_rerank.engine.bm25_query import DEFAULT_FIELDS
from es_rerank.scoring.cross_encoder import Scorer
from es_rerank.types import Hit
from es_rerank.evaluation.ir_metrics import summary

FUSED_SYSTEMS = {
    "adapted_fused": FusionWeights(ce=0.5, bm25=0.5, dense=0.0, norm="zscore"),
    "adapted_fused_dense": FusionWeights(ce=1 / 3, bm25=1 / 3, dense=1 / 3, norm="zscore"),
    "bm25_dense_fused": FusionWeights(ce=0.0, bm25=0.5, dense=0.5, norm="minmax"),
}
SYSTEM_INPUT = {"bm25": "bm25", "dense": "dense", "adapted": "ce"}


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


def system_figures(cands: CandidateSet, qrels: Qrels,
                   fused: Mapping[str, FusionWeights] = FUSED_SYSTEMS) -> dict[str, float]:
    """Mean nDCG@10 of every system the file's columns allow, over the judged queries.

    Example:
        >>> import numpy as np
        >>> from es_rerank.data.candidates import QueryCandidates
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
    return {name: mean_ndcg10(judged, ranking_run(cands, how)) for name, how in systems.items()}


def evaluate_student(scorer: Scorer, candidates: Path, qrels: Qrels, label: str,
                     scored_out: Path | None = None) -> dict[str, float]:
    """Score `candidates` with `scorer` as its `ce` column, optionally write the file, return the figures."""
    cands = read_candidates(candidates)
    score_candidates(cands, "ce", scorer, label)
    if scored_out is not None:
        history = cands.meta.setdefault("history", [])
        history.append(f"scored with the adapted cross-encoder {label} (es_rerank.training.evaluate)")
        write_candidates(cands, scored_out)
    return system_figures(cands, qrels)
