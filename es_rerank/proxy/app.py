"""The proxy's aiohttp application: routing, pass-through relay, the reranked-search path, lifespan.

`create_app(settings, scorer, dense_scorers)` builds it; `es_rerank.proxy.server` runs it. With
`scorer=None` the proxy relays everything (reranking off), which is how the pass-through benchmark
runs it. An index whose rule has fusion weights gets the fused order (`es_rerank.scoring.fusion`) of the
cross-encoder, BM25 and its dense model's scores; each model has its own scoring worker.
With `settings.online_ab` the searches it reranks become an online A/B test (`es_rerank.proxy.online_ab.arms`):
each gets an arm (bm25, rerank or interleave), a line in the decision log and the
X-Rerank-Variant / X-Rerank-Query-Id headers; `POST /_rerank/events` takes the clicks.

Example:
    >>> settings = ProxySettings(UpstreamSettings("http://127.0.0.1:9200"), rules=(IndexRule("scifact"),))
    >>> app = create_app(settings, scorer=None)
    >>> app[CONTEXT].settings.rules[0].pattern
    'scifact'
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Mapping

import numpy as np

from aiohttp import web
from aiohttp.web_response import ContentCoding
from multidict import CIMultiDict

from es_rerank.proxy.online_ab.arms import OnlineAb, new_query_id, response_headers
from es_rerank.evaluation.protocol import BM25, EVENTS_PATH, INTERLEAVE
from es_rerank.proxy.settings import IndexRule, ProxySettings, UpstreamSettings  # noqa: F401 (doctest)
from es_rerank.errors import ConfigError, ScoringError, ScoringOutOfMemory
from es_rerank.scoring.fusion import fuse
from es_rerank.proxy.batcher import Batcher
from es_rerank.proxy.encoding import response_encoding
from es_rerank.proxy.httperror import ProxyHTTPError, error_body, error_object
from es_rerank.proxy.jsonio import dumps, loads
from es_rerank.proxy.limits import (BodyDepthCheck, check_declared_length, checked_stream, inflate, read_body,
                                   stream_body)
from es_rerank.proxy.metrics import Counter, Gauge, ProxyMetrics
from es_rerank.proxy.paths import check_path
from es_rerank.proxy.msearch import as_search, msearch_pairs, search_index, upstream_body
from es_rerank.proxy.rawjson import RESPONSE_SHAPE, dump_keeping_raw, parse_keeping_raw
from es_rerank.proxy.plan import (DEFAULT_MAX_RESULT_WINDOW, PassThrough, RerankPlan, RerankSpec, SearchRequest,
                                  WindowRequest, check_search_depth, max_result_window, parse_params, plan_checked_search,
                                  search_target,
                                  settings_path, strip_rerank_ext, window_request)
from es_rerank.proxy.rewrite import bm25_page, interleaved_page, reranked_page, response_hits, window_texts
from es_rerank.scoring.rerank import order_by_scores
from es_rerank.proxy.upstream import UPSTREAM_ERRORS, Upstream
from es_rerank.proxy.headers import (bodiless_headers, degraded_headers, drop_engine_less, own_json_headers,
                                     forward_request_headers, forward_response_headers, made_body_headers,
                                     relayed_response_headers, rewritten_body_headers, rewritten_response_headers)
from es_rerank.scoring.cross_encoder import Scorer

log = logging.getLogger("es_rerank.proxy")

# Bodies up to this size are read whole (one write upstream); larger ones stream through.
INLINE_BODY_BYTES = 1 << 20
WINDOW_CACHE_ENTRIES = 1024
# A lowered index.max_result_window is picked up within this long (and at once when a search trips over it).
WINDOW_CACHE_S = 10.0
WINDOW_TOO_LARGE = b"Result window is too large"
READY_CACHE_S = 1.0


class ProxyContext:
    """The proxy's resources and state, created once per app and cleaned up with it."""

    def __init__(self, settings: ProxySettings, scorer: Scorer | None,
                 dense_scorers: Mapping[str, Scorer] | None = None) -> None:
        dense_scorers = dict(dense_scorers or {})
        for rule in settings.rules if scorer is not None or dense_scorers else ():
            if rule.rerank and rule.dense_model is not None and rule.dense_model not in dense_scorers:
                raise ConfigError(f"index {rule.pattern!r} names dense model {rule.dense_model!r}, "
                                  "which was not loaded", hint="load each rule's dense_model and pass it in dense_scorers")
            if scorer is None and rule.rerank and (rule.fusion is None or rule.fusion.needs_ce or not rule.dense_model):
                raise ConfigError(f"index {rule.pattern!r} needs a cross-encoder, and none is loaded",
                                  hint="pass --model, or give the index fusion weights with ce 0 and a dense model "
                                       "(recipes/fusion/bm25_dense_minilm.yaml), or set rerank: false for it")
        self.settings = settings
        self.scorer = scorer
        self.metrics = ProxyMetrics()
        self.upstream = Upstream(settings.upstream, self.metrics)
        self.batcher = Batcher(scorer, settings.batch, self.metrics) if scorer is not None else None
        # One worker per dense model, like the cross-encoder's: both model calls of a search run at once.
        self.dense_batchers = {name: Batcher(dense, settings.batch, self.metrics)
                               for name, dense in dense_scorers.items()}
        # Online A/B (--ab-split): the arm of each reranked search, its log line, and click events.
        self.ab = OnlineAb(settings.online_ab) if settings.online_ab else None
        self.ab_events = self.ab.events_handler() if self.ab is not None else None
        self.ab_searches = Counter("es_rerank_ab_searches_total", "Searches served under the online A/B test, by arm.",
                                   ("variant",))
        self.ab_dropped = Gauge("es_rerank_ab_log_dropped", "A/B log lines lost to a full queue or a failing disk.")
        self.draining = False
        self.in_flight = 0
        self._windows: dict[str, tuple[float, int]] = {}  # target -> (read at, index.max_result_window)
        self._reachable = (0.0, False)

    async def lifespan(self, app: web.Application):
        """aiohttp cleanup context (`app.cleanup_ctx`): open the pool, start the scoring worker; close both at the end."""
        await self.upstream.start()
        for batcher in self.batchers():
            batcher.start()
        yield
        await self.upstream.close()
        for batcher in self.batchers():
            await asyncio.to_thread(batcher.stop)
        if self.ab is not None:
            await asyncio.to_thread(self.ab.close)  # writes what is queued: the log thread may be behind

    def batchers(self) -> list[Batcher]:
        """Every scoring worker: the cross-encoder's first, then one per dense model.

        Example:
            >>> ProxyContext(ProxySettings(UpstreamSettings("http://127.0.0.1:9200")), scorer=None).batchers()
            []
        """
        return ([self.batcher] if self.batcher is not None else []) + list(self.dense_batchers.values())

    def render_metrics(self) -> str:
        """The Prometheus text of the proxy's metrics, plus the A/B ones when an A/B test runs.

        Example:
            >>> context = ProxyContext(ProxySettings(UpstreamSettings("http://127.0.0.1:9200")), scorer=None)
            >>> "es_rerank_requests_total" in context.render_metrics()
            True
        """
        text = self.metrics.render()
        if self.ab is None:
            return text
        self.ab_dropped.set(self.ab.dropped)
        lines = [line for metric in (self.ab_searches, self.ab_dropped) for line in metric.header() + metric.lines()]
        return text + "\n".join(lines) + "\n"

    async def result_window(self, target: str, client_headers, fresh: bool = False) -> int:
        """`index.max_result_window` of the search target, read with the client's own credentials.

        Cached for WINDOW_CACHE_S, since the setting can change at any time; `fresh` reads it again.
        """
        cached = self._windows.get(target)
        if cached is not None and not fresh and time.monotonic() - cached[0] < WINDOW_CACHE_S:
            return cached[1]
        status, _, body = await self.upstream.fetch("GET", settings_path(target), bodiless_headers(client_headers), None)
        if status != 200:
            return DEFAULT_MAX_RESULT_WINDOW  # e.g. a missing index: the search itself will say so
        try:
            value = max_result_window(loads(body))
        except (ValueError, TypeError, AttributeError):
            return DEFAULT_MAX_RESULT_WINDOW
        if len(self._windows) >= WINDOW_CACHE_ENTRIES:
            self._windows.clear()
        self._windows[target] = (time.monotonic(), value)
        return value

    async def opensearch_reachable(self) -> bool:
        """Whether OpenSearch answers, re-checked at most once a second."""
        checked_at, reachable = self._reachable
        if time.monotonic() - checked_at > READY_CACHE_S:
            reachable = await self.upstream.reachable()
            self._reachable = (time.monotonic(), reachable)
        return reachable

    async def readiness(self) -> tuple[bool, dict]:
        """(ready, details): not draining, model loaded and warmed up, OpenSearch reachable."""
        reasons = []
        if self.draining:
            reasons.append("draining after SIGTERM")
        if self.batcher is None:
            model = "none: bi-encoder fusion only" if self.dense_batchers else "none: reranking is off"
        else:
            model = _warm_state(self.batcher, "model", reasons)
        dense = {name: _warm_state(batcher, f"dense model {name}", reasons)
                 for name, batcher in self.dense_batchers.items()}
        opensearch = await self.opensearch_reachable()
        if not opensearch:
            reasons.append("OpenSearch is unreachable")
        ready = not reasons
        self.metrics.ready.set(1 if ready else 0)
        details = {"ready": ready, "model": model, "opensearch": "reachable" if opensearch else "unreachable",
                   "reasons": reasons}
        if dense:
            details["dense_models"] = dense
        return ready, details


