"""The reranked-search path: fetch the window, score it, serve the reranked page or fall back to BM25.

`rerank_search` serves one planned `_search`; `rerank_msearch` the planned searches of an
`_msearch`, whose windows are fetched in one upstream `_msearch` and scored together (the scoring
workers batch them). The caller holds an admission permit (`es_rerank.proxy.admission`).

The designed degradations of a model call (timeout, out of memory, ScoringError) serve BM25's page
and count in es_rerank_fallbacks_total. Anything else is a bug (`report_bug`): logged with its
traceback, counted, answered 500, never served as a quiet fallback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from aiohttp import web
from aiohttp.web_response import ContentCoding
from multidict import CIMultiDictProxy

from es_rerank.errors import ScoringError, ScoringOutOfMemory
from es_rerank.evaluation.protocol import BM25, INTERLEAVE
from es_rerank.proxy.context import ProxyContext
from es_rerank.proxy.encoding import response_encoding
from es_rerank.proxy.headers import forward_response_headers, made_body_headers, rewritten_response_headers
from es_rerank.proxy.httperror import ProxyHTTPError, error_object, report_bug
from es_rerank.proxy.msearch import upstream_body
from es_rerank.proxy.online_ab.arms import new_query_id, response_headers
from es_rerank.proxy.online_ab.assignment import Decision
from es_rerank.proxy.plan import PassThrough, RerankPlan, RerankSpec, WindowRequest, parse_params, window_request
from es_rerank.proxy.rawjson import (DEFERRED_HITS_SHAPE, RESPONSE_SHAPE, NotSpliceable, RawText, dump_keeping_raw,
                                     opened, parse_keeping_raw)
from es_rerank.proxy.relay import relay_search_body
from es_rerank.proxy.rewrite import HitOpener, bm25_page, interleaved_page, reranked_page, response_hits, window_texts
from es_rerank.scoring.fusion import fuse
from es_rerank.scoring.rerank import order_by_scores

log = logging.getLogger("es_rerank.proxy")

WINDOW_TOO_LARGE = b"Result window is too large"
MSEARCH_SHAPE = {"responses": [RESPONSE_SHAPE]}
Answer = tuple[int, CIMultiDictProxy, bytes]  # an upstream answer read whole: status, headers, body


@dataclass(frozen=True)
class Ranked:
    """The page served for a window and how it was made: reranked, interleaved, bm25 (the A/B
    control arm) or fallback (with its reason); `teams` is each hit's ranker in an interleaved page."""

    page: dict
    outcome: str
    reason: str = ""
    teams: list[str] | None = None


async def rerank_search(context: ProxyContext, request: web.Request, plan: RerankPlan,
                        raw: bytes) -> web.StreamResponse:
    """Serve one planned `_search`: the window from upstream, its scores, then the page."""
    started = time.monotonic()
    fetched = await _fetch_window(context, request, plan)
    if isinstance(fetched, PassThrough):
        context.metrics.requests.inc(("skipped",))
        return await relay_search_body(context, request, request.raw_path, raw, fetched.body)
    window, (status, up_headers, body) = fetched
    context.metrics.stage_seconds.observe(time.monotonic() - started, ("upstream",))
    parsed = _hits_response(status, up_headers, body)
    if parsed is None:
        context.metrics.requests.inc(("skipped",))  # an error or an empty result goes back untouched
        return web.Response(status=status, headers=forward_response_headers(up_headers), body=body)
    response, raw_text = parsed
    spec = window.spec
    texts = window_texts(response, spec)
    context.metrics.window_size.observe(len(texts))
    # Online A/B: only searches the proxy reranks take part; X-Rerank: off and pass-through stay out.
    decision = context.ab.decide(request.headers, request.remote) if context.ab is not None else None
    scores, reason = await _score_window(context, decision, plan.target, response, spec, texts)
    scored_at = time.monotonic()
    try:
        ranked = _rank(context, decision, plan, response, spec, scores, reason, functools.partial(opened, raw=raw_text))
    except NotSpliceable:  # a served hit repeats a key: splicing it would drop one, so OpenSearch's bytes go back
        context.metrics.requests.inc(("skipped",))
        return web.Response(status=status, headers=forward_response_headers(up_headers), body=body)
    query_id = new_query_id() if decision is not None else ""
    ab_headers = response_headers(decision, query_id) if decision is not None else None
    reply = _reply(request, ranked.page, raw_text, spec.pretty,
                   rewritten_response_headers(up_headers, ranked.outcome, ranked.reason, ab_headers))
    now = time.monotonic()
    context.metrics.stage_seconds.observe(now - scored_at, ("rewrite",))
    context.metrics.stage_seconds.observe(now - started, ("total",))
    context.metrics.requests.inc((ranked.outcome,))
    if decision is not None:
        _record_ab(context, decision, query_id, ranked, plan, spec, latency_ms=(now - started) * 1000)
    return reply


