"""The proxy's aiohttp application: the routes, and what each kind of request is handed to.

`create_app(settings, scorer, dense_scorers)` builds it; `es_rerank.proxy.server` runs it. With
`scorer=None` the proxy relays everything (reranking off), which is how the pass-through benchmark
runs it. An index whose rule has fusion weights gets the fused order (`es_rerank.scoring.fusion`) of the
cross-encoder, BM25 and its dense model's scores; each model has its own scoring worker.
With `settings.online_ab` the searches it reranks become an online A/B test (`es_rerank.proxy.online_ab.arms`):
each gets an arm (bm25, rerank or interleave), a line in the decision log and the
X-Rerank-Variant / X-Rerank-Query-Id headers; `POST /_rerank/events` takes the clicks.

A `_search` or `_msearch` body is read and depth-checked once, then planned (`plan`); a search
to rerank takes an admission permit (`admission`) and runs the reranked-search path (`search`).
Everything else is relayed (`relay`); `/_rerank/*` are the proxy's own endpoints (`internal`).

Example:
    >>> settings = ProxySettings(UpstreamSettings("http://127.0.0.1:9200"), rules=(IndexRule("scifact"),))
    >>> app = create_app(settings, scorer=None)
    >>> app[CONTEXT].settings.rules[0].pattern
    'scifact'
"""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping

from aiohttp import web
from multidict import CIMultiDict

from es_rerank.proxy.context import CONTEXT, ProxyContext
from es_rerank.proxy.headers import degraded_headers, drop_engine_less, own_json_headers, rewritten_body_headers
from es_rerank.proxy.httperror import ProxyHTTPError, report_bug
from es_rerank.proxy.internal import internal
from es_rerank.proxy.limits import check_declared_length, inflate, read_body
from es_rerank.proxy.msearch import as_search, msearch_pairs, search_index, upstream_body
from es_rerank.proxy.paths import check_path
from es_rerank.proxy.plan import (PassThrough, RerankPlan, SearchRequest, check_search_depth, plan_checked_search,
                                  search_target, strip_rerank_ext)
from es_rerank.proxy.relay import relay, relay_search_body
from es_rerank.proxy.search import rerank_msearch, rerank_search
from es_rerank.proxy.settings import IndexRule, ProxySettings, UpstreamSettings  # noqa: F401 (doctest)
from es_rerank.scoring.cross_encoder import Scorer

log = logging.getLogger("es_rerank.proxy")


def create_app(settings: ProxySettings, scorer: Scorer | None,
               dense_scorers: Mapping[str, Scorer] | None = None) -> web.Application:
    """The proxy as an aiohttp Application; `scorer=None` relays every request unreranked.

    `dense_scorers` maps each rule's `dense_model` to its loaded bi-encoder (`dense.DenseScorer`).

    Run it with `es_rerank.proxy.server` (which turns off aiohttp's request-body decompression so
    gzip bodies are relayed as sent).

    Example:
        >>> create_app(ProxySettings(UpstreamSettings("http://127.0.0.1:9200")), None)[CONTEXT].batcher is None
        True
    """
    app = web.Application(client_max_size=settings.limits.max_body_bytes)
    context = ProxyContext(settings, scorer, dense_scorers)
    app[CONTEXT] = context
    app.cleanup_ctx.append(context.lifespan)
    app.router.add_route("*", "/{tail:.*}", _handle, expect_handler=_expect_continue)
    app.on_response_prepare.append(_engine_headers)
    return app