def _warm_state(batcher: Batcher, label: str, reasons: list[str]) -> str:
    """'warming up', 'failed: ...' or 'loaded' for one scoring worker; adds why it is not ready to `reasons`."""
    if not batcher.warm.is_set():
        reasons.append(f"{label} is warming up")
        return "warming up"
    if batcher.warm_error:
        reasons.append(f"{label} failed its warm-up call")
        return f"failed: {batcher.warm_error}"
    return "loaded"


CONTEXT = web.AppKey("es_rerank_proxy", ProxyContext)


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
    """Take out the `Server` and `Date` headers aiohttp adds: OpenSearch sends neither, and `Server`
    names the proxy's software and versions."""
    drop_engine_less(response.headers)


async def _expect_continue(request: web.Request):
    """Answer `Expect: 100-continue` with 100 (or 413 when the declared body is over the limit), any other
    expectation with 417 and no body, as OpenSearch does."""
    if request.headers.get("Expect", "").strip().lower() != "100-continue":
        response = web.Response(status=417)
        response.force_close()  # the body, if any, is never read
        return response
    try:
        check_declared_length(request.content_length, request.app[CONTEXT].settings.limits.max_body_bytes)
    except ProxyHTTPError as err:
        return _error_response(err)
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
            return await _internal(context, request, path)
        if search_target(request.method, path) is not None:
            return await _search(context, request, path, query_string)
        if search_target(request.method, path, "_msearch") is not None:
            return await _msearch(context, request, path, query_string)
        context.metrics.requests.inc(("passthrough",))
        return await _relay(context, request, raw_path, None, request.headers)
    except ProxyHTTPError as err:
        if err.status >= 500 or err.status == 429:
            log.warning("%s %s -> %d %s", request.method, path, err.status, err.reason)
        return _error_response(err)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # a proxy bug still answers in OpenSearch's shape; the log has the traceback
        return _error_response(_bug(context, "request", exc, f"{request.method} {path}"))