async def _fetch_window(context: ProxyContext, request: web.Request,
                        plan: RerankPlan) -> tuple[WindowRequest, Answer] | PassThrough:
    """The window's upstream answer, or PassThrough for a page past `index.max_result_window`."""
    window = window_request(plan, await context.windows.get(plan.target, request.headers))
    if isinstance(window, PassThrough):
        return window
    answer = await fetch(context, request, window.path_qs, window.body, "application/json")
    if answer[0] == 400 and WINDOW_TOO_LARGE in answer[2]:
        # index.max_result_window was lowered since it was cached: read it again and retry once.
        window = window_request(plan, await context.windows.get(plan.target, request.headers, fresh=True))
        if isinstance(window, PassThrough):
            return window
        answer = await fetch(context, request, window.path_qs, window.body, "application/json")
    return window, answer


async def fetch(context: ProxyContext, request: web.Request, path_qs: str, body: bytes, content_type: str) -> Answer:
    """Send a body the proxy made upstream, uncompressed both ways, with the client's method and credentials."""
    return await context.upstream.fetch(request.method, path_qs, made_body_headers(request.headers, body, content_type),
                                        body)


def _hits_response(status: int, headers: Mapping[str, str], body: bytes) -> tuple[dict, RawText] | None:
    """The parsed search response (and its raw text) when it has hits to rerank, else None (relayed as it came)."""
    if status != 200 or "json" not in headers.get("Content-Type", "json"):
        return None
    try:
        # hits' `_source` and the rest go back byte for byte; a hit is walked only if it is served
        response, raw_text = parse_keeping_raw(body, DEFERRED_HITS_SHAPE)
    except ValueError:  # OpenSearch's own bytes are not JSON: the client gets them unchanged
        return None
    return (response, raw_text) if isinstance(response, dict) and response_hits(response) else None


async def _score_window(context: ProxyContext, decision: Decision | None, target: str, response: dict,
                        spec: RerankSpec, texts: list[str]) -> tuple[np.ndarray | None, str]:
    """(scores, "") from the models; (None, reason) for a fallback; (None, "") for the A/B control arm."""
    if decision is not None and decision.variant == BM25:
        return None, ""  # the control arm: BM25's page, no model call
    try:
        return await window_scores(context, response, spec, texts), ""
    except ProxyHTTPError:
        raise  # about the request (weights this proxy cannot serve): the client's 400, not a model failure
    except Exception as exc:
        reason = fallback_reason(exc)
        if reason is None:
            raise report_bug(context.metrics, "score", exc, f"_search on {target}") from exc
        _note_fallback(context, reason, exc, "rerank")
        return None, reason


def fallback_reason(exc: BaseException) -> str | None:
    """Why a failed model call falls back to BM25 ('timeout', 'oom', 'error'); None for a bug.

    Example:
        >>> fallback_reason(asyncio.TimeoutError()), fallback_reason(ScoringOutOfMemory("GPU")), fallback_reason(KeyError())
        ('timeout', 'oom', None)
    """
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ScoringOutOfMemory):
        return "oom"
    if isinstance(exc, ScoringError):
        return "error"
    return None


def _note_fallback(context: ProxyContext, reason: str, exc: BaseException, what: str) -> None:
    context.metrics.fallbacks.inc((reason,))
    if reason != "timeout":  # timeouts are counted only: under load they come in floods
        log.warning("%s fell back to BM25: %s: %s", what, reason, exc)