async def _engine_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer leaves without the headers aiohttp adds and neither engine sends."""
    drop_engine_less(response.headers)


async def _expect_continue(request: web.Request):
    """Answer `Expect: 100-continue` with 100 (or 413 when the declared body is over the limit), any other
    expectation with 417 and no body, as the engines do."""
    if request.headers.get("Expect", "").strip().lower() != "100-continue":
        response = web.Response(status=417)
        response.force_close()  # the body, if any, is never read
        return response
    try:
        check_declared_length(request.content_length, request.app[CONTEXT].settings.limits.max_body_bytes)
    except ProxyHTTPError as err:
        return _error_response(request, err)
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not part of the answer's size
    return None


async def _handle(request: web.Request) -> web.StreamResponse:
    """Every request: internal endpoints, reranked searches, and pass-through for everything else."""
    context = request.app[CONTEXT]
    raw_path = request.raw_path
    path, _, query_string = raw_path.partition("?")
    try:
        check_path(path)
        if path.startswith("/_rerank/"):
            return await internal(context, request, path)
        if search_target(request.method, path) is not None:
            return await _search(context, request, path, query_string)
        if search_target(request.method, path, "_msearch") is not None:
            return await _msearch(context, request, path, query_string)
        context.metrics.requests.inc(("passthrough",))
        return await relay(context, request, raw_path, None, request.headers)
    except ProxyHTTPError as err:
        if err.status >= 500 or err.status == 429:
            log.warning("%s %s -> %d %s", request.method, path, err.status, err.reason)
        return _error_response(request, err)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # a proxy bug still answers in the engine's shape; the log has the traceback
        return _error_response(request, report_bug(context.metrics, "request", exc, f"{request.method} {path}"))


def _error_response(request: web.Request, err: ProxyHTTPError) -> web.Response:
    """An error the proxy answers itself, in the upstream engine's shape and media type."""
    engine = request.app[CONTEXT].upstream.engine
    response = web.Response(status=err.status, body=err.body(engine.current),
                            headers=own_json_headers(engine, request.headers, err.headers))
    if err.close:
        response.force_close()
    return response


async def _read_search_body(context: ProxyContext, request: web.Request, path: str) -> tuple[bytes, bytes]:
    """A search request's body as sent and inflated, depth-checked once here: every search after it,
    relayed or reranked, is capped."""
    limits = context.settings.limits
    raw = await read_body(request.content, request.content_length, limits.max_body_bytes, limits.body_timeout_s) \
        if request.body_exists else b""
    encoding = request.headers.get("Content-Encoding", "")
    body = inflate(raw, encoding, limits.max_body_bytes) if raw and encoding else raw
    check_search_depth(body, request.headers.get("Content-Type", ""), path, limits)
    return raw, body


async def _search(context: ProxyContext, request: web.Request, path: str, query_string: str) -> web.StreamResponse:
    """A `_search`: read the (small) body, plan, then rerank (with a permit) or relay."""
    raw, body = await _read_search_body(context, request, path)
    if context.batcher is None and not context.dense_batchers:  # no model: relay, minus ext.rerank (OpenSearch rejects it)
        plan: PassThrough | RerankPlan = PassThrough("no model loaded", strip_rerank_ext(body))
    else:
        plan = plan_checked_search(SearchRequest(request.method, path, query_string, request.headers, body),
                                   context.settings)
    if isinstance(plan, PassThrough):
        context.metrics.requests.inc(("skipped",))
        return await relay_search_body(context, request, request.raw_path, raw, plan.body)
    permit = context.admission.try_acquire()  # past the limit: shed (429/503), or None to degrade
    if permit is None:
        return await relay_search_body(context, request, request.raw_path, raw, plan.passthrough_body,
                                       degraded_headers())
    with permit:
        return await rerank_search(context, request, plan, raw)


async def _msearch(context: ProxyContext, request: web.Request, path: str, query_string: str) -> web.StreamResponse:
    """An `_msearch`: each search that `_search` would rerank is reranked (`rerank_msearch`); at the
    admission limit the whole `_msearch` is relayed as BM25."""
    raw, body = await _read_search_body(context, request, path)
    pairs = msearch_pairs(body) if context.batcher is not None else None
    if not pairs:
        context.metrics.requests.inc(("skipped",))
        return await relay(context, request, request.raw_path, raw, request.headers)
    default = search_target(request.method, path, "_msearch")
    as_json = CIMultiDict(request.headers)
    as_json["Content-Type"] = "application/json"  # each body line is planned as the _search it stands for
    plans: list[PassThrough | RerankPlan] = []
    for header, search_body in pairs:
        index = search_index(header, default)
        plans.append(PassThrough("unreadable _msearch header") if index is None else
                     plan_checked_search(SearchRequest("POST", as_search(index), query_string, as_json, search_body),
                                         context.settings))
    degraded = context.admission.saturated
    if degraded or not any(isinstance(plan, RerankPlan) for plan in plans):
        bodies = [plan.passthrough_body if isinstance(plan, RerankPlan) else plan.body for plan in plans]
        context.metrics.requests.inc(("degraded" if degraded else "skipped",))
        if all(b is None for b in bodies):
            return await relay(context, request, request.raw_path, raw, request.headers)
        rewritten = upstream_body(pairs, bodies)
        return await relay(context, request, request.raw_path, rewritten,
                           rewritten_body_headers(request.headers, rewritten))
    with context.admission.acquire():
        return await rerank_msearch(context, request, pairs, plans, query_string)
