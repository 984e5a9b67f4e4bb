"""Run every judged query against each side: OpenSearch directly (BM25) and through the proxy.

Every side gets the same body from `es_rerank.engine.bm25_query.bm25_body`, so the reranked side is
exactly what a user of the proxy is served; a side may add `ext.rerank` knobs or headers.

Example:
    >>> judged = select_judged({"1": "a", "2": "b", "3": "c"}, {"1": {"d": 1}, "3": {"d": 0}, "9": {"d": 1}})
    >>> list(judged.queries), judged.skipped_no_judgments, judged.skipped_no_relevant, judged.skipped_no_text
    (['1'], 1, 1, 1)
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from es_rerank.evaluation.http_search import SearchEndpoint
from es_rerank.evaluation.protocol import BM25_OUTCOMES, OUTCOME_HEADER
from es_rerank.evaluation.variants import RerankKnobs
from es_rerank.data.beir import Qrels
from es_rerank.errors import ConfigError
from es_rerank.engine.bm25_query import DEFAULT_FIELDS, bm25_body
from es_rerank.types import Hit

Progress = Callable[[Iterable, int, str], Iterable]


@dataclass(frozen=True)
class JudgedQueries:
    """The queries that can be evaluated, and how many were left out and why."""

    queries: dict[str, str]
    qrels: Qrels
    skipped_no_judgments: int = 0   # in the queries file, no qrels at all
    skipped_no_relevant: int = 0    # judged, but no document with grade > 0: every metric is undefined
    skipped_no_text: int = 0        # in the qrels, but missing or empty in the queries file
    left_out_by_limit: int = 0      # judged queries beyond --max-queries

    def counts(self) -> dict[str, int]:
        return {"evaluated": len(self.queries), "skipped_no_judgments": self.skipped_no_judgments,
                "skipped_no_relevant": self.skipped_no_relevant, "skipped_no_text": self.skipped_no_text,
                "left_out_by_limit": self.left_out_by_limit}


@dataclass(frozen=True)
class Side:
    """One system under comparison: where to send the search and what to add to it."""

    name: str
    base_url: str
    rerank: RerankKnobs = field(default_factory=RerankKnobs)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OfflineSettings:
    """How searches are made; identical for every side."""

    index: str
    depth: int = 100
    fields: tuple[str, ...] = DEFAULT_FIELDS
    title_field: str = "title"
    concurrency: int = 4
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.index:
            raise ConfigError("no index given", hint="pass --index NAME")
        if not 1 <= self.depth <= 10_000:
            raise ConfigError(f"depth must be between 1 and 10000, got {self.depth}")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"concurrency must be between 1 and 64, got {self.concurrency}")


@dataclass
class SideRun:
    """What one side returned for each query, in served order, and how fast."""

    side: Side
    hits: dict[str, list[Hit]]
    latency_ms: dict[str, float]
    outcomes: dict[str, int] = field(default_factory=dict)   # the proxy's X-Rerank answer header, counted
    duplicate_hits: int = 0     # repeated ids dropped from a response (kept: the first)

    @property
    def fallbacks(self) -> int:
        """Responses in which the proxy served the BM25 order (model failure, deadline, overload)."""
        return sum(self.outcomes.get(outcome, 0) for outcome in BM25_OUTCOMES)

    def ranked_ids(self) -> dict[str, list[str]]:
        return {qid: [hit.doc_id for hit in hits] for qid, hits in self.hits.items()}

    def ranked_scores(self) -> dict[str, list[tuple[str, float]]]:
        return {qid: [(hit.doc_id, hit.score) for hit in hits] for qid, hits in self.hits.items()}

    def latency_summary(self) -> dict[str, float]:
        values = sorted(self.latency_ms.values())
        if not values:
            return {"p50": 0.0, "p95": 0.0, "mean": 0.0}
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        return {"p50": round(statistics.median(values), 2), "p95": round(p95, 2),
                "mean": round(statistics.fmean(values), 2)}


def select_judged(queries: Mapping[str, str], qrels: Qrels, limit: int = 0) -> JudgedQueries:
    """Keep the queries that have text and at least one relevant judgment, in queries-file order.

    `limit` > 0 keeps only the first `limit` of them (a fast, deterministic subset).
    """
    if limit < 0:
        raise ConfigError(f"the query limit must be 0 (all) or positive, got {limit}")
    selected: dict[str, str] = {}
    no_judgments = no_relevant = 0
    for query_id, text in queries.items():
        judged = qrels.get(query_id)
        if judged is None:
            no_judgments += 1
        elif not text or not text.strip():
            continue  # counted below with the qrels that have no query text
        elif not any(grade > 0 for grade in judged.values()):
            no_relevant += 1
        else:
            selected[query_id] = text
    no_text = sum(1 for query_id in qrels if not (queries.get(query_id) or "").strip())
    left_out = 0
    if limit and len(selected) > limit:
        left_out = len(selected) - limit
        selected = dict(list(selected.items())[:limit])
    return JudgedQueries(selected, {qid: dict(qrels[qid]) for qid in selected}, no_judgments, no_relevant,
                         no_text, left_out)


def search_body(text: str, settings: OfflineSettings, knobs: RerankKnobs) -> dict:
    """The body every side sends: the shared BM25 query, plus `ext.rerank` when knobs are set.

    Example:
        >>> body = search_body("q", OfflineSettings(index="i", depth=5), RerankKnobs(window=20))
        >>> body["size"], body["_source"], body["ext"]
        (5, ['title'], {'rerank': {'window': 20}})
    """
    source: bool | list[str] = [settings.title_field] if settings.title_field else False
    body = bm25_body(text, settings.depth, settings.fields, source)
    ext = knobs.as_ext()
    if ext:
        body["ext"] = ext
    return body


def run_side(side: Side, judged: JudgedQueries, settings: OfflineSettings,
             progress: Progress | None = None) -> SideRun:
    """Search every judged query on one side, `settings.concurrency` at a time."""
    endpoint = SearchEndpoint(side.base_url, dict(side.headers), settings.timeout_s)
    run = SideRun(side, {}, {})

    def one(item: tuple[str, str]):
        query_id, text = item
        return query_id, endpoint.search(settings.index, search_body(text, settings, side.rerank))

    try:
        with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix=f"ab-{side.name}") as pool:
            results = pool.map(one, judged.queries.items())
            if progress is not None:
                results = iter(progress(results, len(judged.queries), side.name))
            for query_id, result in results:
                hits, dropped = dedupe(result.hits)
                run.hits[query_id] = hits
                run.duplicate_hits += dropped
                run.latency_ms[query_id] = result.latency_ms
                outcome = result.headers.get(OUTCOME_HEADER.lower(), "none")
                run.outcomes[outcome] = run.outcomes.get(outcome, 0) + 1
    finally:
        endpoint.close()
    return run


def dedupe(hits: Sequence[Hit]) -> tuple[list[Hit], int]:
    """Drop repeated document ids (a multi-index search can return one id twice); keep the first.

    Example:
        >>> dedupe([Hit("a", 2.0), Hit("b", 1.5), Hit("a", 1.0)])[1]
        1
    """
    seen: set[str] = set()
    kept = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.add(hit.doc_id)
            kept.append(hit)
    return kept, len(hits) - len(kept)