async def window_scores(context: ProxyContext, response: dict, spec: RerankSpec, texts: list[str]) -> np.ndarray:
    """The window's final scores: the cross-encoder's, or with fusion weights the fused scores.

    The model calls a fusion needs run at once, each on its own model's worker, within the one
    deadline; BM25 is each hit's `_score`. Failures raise as for the cross-encoder alone
    (timeout, ScoringError, including NaN or missing BM25 scores), and the search falls back to BM25.
    """
    weights = spec.fusion
    if context.batcher is None and (weights is None or weights.needs_ce):  # a bi-encoder-only proxy
        raise ProxyHTTPError.bad_request("ext.rerank.fusion gives a cross-encoder weight, but this proxy serves no "
                                         "cross-encoder; set ce to 0")
    if weights is None:
        assert context.batcher is not None
        return await context.batcher.score(spec.query_text, texts, spec.deadline_s)
    calls = {}
    if weights.needs_ce:
        assert context.batcher is not None
        calls["ce"] = context.batcher.score(spec.query_text, texts, spec.deadline_s)
    if weights.needs_dense:
        assert spec.dense_model is not None
        calls["dense"] = context.dense_batchers[spec.dense_model].score(spec.query_text, texts, spec.deadline_s)
    tasks = {name: asyncio.ensure_future(call) for name, call in calls.items()}
    try:
        await asyncio.gather(*tasks.values())
    finally:
        for task in tasks.values():  # one failed: the other's result is no longer wanted
            task.cancel()
    scores = {name: task.result() for name, task in tasks.items()}
    hits = response_hits(response) or []
    bm25 = [hit.get("_score") if isinstance(hit, dict) else None for hit in hits[: len(texts)]]
    return fuse(bm25, scores.get("ce"), scores.get("dense"), weights)


def _rank(context: ProxyContext, decision: Decision | None, plan: RerankPlan, response: dict, spec: RerankSpec,
          scores: np.ndarray | None, reason: str, open_hit: HitOpener) -> Ranked:
    """The page to serve: BM25's without scores, else the reranked one (interleaved in that A/B arm)."""
    if scores is None:
        return Ranked(bm25_page(response, spec, open_hit), "fallback" if reason else "bm25", reason)
    try:
        if decision is not None and decision.variant == INTERLEAVE:
            page, teams = _interleave(context, decision, plan, response, spec, scores, open_hit)
            return Ranked(page, "interleaved", teams=teams)
        return Ranked(reranked_page(response, spec, scores, open_hit), "reranked")
    except NotSpliceable:
        raise
    except Exception as exc:
        raise report_bug(context.metrics, "rewrite", exc, f"_search on {plan.target}") from exc


def _interleave(context: ProxyContext, decision: Decision, plan: RerankPlan, response: dict, spec: RerankSpec,
                scores: np.ndarray, open_hit: HitOpener) -> tuple[dict, list[str]]:
    """The interleaved page (team draft of model and BM25 order) and the team of each of its hits."""
    assert context.ab is not None
    hits = response_hits(response) or []
    window = min(spec.window, len(hits))
    if len(scores) != window:
        raise ValueError(f"expected {window} scores for the window, got {len(scores)}")
    ranked = [position for position, _ in order_by_scores(range(window), scores)]
    positions, teams = context.ab.page(decision, ranked, spec.start, spec.size, f"{plan.target}|{spec.query_text}",
                                       total=len(hits))
    return interleaved_page(response, spec, positions, teams, open_hit), teams


def _reply(request: web.Request, page: dict, raw_text: Mapping, pretty: bool, headers) -> web.Response:
    """The rewritten answer, compressed as the client accepts (OpenSearch compresses every size, so the proxy does too)."""
    reply = web.Response(status=200, body=dump_keeping_raw(page, raw_text, pretty=pretty), headers=headers)
    coding = response_encoding(request.headers.get("Accept-Encoding", ""))
    if coding is not None:
        reply.enable_compression(ContentCoding(coding))
    return reply