def _bug(context: ProxyContext, stage: str, exc: BaseException, where: str) -> ProxyHTTPError:
    """Log an unexpected exception with its traceback, count it in es_rerank_bugs_total{stage}, return the 500.

    A bug is never served as a BM25 fallback: those are the designed degradations (model error,
    timeout, out of memory, overload), and a quiet fallback would hide a bug behind them.
    """
    log.error("proxy bug in stage %s on %s: %s: %s", stage, where, type(exc).__name__, exc, exc_info=exc)
    context.metrics.bugs.inc((stage,))
    return ProxyHTTPError.internal("the rerank proxy failed unexpectedly; see its log")


def _error_response(err: ProxyHTTPError) -> web.Response:
    """An error the proxy answers itself, in OpenSearch's shape."""
    response = web.Response(status=err.status, body=error_body(err.status, err.error_type, err.reason),
                            headers=own_json_headers(err.headers))
    if err.close:
        response.force_close()
    return response


async def _internal(context: ProxyContext, request: web.Request, path: str) -> web.Response:
    """`/_rerank/health` (live), `/_rerank/ready`, `/_rerank/metrics` and, in an A/B test, `/_rerank/events`."""
    if path == EVENTS_PATH:
        if context.ab_events is None:
            raise ProxyHTTPError.not_found(
                f"{EVENTS_PATH} takes click events only while an online A/B test runs (--ab-split)")
        if request.method != "POST":
            raise ProxyHTTPError.method_not_allowed(f"{EVENTS_PATH} answers POST only")
        return await context.ab_events(request)
    if request.method not in ("GET", "HEAD"):
        raise ProxyHTTPError.method_not_allowed(f"{path} answers GET and HEAD only")
    if path == "/_rerank/health":
        return _json_response(200, {"status": "live"})
    if path == "/_rerank/ready":
        ready, details = await context.readiness()
        return _json_response(200 if ready else 503, details)
    if path == "/_rerank/metrics":
        return web.Response(body=context.render_metrics().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})
    raise ProxyHTTPError.not_found(
        f"no proxy endpoint {path}; the proxy serves /_rerank/health, /_rerank/ready, /_rerank/metrics"
        f" and, in an A/B test, {EVENTS_PATH}")


