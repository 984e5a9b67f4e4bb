"""Choosing fusion weights on a dev split of a scored candidates file (`data.candidates`).

`score_candidates` adds the `ce` or `dense` column to a file made from the engine's BM25 top-k,
so it can be scored on a machine without OpenSearch (the GPU machine) and fitted on another.

`fit_weights` grid-searches a simplex of weights over the inputs it is given and keeps the
setting with the best mean nDCG@10 of the fused ranking (`select="best"`), or, with
`select="one-se"`, the setting that leans least on the cross-encoder among those within one
standard error of the best: the dev split cannot tell those apart, and a cross-encoder fitted
in one domain is the input least to be trusted in another. The whole curve is returned so the
choice can be seen, not just trusted. nDCG@10 comes from `es_rerank.evaluation.ir_metrics` (trec_eval's definition).

Example:
    >>> grid = simplex_grid(("bm25", "dense"), 0.5)
    >>> [(w["bm25"], w["dense"]) for w in grid]
    [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from es_rerank.data.beir import Qrels
from es_rerank.data.candidates import CandidateSet, natural_key
from es_rerank.errors import ConfigError, DatasetError
from es_rerank.scoring.fusion import INPUTS, NORMS, FusionWeights, fuse, normalise
from es_rerank.evaluation.ir_metrics import ndcg_at_k, scored_rankings
from es_rerank.scoring.cross_encoder import Scorer
from es_rerank.scoring.validity import check_scores

DEV_SALT = "es-rerank-fusion-dev"
# Systems as docs/benchmarks.json names them: a score column -> the system it ranks by.
SYSTEM_OF_INPUT = {"bm25": "bm25", "dense": "dense", "ce": "rerank"}
# A placeholder hit for a query BM25 found nothing for, so the query still counts (as 0).
NO_HIT = "__es_rerank_no_hit__"
SELECTIONS = ("best", "one-se")
SELECTION_RULES = {"best": "highest mean nDCG@10",
                   "one-se": "smallest cross-encoder share of the fused spread among the settings within one "
                             "standard error (per-query paired difference) of the highest mean nDCG@10"}


def dev_query_ids(query_ids: Iterable[str], fraction: float, salt: str = DEV_SALT) -> list[str]:
    """A deterministic subset of about `fraction` of the ids, chosen by hashing each id.

    Membership depends only on the id and `salt`, not on order or on which other ids exist, so
    training can leave out exactly these queries.

    Example:
        >>> ids = [str(i) for i in range(1000)]
        >>> dev = dev_query_ids(ids, 0.25)
        >>> 200 < len(dev) < 300, dev == dev_query_ids(reversed(ids), 0.25)
        (True, True)
    """
    if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"dev fraction must be in (0, 1], got {fraction!r}", hint="e.g. 0.25")
    chosen = []
    for query_id in query_ids:
        digest = hashlib.sha256(f"{salt}\0{query_id}".encode("utf-8")).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < fraction:
            chosen.append(query_id)
    return sorted(chosen, key=natural_key)


def score_candidates(cands: CandidateSet, name: str, scorer: Scorer, label: str, chunk_queries: int = 32,
                     progress: Callable[[Sequence], Iterable] | None = None) -> None:
    """Add score column `name` (`ce` or `dense`) to every query, scored through the `Scorer` protocol.

    Queries are scored `chunk_queries` at a time, so a scorer that deduplicates texts within a
    call (the dense scorer does) embeds a document shared by several queries once per chunk.

    Example:
        >>> from es_rerank.data.candidates import QueryCandidates
        >>> class Length:
        ...     def score_pairs(self, queries, documents):
        ...         return np.array([len(d) for d in documents], dtype=np.float32)
        >>> cands = CandidateSet({"models": {}}, {"a": "xx", "b": "x"},
        ...                      [QueryCandidates("1", "q", ["a", "b"], {"bm25": np.array([2.0, 1.0])})])
        >>> score_candidates(cands, "dense", Length(), "length")
        >>> cands.queries[0].scores["dense"].tolist(), cands.meta["models"]
        ([2.0, 1.0], {'dense': 'length'})
    """
    if name not in ("ce", "dense"):
        raise ConfigError(f"score name must be ce or dense, got {name!r}", hint="bm25 comes from OpenSearch")
    if not isinstance(chunk_queries, int) or chunk_queries < 1:
        raise ConfigError(f"chunk_queries must be a positive integer, got {chunk_queries!r}", hint="e.g. 32")
    chunks = [cands.queries[i:i + chunk_queries] for i in range(0, len(cands.queries), chunk_queries)]
    for chunk in (progress(chunks) if progress else chunks):
        query_texts = [q.text for q in chunk for _ in q.doc_ids]
        doc_texts = [cands.docs[d] for q in chunk for d in q.doc_ids]
        scores = np.asarray(scorer.score_pairs(query_texts, doc_texts))
        check_scores(scores, len(doc_texts), f"the {name} scorer")
        start = 0
        for query in chunk:
            query.scores[name] = scores[start:start + len(query.doc_ids)].astype(np.float64)
            start += len(query.doc_ids)
    cands.meta.setdefault("models", {})[name] = label


def ranking_run(cands: CandidateSet, system: str | FusionWeights) -> dict[str, dict[str, float]]:
    """A scored run (trec_eval's layout) ranking each query's candidates by one input or by fused weights.

    Run scores encode the rank (n, n-1, ...), so ties are broken as the proxy breaks them
    (incoming BM25 order), not by document id as trec_eval would.

    Example:
        >>> from es_rerank.data.candidates import QueryCandidates
        >>> cands = CandidateSet({}, {}, [QueryCandidates("1", "q", ["a", "b"],
        ...     {"bm25": np.array([2.0, 1.0]), "dense": np.array([0.1, 0.3])})])
        >>> ranking_run(cands, "dense")
        {'1': {'b': 2.0, 'a': 1.0}}
        >>> ranking_run(cands, FusionWeights(ce=0, bm25=1, dense=0))
        {'1': {'a': 2.0, 'b': 1.0}}
    """
    run = {}
    for query in cands.queries:
        if not query.doc_ids:
            run[query.query_id] = {NO_HIT: 0.0}
            continue
        if isinstance(system, FusionWeights):
            scores = fuse(query.scores["bm25"], query.scores.get("ce"), query.scores.get("dense"), system)
        else:
            if system not in query.scores:
                raise ConfigError(f"query {query.query_id} has no {system!r} scores",
                                  hint=f"score the candidates with {system} first (es-rerank score-candidates)")
            scores = query.scores[system]
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        n = len(order)
        run[query.query_id] = {query.doc_ids[i]: float(n - rank) for rank, i in enumerate(order)}
    return run


def judged_qrels(cands: CandidateSet, qrels: Qrels) -> Qrels:
    """The judgments of the file's queries; refuses a file whose queries have none.

    Example:
        >>> from es_rerank.data.candidates import QueryCandidates
        >>> cands = CandidateSet({}, {}, [QueryCandidates("1", "q", [])])
        >>> judged_qrels(cands, {"1": {"d": 1}, "2": {"e": 1}})
        {'1': {'d': 1}}
    """
    selected = {q.query_id: qrels[q.query_id] for q in cands.queries if q.query_id in qrels}
    if not selected:
        raise DatasetError("none of the candidate file's queries has judgments in these qrels",
                           hint="pass the qrels of the split the candidates were made from")
    return selected


def mean_ndcg10(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> float:
    """Mean nDCG@10 over the judged queries the run ranks (as ir_measures aggregates).

    Example:
        >>> round(mean_ndcg10({"1": {"b": 1}}, {"1": {"a": 2.0, "b": 1.0}}), 4)
        0.6309
    """
    ranked = {q: judged for q, judged in qrels.items() if q in run}
    values = ndcg_at_k(scored_rankings({q: run[q] for q in ranked}), ranked, 10)
    return sum(values.values()) / len(values) if values else 0.0


def per_query_ndcg10(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """nDCG@10 of each judged query (sorted by id; 0 for a query missing from the run).

    Example:
        >>> per_query_ndcg10({"1": {"b": 1}, "2": {"a": 1}}, {"1": {"a": 2.0, "b": 1.0}}).round(4).tolist()
        [0.6309, 0.0]
    """
    found = ndcg_at_k(scored_rankings({q: run[q] for q in qrels if q in run}), qrels, 10)
    return np.array([found[query_id] for query_id in sorted(qrels, key=natural_key)], dtype=np.float64)


def input_spreads(cands: CandidateSet, inputs: Sequence[str], norm: str) -> dict[str, float]:
    """Mean standard deviation of each input over a window after normalisation (1 for z-score).

    With min-max the spread differs by input (one outlier squeezes the rest of the window), so a
    weight alone does not say how much an input moves the fused order; weight x spread does.

    Example:
        >>> from es_rerank.data.candidates import QueryCandidates
        >>> cands = CandidateSet({}, {}, [QueryCandidates("1", "q", ["a", "b", "c"],
        ...     {"bm25": np.array([3.0, 2.0, 1.0]), "ce": np.array([9.0, 0.0, 0.0])})])
        >>> {k: round(v, 3) for k, v in input_spreads(cands, ("ce", "bm25"), "minmax").items()}
        {'ce': 0.471, 'bm25': 0.408}
    """
    spreads = {}
    for name in inputs:
        values = [normalise(q.scores[name], norm).std() for q in cands.queries if len(q.doc_ids) > 1]
        spreads[name] = float(np.mean(values)) if values else 0.0
    return spreads


def ce_share(weights: FusionWeights, spreads: Mapping[str, float]) -> float:
    """The cross-encoder's share of the fused score's spread: ce weight x spread over the sum for all inputs.

    Example:
        >>> ce_share(FusionWeights(ce=0.2, bm25=0.3, dense=0.5), {"ce": 1.0, "bm25": 1.0, "dense": 1.0})
        0.2
    """
    parts = {name: getattr(weights, name) * spreads.get(name, 0.0) for name in INPUTS}
    total = sum(parts.values())
    return parts["ce"] / total if total > 0 else 0.0


def simplex_grid(inputs: Sequence[str], step: float) -> list[dict[str, float]]:
    """All weightings of `inputs` in multiples of `step` that sum to 1.

    Example:
        >>> len(simplex_grid(("ce", "bm25", "dense"), 0.1))
        66
    """
    if not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise ConfigError(f"grid step must be in (0, 1], got {step!r}", hint="e.g. 0.05")
    parts = round(1 / step)
    if not math.isclose(parts * step, 1.0, abs_tol=1e-9):
        raise ConfigError(f"grid step {step} does not divide 1 evenly", hint="use e.g. 0.1, 0.05 or 0.02")
    if not inputs:
        raise ConfigError("no fusion inputs to weigh", hint="give at least one of bm25, ce, dense")
    grid = []
    for counts in _compositions(parts, len(inputs)):
        grid.append({name: round(count / parts, 10) for name, count in zip(inputs, counts)})
    return grid


def _compositions(total: int, slots: int) -> Iterable[tuple[int, ...]]:
    if slots == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, slots - 1):
            yield (first, *rest)


@dataclass(frozen=True)
class FitPoint:
    """One grid setting, the mean dev nDCG@10 of its fused ranking, and how sure that is.

    `stderr` is the standard error of the per-query nDCG@10 difference between this setting
    and the dev-best one (0 for the dev-best itself); `ce_share` is the cross-encoder's share
    of the fused score's spread (`ce_share()`).
    """

    weights: FusionWeights
    ndcg10: float
    stderr: float = 0.0
    ce_share: float = 0.0


@dataclass(frozen=True)
class FitResult:
    """The chosen weights (`best`), the whole curve, and what the fit saw.

    `top` is the setting with the highest dev nDCG@10; it is `best` unless `selection` is `one-se`.
    """

    best: FitPoint
    curve: tuple[FitPoint, ...]
    inputs: tuple[str, ...]
    norms: tuple[str, ...]
    step: float
    queries: int
    baselines: dict[str, float]
    selection: str = "best"
    top: FitPoint | None = None


def fit_weights(cands: CandidateSet, qrels: Qrels, inputs: Sequence[str] | None = None,
                norms: Sequence[str] = NORMS, step: float = 0.05, select: str = "best") -> FitResult:
    """Grid-search fusion weights on the file's judged queries; `select` says which setting to keep.

    `best`: the highest mean nDCG@10. `one-se`: among the settings whose mean is within one
    standard error (of the per-query difference) of the highest, the one with the smallest
    cross-encoder share, then the highest mean: the most cautious setting the dev split cannot
    tell from the best. Without a `ce` input both rules choose the same. `inputs` defaults to
    every score the file has. Ties go to the setting nearest equal weights (the least committed
    choice), then to the first norm listed.
    """
    inputs = tuple(inputs) if inputs else cands.inputs()
    unknown = [name for name in inputs if name not in INPUTS]
    if unknown or len(set(inputs)) != len(inputs):
        raise ConfigError(f"fusion inputs must be distinct names among {', '.join(INPUTS)}, got {', '.join(inputs)}",
                          hint="e.g. --inputs bm25,dense")
    absent = [name for name in inputs if name not in cands.inputs()]
    if absent:
        raise ConfigError(f"the candidates file has no {', '.join(absent)} scores (it has {', '.join(cands.inputs())})",
                          hint="score it with es-rerank score-candidates, or leave those inputs out")
    bad_norms = [n for n in norms if n not in NORMS]
    if bad_norms or not norms:
        raise ConfigError(f"norms must be among {', '.join(NORMS)}, got {list(norms)}", hint="e.g. zscore")
    if select not in SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got {select!r}",
                          hint="best: the highest dev nDCG@10; one-se: the most cautious setting within one "
                               "standard error of it")
    inputs = tuple(name for name in INPUTS if name in inputs)  # canonical order
    judged = judged_qrels(cands, qrels)
    baselines = {name: mean_ndcg10(judged, ranking_run(cands, name)) for name in inputs}
    spreads = {norm: input_spreads(cands, inputs, norm) for norm in norms}
    settings, per_query = [], []
    for norm in norms:
        for grid_point in simplex_grid(inputs, step):
            weights = FusionWeights(ce=grid_point.get("ce", 0.0), bm25=grid_point.get("bm25", 0.0),
                                    dense=grid_point.get("dense", 0.0), norm=norm)
            settings.append(weights)
            per_query.append(per_query_ndcg10(judged, ranking_run(cands, weights)))
    uniform = 1 / len(inputs)

    def preference(index: int) -> tuple:
        spread = max(abs(getattr(settings[index], name) - uniform) for name in inputs)
        return (round(float(per_query[index].mean()), 10), -round(spread, 10), -index)

    top_index = max(range(len(settings)), key=preference)
    curve = tuple(FitPoint(weights, float(values.mean()), _paired_stderr(values, per_query[top_index]),
                           ce_share(weights, spreads[weights.norm]))
                  for weights, values in zip(settings, per_query))
    top = curve[top_index]
    best = top
    if select == "one-se":
        close = [i for i, point in enumerate(curve) if point.ndcg10 >= top.ndcg10 - point.stderr]
        best = curve[min(close, key=lambda i: (round(curve[i].ce_share, 10), -round(curve[i].ndcg10, 10), i))]
    return FitResult(best=best, curve=curve, inputs=inputs, norms=tuple(norms), step=step,
                     queries=len(judged), baselines=baselines, selection=select, top=top)


def _paired_stderr(values: np.ndarray, reference: np.ndarray) -> float:
    """Standard error of the mean per-query difference between two settings."""
    if values.size < 2:
        return 0.0
    return float(np.std(values - reference, ddof=1) / np.sqrt(values.size))


def curve_table(result: FitResult) -> str:
    """The curve as a plain-text table, best setting marked with `*`.

    Example:
        >>> point = FitPoint(FusionWeights(ce=0, bm25=1), 0.5)
        >>> print(curve_table(FitResult(point, (point,), ("bm25",), ("zscore",), 1.0, 3, {"bm25": 0.5})))
        norm     bm25  nDCG@10
        zscore   1.00   0.5000 *
    """
    header = ["norm", *result.inputs, "nDCG@10"]
    lines = [f"{header[0]:<7} " + " ".join(f"{name:>5}" for name in result.inputs) + f"  {header[-1]}"]
    for point in result.curve:
        cells = " ".join(f"{getattr(point.weights, name):5.2f}" for name in result.inputs)
        mark = " *" if point is result.best else (" + (highest)" if point is result.top else "")
        lines.append(f"{point.weights.norm:<7} {cells}   {point.ndcg10:.4f}{mark}")
    return "\n".join(lines)


def curve_json(result: FitResult) -> dict:
    """The fit as plain data: best weights, baselines and every grid point.

    Example:
        >>> point = FitPoint(FusionWeights(ce=0, bm25=1), 0.5)
        >>> curve_json(FitResult(point, (point,), ("bm25",), ("zscore",), 1.0, 3, {"bm25": 0.5}))["best"]
        {'weights': {'ce': 0.0, 'bm25': 1.0, 'dense': 0.0, 'norm': 'zscore'}, 'ndcg10': 0.5}
    """
    data: dict[str, Any] = {
        "metric": "nDCG@10", "queries": result.queries, "inputs": list(result.inputs), "norms": list(result.norms),
        "step": result.step, "baselines": {SYSTEM_OF_INPUT[k]: round(v, 6) for k, v in result.baselines.items()},
        "best": {"weights": result.best.weights.as_dict(), "ndcg10": round(result.best.ndcg10, 6)},
        "curve": [{**p.weights.as_dict(), "ndcg10": round(p.ndcg10, 6)} for p in result.curve],
    }
    if result.selection != "best":
        top = result.top or result.best
        data["selection"] = result.selection
        data["highest"] = {"weights": top.weights.as_dict(), "ndcg10": round(top.ndcg10, 6)}
        data["curve"] = [{**row, "stderr_vs_highest": round(p.stderr, 6), "ce_share": round(p.ce_share, 4)}
                         for row, p in zip(data["curve"], result.curve)]
    return data


def recipe_dict(result: FitResult, cands_meta: Mapping[str, object], reproduce: Sequence[str]) -> dict:
    """What `fit-fusion --out` writes as YAML: weights first, then how they were fitted.

    `fusion.load_weights` reads the `weights` block back; the rest is provenance.
    """
    subset = cands_meta.get("subset")
    return {
        "kind": "fusion-weights",
        "weights": result.best.weights.as_dict(),
        "fitted_on": {
            "dataset": cands_meta.get("dataset"), "split": cands_meta.get("split"), "subset": subset,
            "queries": result.queries, "candidates": f"BM25 top-{cands_meta.get('depth')} of the served query",
            "fields": cands_meta.get("fields"), "models": cands_meta.get("models", {}),
        },
        "search": {"metric": "nDCG@10", "inputs": list(result.inputs), "norms": list(result.norms),
                   "grid_step": result.step, "settings_tried": len(result.curve),
                   **({"selection": SELECTION_RULES[result.selection]} if result.selection != "best" else {})},
        "dev_ndcg10": {"fused": round(result.best.ndcg10, 4),
                       **({"highest": round(result.top.ndcg10, 4), "highest_weights": result.top.weights.as_dict()}
                          if result.top is not None and result.top is not result.best else {}),
                       **{SYSTEM_OF_INPUT[k]: round(v, 4) for k, v in result.baselines.items()}},
        "reproduce": list(reproduce),
    }


@dataclass(frozen=True)
class SystemScore:
    """One system's mean nDCG@10 on a split, against BM25 on the same candidates."""

    system: str
    ndcg10: float
    delta_vs_bm25: float

    @property
    def below_bm25(self) -> bool:
        return self.delta_vs_bm25 < 0


def evaluate_systems(cands: CandidateSet, qrels: Qrels, fused: Mapping[str, FusionWeights]) -> list[SystemScore]:
    """nDCG@10 of BM25, of each other score alone (dense, rerank) and of each fused setting.
    """
    judged = judged_qrels(cands, qrels)
    systems: dict[str, str | FusionWeights] = {SYSTEM_OF_INPUT[name]: name for name in cands.inputs()}
    systems.update(fused)
    if "bm25" not in systems:
        raise ConfigError("the candidates file has no bm25 scores to compare with",
                          hint="make it with `es-rerank fusion-candidates`")
    values = {name: mean_ndcg10(judged, ranking_run(cands, how)) for name, how in systems.items()}
    base = values["bm25"]
    return [SystemScore(name, value, value - base) for name, value in values.items()]