def _record_ab(context: ProxyContext, decision: Decision, query_id: str, ranked: Ranked, plan: RerankPlan,
               spec: RerankSpec, latency_ms: float) -> None:
    """The search's line in the A/B decision log, and its arm's count."""
    assert context.ab is not None
    served = [str(hit.get("_id", "")) for hit in ranked.page["hits"]["hits"]]
    teams = ranked.teams
    if teams is None:  # one ranker made the whole page: the arm's own, or BM25's after a model failure
        teams = [BM25 if ranked.outcome == "fallback" else decision.variant] * len(served)
    context.ab.record(query_id=query_id, decision=decision, hit_ids=served, teams=teams, latency_ms=latency_ms,
                      index=plan.target, start=spec.start, query_text=spec.query_text,
                      fallback=ranked.outcome == "fallback")
    context.ab_searches.inc((decision.variant,))


async def rerank_msearch(context: ProxyContext, request: web.Request, pairs: list[tuple[bytes, bytes]],
                         plans: Sequence[PassThrough | RerankPlan], query_string: str) -> web.StreamResponse:
    """Serve an `_msearch`: each planned search reranked, the others as OpenSearch answers them; each
    falls back to BM25 on its own. `X-Rerank` lists each search's outcome, in order."""
    windows = [window_request(plan, await context.windows.get(plan.target, request.headers))
               if isinstance(plan, RerankPlan) else plan for plan in plans]
    status, up_headers, data = await fetch(context, request, request.raw_path,
                                           upstream_body(pairs, [window.body for window in windows]),
                                           "application/x-ndjson")
    parsed = _msearch_responses(status, data, len(windows))
    if parsed is None:
        context.metrics.requests.inc(("skipped",))  # an error of the whole _msearch goes back untouched
        return web.Response(status=status, headers=forward_response_headers(up_headers), body=data)
    response, raw_text, items = parsed
    reranked = [(k, window) for k, window in enumerate(windows) if isinstance(window, WindowRequest) and
                isinstance(items[k], dict) and "error" not in items[k] and response_hits(items[k])]
    scored = await asyncio.gather(*(window_scores(context, items[k], window.spec, window_texts(items[k], window.spec))
                                    for k, window in reranked), return_exceptions=True)
    pages, outcomes = list(items), ["skipped"] * len(items)
    for (k, window), scores in zip(reranked, scored):
        pages[k], outcomes[k] = _msearch_page(context, items[k], window.spec, scores,
                                              f"_msearch search {k} of {len(items)}")
    for outcome in outcomes:
        context.metrics.requests.inc((outcome,))
    pretty = parse_params(query_string).get("pretty", "false") != "false"
    return _reply(request, {**response, "responses": pages}, raw_text, pretty,
                  rewritten_response_headers(up_headers, ",".join(outcomes)))


def _msearch_responses(status: int, data: bytes, searches: int) -> tuple[dict, Mapping, list] | None:
    """The `_msearch` answer, its raw text and its `responses`, when it holds one per search; else None."""
    if status != 200:
        return None
    try:
        response, raw_text = parse_keeping_raw(data, MSEARCH_SHAPE)
    except ValueError:  # OpenSearch's own bytes are not JSON: the client gets them unchanged
        return None
    if not isinstance(response, dict):
        return None
    items = response.get("responses")
    if not isinstance(items, list) or len(items) != searches:
        return None
    return response, raw_text, items


def _msearch_page(context: ProxyContext, item: dict, spec: RerankSpec, scores: np.ndarray | BaseException,
                  where: str) -> tuple[dict, str]:
    """One search's answer within an `_msearch` and its outcome. A bug fails that search alone, as
    OpenSearch answers a failed search in `_msearch`."""
    if isinstance(scores, BaseException):
        if not isinstance(scores, Exception):
            raise scores  # cancellation: not this search's failure
        reason = fallback_reason(scores)
        if reason is None:
            err = report_bug(context.metrics, "score", scores, where)
            return error_object(err.status, err.type_for(context.upstream.engine.current), err.reason), "error"
        _note_fallback(context, reason, scores, where)
        return bm25_page(item, spec), "fallback"
    try:
        return reranked_page(item, spec, scores), "reranked"
    except Exception as exc:
        err = report_bug(context.metrics, "rewrite", exc, where)
        return error_object(err.status, err.type_for(context.upstream.engine.current), err.reason), "error"