def _json_response(status: int, payload: dict) -> web.Response:
    """A small JSON response of the proxy's own."""
    return web.Response(status=status, body=dumps(payload), headers=own_json_headers())


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
    """A `_search`: read the (small) body, plan, then rerank or relay."""
    raw, body = await _read_search_body(context, request, path)
    if context.batcher is None and not context.dense_batchers:  # no model: relay, minus ext.rerank (OpenSearch rejects it)
        plan = PassThrough("no model loaded", strip_rerank_ext(body))
    else:
        plan = plan_checked_search(SearchRequest(request.method, path, query_string, request.headers, body),
                                   context.settings)
    if isinstance(plan, PassThrough):
        context.metrics.requests.inc(("skipped",))
        return await _relay_search_body(context, request, request.raw_path, raw, plan.body)
    return await _rerank(context, request, plan, raw)


MSEARCH_SHAPE = {"responses": [RESPONSE_SHAPE]}


async def _msearch(context: ProxyContext, request: web.Request, path: str, query_string: str) -> web.StreamResponse:
    """An `_msearch`: each search that `_search` would rerank is reranked, the windows fetched in one
    upstream `_msearch` and scored together (the scoring worker batches them); each search falls back
    to BM25 on its own. `X-Rerank` lists each search's outcome, in order."""
    raw, body = await _read_search_body(context, request, path)
    pairs = msearch_pairs(body) if context.batcher is not None else None
    if not pairs:
        context.metrics.requests.inc(("skipped",))
        return await _relay(context, request, request.raw_path, raw, request.headers)
    default = search_target(request.method, path, "_msearch")
    as_json = CIMultiDict(request.headers)
    as_json["Content-Type"] = "application/json"  # each body line is planned as the _search it stands for
    plans = []
    for header, search_body in pairs:
        index = search_index(header, default)
        plans.append(PassThrough("unreadable _msearch header") if index is None else
                     plan_checked_search(SearchRequest("POST", as_search(index), query_string, as_json, search_body),
                                         context.settings))
    degraded = context.in_flight >= context.settings.load.max_in_flight
    if degraded or not any(isinstance(plan, RerankPlan) for plan in plans):
        bodies = [plan.passthrough_body if isinstance(plan, RerankPlan) else plan.body for plan in plans]
        context.metrics.requests.inc(("degraded" if degraded else "skipped",))
        if all(b is None for b in bodies):
            return await _relay(context, request, request.raw_path, raw, request.headers)
        rewritten = upstream_body(pairs, bodies)
        return await _relay(context, request, request.raw_path, rewritten,
                            rewritten_body_headers(request.headers, rewritten))
    context.in_flight += 1
    context.metrics.in_flight.set(context.in_flight)
    try:
        return await _rerank_msearch(context, request, pairs, plans, query_string)
    finally:
        context.in_flight -= 1
        context.metrics.in_flight.set(context.in_flight)


async def _rerank_msearch(context: ProxyContext, request: web.Request, pairs, plans, query_string: str):
    metrics = context.metrics
    windows = [window_request(plan, await context.result_window(plan.target, request.headers))
               if isinstance(plan, RerankPlan) else plan for plan in plans]
    fetch = upstream_body(pairs, [window.body for window in windows])
    status, up_headers, data = await _fetch(context, request, request.raw_path, fetch, "application/x-ndjson")
    try:
        response, raw_text = parse_keeping_raw(data, MSEARCH_SHAPE) if status == 200 else (None, {})
        items = response.get("responses") if isinstance(response, dict) else None
    except ValueError:
        items = None
    if not isinstance(items, list) or len(items) != len(windows):
        metrics.requests.inc(("skipped",))  # an error of the whole _msearch goes back untouched
        return web.Response(status=status, headers=forward_response_headers(up_headers), body=data)
    reranked = [k for k, window in enumerate(windows) if isinstance(window, WindowRequest) and
                isinstance(items[k], dict) and "error" not in items[k] and response_hits(items[k])]
    scored = await asyncio.gather(*(_window_scores(context, items[k], windows[k].spec,
                                                   window_texts(items[k], windows[k].spec)) for k in reranked),
                                  return_exceptions=True)
    outcomes = ["skipped"] * len(items)
    pages = list(items)
    for k, scores in zip(reranked, scored):
        spec = windows[k].spec
        stage = "score"
        try:
            if isinstance(scores, BaseException):
                raise scores
            stage = "rewrite"
            pages[k], outcomes[k] = reranked_page(items[k], spec, scores), "reranked"
        except (asyncio.TimeoutError, ScoringError) as exc:
            reason = "timeout" if isinstance(exc, asyncio.TimeoutError) else \
                "oom" if isinstance(exc, ScoringOutOfMemory) else "error"
            log.warning("an _msearch search fell back to BM25: %s: %s", reason, exc)
            metrics.fallbacks.inc((reason,))
            pages[k], outcomes[k] = bm25_page(items[k], spec), "fallback"
        except Exception as exc:  # a bug fails its own search, as OpenSearch answers a failed search in _msearch
            err = _bug(context, stage, exc, f"_msearch search {k} of {len(items)}")
            pages[k], outcomes[k] = error_object(err.status, err.error_type, err.reason), "error"
    for outcome in outcomes:
        metrics.requests.inc((outcome,))
    pretty = parse_params(query_string).get("pretty", "false") != "false"
    out = dump_keeping_raw({**response, "responses": pages}, raw_text, pretty=pretty)
    headers = rewritten_response_headers(up_headers, ",".join(outcomes))
    reply = web.Response(status=200, body=out, headers=headers)
    coding = response_encoding(request.headers.get("Accept-Encoding", ""))
    if coding is not None:
        reply.enable_compression(ContentCoding(coding))
    return reply


async def _relay_search_body(context: ProxyContext, request: web.Request, path_qs: str, raw: bytes,
                            rewritten: bytes | None, extra: dict | None = None) -> web.StreamResponse:
    """Relay a search whose body was read: the client's exact bytes, or a rewritten (plain JSON) body."""
    if rewritten is None:
        return await _relay(context, request, path_qs, raw, request.headers, extra)
    return await _relay(context, request, path_qs, rewritten, rewritten_body_headers(request.headers, rewritten),
                        extra)


async def _relay(context: ProxyContext, request: web.Request, path_qs: str, body: bytes | None, client_headers,
                extra: dict | None = None) -> web.StreamResponse:
    """Send the request upstream and relay the answer unchanged: status, headers, body bytes.

    `body=None` means the client's body has not been read: small ones are read whole, large or
    chunked ones stream through with the size limit enforced as they go. Either way every byte is
    depth-checked before it is relayed (a deep query kills OpenSearch).
    """
    limits = context.settings.limits
    headers = forward_request_headers(client_headers)
    stream_error: list[ProxyHTTPError] = []
    if body is not None:
        data = body
    elif not request.body_exists:
        data = None
    else:
        check = BodyDepthCheck(client_headers.get("Content-Type", ""), client_headers.get("Content-Encoding", ""),
                               path_qs, limits.max_json_depth, limits.max_body_bytes)
        if _read_whole(request.content_length) or not check.streams:  # YAML, CBOR, Smile: checked whole
            data = await read_body(request.content, request.content_length, limits.max_body_bytes,
                                   limits.body_timeout_s)
            check.feed(data)
            check.finish()
        else:
            check_declared_length(request.content_length, limits.max_body_bytes)
            data = _watch(checked_stream(stream_body(request.content, limits.max_body_bytes, limits.body_timeout_s),
                                         check), stream_error)
    try:
        upstream = await context.upstream.send(request.method, path_qs, headers, data)
    except ProxyHTTPError:
        if stream_error:
            raise stream_error[0] from None
        raise
    try:
        return await _relay_response(context, request, upstream, extra)
    except UPSTREAM_ERRORS as exc:
        raise context.upstream.error(exc) from exc
    finally:
        upstream.release()


def _read_whole(content_length: int | None) -> bool:
    """Small bodies of a declared length are read whole (one write upstream); large or chunked ones stream.

    Example:
        >>> _read_whole(None), _read_whole(5 << 20), _read_whole(100)
        (False, False, True)
    """
    return content_length is not None and content_length <= INLINE_BODY_BYTES


async def _watch(chunks, errors: list):
    """Pass chunks through, remembering a limit error so it can be answered instead of a 502."""
    try:
        async for chunk in chunks:
            yield chunk
    except ProxyHTTPError as err:
        errors.append(err)
        raise


async def _relay_response(context: ProxyContext, request: web.Request, upstream, extra: dict | None):
    headers = relayed_response_headers(upstream.headers, extra)
    length = upstream.content_length
    if request.method == "HEAD" or upstream.status in (204, 304) or (length is not None and length <= INLINE_BODY_BYTES):
        body = await upstream.read() if request.method != "HEAD" else None
        return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except UPSTREAM_ERRORS as exc:
        # Headers are gone already: cut the connection so the client sees a truncated body, not a complete one.
        context.upstream.error(exc)
        log.warning("OpenSearch failed in the middle of a response body: %s", type(exc).__name__)
        raise ConnectionResetError("upstream failed mid-body") from exc
    await response.write_eof()
    return response


async def _rerank(context: ProxyContext, request: web.Request, plan: RerankPlan, raw: bytes) -> web.StreamResponse:
    """Bound concurrency, then run the reranked search; past the bound shed (429/503) or degrade to BM25."""
    load = context.settings.load
    if context.in_flight >= load.max_in_flight:
        if load.overload == "shed":
            context.metrics.shed.inc(("reject",))
            context.metrics.requests.inc(("shed",))
            raise ProxyHTTPError.rejected(f"the rerank proxy is at its limit of {load.max_in_flight} concurrent searches",
                                          status=load.shed_status, retry_after_s=load.retry_after_s)
        context.metrics.shed.inc(("degrade",))
        context.metrics.requests.inc(("degraded",))
        return await _relay_search_body(context, request, request.raw_path, raw, plan.passthrough_body,
                                       degraded_headers())
    context.in_flight += 1
    context.metrics.in_flight.set(context.in_flight)
    try:
        return await _rerank_window(context, request, plan, raw)
    finally:
        context.in_flight -= 1
        context.metrics.in_flight.set(context.in_flight)


async def _rerank_window(context: ProxyContext, request: web.Request, plan: RerankPlan, raw: bytes):
    started = time.monotonic()
    metrics = context.metrics
    window = window_request(plan, await context.result_window(plan.target, request.headers))
    if isinstance(window, PassThrough):
        metrics.requests.inc(("skipped",))
        return await _relay_search_body(context, request, request.raw_path, raw, window.body)
    status, up_headers, body = await _fetch_window(context, request, window)
    if status == 400 and WINDOW_TOO_LARGE in body:
        # index.max_result_window was lowered since it was cached: read it again and retry once.
        window = window_request(plan, await context.result_window(plan.target, request.headers, fresh=True))
        if isinstance(window, PassThrough):
            metrics.requests.inc(("skipped",))
            return await _relay_search_body(context, request, request.raw_path, raw, window.body)
        status, up_headers, body = await _fetch_window(context, request, window)
    metrics.stage_seconds.observe(time.monotonic() - started, ("upstream",))
    response = None
    if status == 200 and "json" in up_headers.get("Content-Type", "json"):
        try:
            response, raw_text = parse_keeping_raw(body)  # hits' `_source` and the rest go back byte for byte
        except ValueError:
            response = None
    if response is None or not response_hits(response):
        metrics.requests.inc(("skipped",))  # an error or an empty result goes back untouched
        return web.Response(status=status, headers=forward_response_headers(up_headers), body=body)
    spec = window.spec
    texts = window_texts(response, spec)
    metrics.window_size.observe(len(texts))
    # Online A/B: only searches the proxy reranks take part; X-Rerank: off and pass-through stay out.
    decision = context.ab.decide(request.headers, request.remote) if context.ab is not None else None
    outcome, reason, teams = "reranked", "", None
    if decision is not None and decision.variant == BM25:
        outcome = "bm25"  # the control arm: BM25's page, no model call
    else:
        try:
            scores = await _window_scores(context, response, spec, texts)
        except asyncio.TimeoutError:
            outcome, reason = "fallback", "timeout"
        except ScoringOutOfMemory as exc:
            outcome, reason = "fallback", "oom"
            log.warning("rerank fell back to BM25: out of memory: %s", exc)
        except ScoringError as exc:
            outcome, reason = "fallback", "error"
            log.warning("rerank fell back to BM25: %s", exc)
        except Exception as exc:
            raise _bug(context, "score", exc, f"_search on {plan.target}") from exc
        if outcome == "reranked":
            scored_at = time.monotonic()
            try:
                if decision is not None and decision.variant == INTERLEAVE:
                    outcome = "interleaved"
                    page, teams = _interleave(context, decision, plan, response, spec, scores)
                else:
                    page = reranked_page(response, spec, scores)
            except Exception as exc:
                raise _bug(context, "rewrite", exc, f"_search on {plan.target}") from exc
    if outcome in ("fallback", "bm25"):
        scored_at = time.monotonic()
        page = bm25_page(response, spec)
        teams = None
        if outcome == "fallback":
            metrics.fallbacks.inc((reason,))
    out = dump_keeping_raw(page, raw_text, pretty=spec.pretty)
    query_id = new_query_id() if decision is not None else ""
    headers = rewritten_response_headers(up_headers, outcome, reason,
                                         response_headers(decision, query_id) if decision is not None else None)
    reply = web.Response(status=200, body=out, headers=headers)
    coding = response_encoding(request.headers.get("Accept-Encoding", ""))
    if coding is not None:  # OpenSearch compresses every size, so the proxy does too
        reply.enable_compression(ContentCoding(coding))
    now = time.monotonic()
    metrics.stage_seconds.observe(now - scored_at, ("rewrite",))
    metrics.stage_seconds.observe(now - started, ("total",))
    metrics.requests.inc((outcome,))
    if decision is not None:
        served = [str(hit.get("_id", "")) for hit in page["hits"]["hits"]]
        if teams is None:  # one ranker made the whole page: the arm's own, or BM25's after a model failure
            teams = [BM25 if outcome == "fallback" else decision.variant] * len(served)
        context.ab.record(query_id=query_id, decision=decision, hit_ids=served, teams=teams,
                          latency_ms=(now - started) * 1000, index=plan.target, start=spec.start,
                          query_text=spec.query_text, fallback=outcome == "fallback")
        context.ab_searches.inc((decision.variant,))
    return reply


async def _window_scores(context: ProxyContext, response: dict, spec: RerankSpec, texts: list[str]) -> np.ndarray:
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
        return await context.batcher.score(spec.query_text, texts, spec.deadline_s)
    calls = {}
    if weights.needs_ce:
        calls["ce"] = context.batcher.score(spec.query_text, texts, spec.deadline_s)
    if weights.needs_dense:
        calls["dense"] = context.dense_batchers[spec.dense_model].score(spec.query_text, texts, spec.deadline_s)
    tasks = {name: asyncio.ensure_future(call) for name, call in calls.items()}
    try:
        await asyncio.gather(*tasks.values())
    finally:
        for task in tasks.values():  # one failed: the other's result is no longer wanted
            task.cancel()
    scores = {name: task.result() for name, task in tasks.items()}
    bm25 = [hit.get("_score") if isinstance(hit, dict) else None for hit in response_hits(response)[: len(texts)]]
    return fuse(bm25, scores.get("ce"), scores.get("dense"), weights)


def _interleave(context: ProxyContext, decision, plan: RerankPlan, response: dict, spec, scores) -> tuple[dict, list]:
    """The interleaved page (team draft of model and BM25 order) and the team of each of its hits."""
    hits = response_hits(response)
    window = min(spec.window, len(hits))
    if len(scores) != window:
        raise ValueError(f"expected {window} scores for the window, got {len(scores)}")
    ranked = [position for position, _ in order_by_scores(range(window), scores)]
    positions, teams = context.ab.page(decision, ranked, spec.start, spec.size, f"{plan.target}|{spec.query_text}",
                                       total=len(hits))
    return interleaved_page(response, spec, positions, teams), teams


async def _fetch_window(context: ProxyContext, request: web.Request, window: WindowRequest):
    """Send the window request upstream as plain JSON (no compression either way); return status, headers, body."""
    return await _fetch(context, request, window.path_qs, window.body, "application/json")


async def _fetch(context: ProxyContext, request: web.Request, path_qs: str, body: bytes, content_type: str):
    """Send a body the proxy made upstream, uncompressed both ways; return status, headers, body."""
    return await context.upstream.fetch(request.method, path_qs, made_body_headers(request.headers, body, content_type),
                                        body)
