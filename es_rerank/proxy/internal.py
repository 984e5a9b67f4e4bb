"""The proxy's own endpoints: `/_rerank/health` (live), `/_rerank/ready`, `/_rerank/metrics` and,
in an online A/B test, `/_rerank/events`.

Example:
    >>> context = ProxyContext(ProxySettings(UpstreamSettings("http://127.0.0.1:9200")), scorer=None)
    >>> "es_rerank_requests_total" in metrics_text(context)
    True
"""

from __future__ import annotations

from aiohttp import web

from es_rerank.evaluation.protocol import EVENTS_PATH
from es_rerank.proxy.batcher import Batcher
from es_rerank.proxy.context import ProxyContext
from es_rerank.proxy.headers import own_json_headers
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.jsonio import dumps
from es_rerank.proxy.metrics_merge import WORKER_SCOPE, merge_texts, peer_texts
from es_rerank.proxy.settings import ProxySettings, UpstreamSettings  # noqa: F401 (doctest)


async def internal(context: ProxyContext, request: web.Request, path: str) -> web.Response:
    """Answer a request under `/_rerank/`."""
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
        return _json_response(context, request, 200, {"status": "live"})
    if path == "/_rerank/ready":
        ready, details = await readiness(context)
        return _json_response(context, request, 200 if ready else 503, details)
    if path == "/_rerank/metrics":
        await readiness(context)  # es_rerank_ready says what a readiness probe would say now
        text = metrics_text(context)
        peers = context.settings.server.peer_sockets
        if peers and request.query.get("scope") != WORKER_SCOPE:  # one of several workers: answer for all
            text = merge_texts([text, *await peer_texts(peers, path)])
        return web.Response(body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4"})
    raise ProxyHTTPError.not_found(
        f"no proxy endpoint {path}; the proxy serves /_rerank/health, /_rerank/ready, /_rerank/metrics"
        f" and, in an A/B test, {EVENTS_PATH}")


def _json_response(context: ProxyContext, request: web.Request, status: int, payload: dict) -> web.Response:
    """A small JSON response of the proxy's own, with the upstream engine's headers."""
    return web.Response(status=status, body=dumps(payload),
                        headers=own_json_headers(context.upstream.engine, request.headers))


async def readiness(context: ProxyContext) -> tuple[bool, dict]:
    """(ready, details): not draining, model loaded and warmed up, OpenSearch reachable."""
    reasons = []
    if context.draining:
        reasons.append("draining after SIGTERM")
    if context.batcher is None:
        model = "none: bi-encoder fusion only" if context.dense_batchers else "none: reranking is off"
    else:
        model = _warm_state(context.batcher, "model", reasons)
    dense = {name: _warm_state(batcher, f"dense model {name}", reasons)
             for name, batcher in context.dense_batchers.items()}
    opensearch = await context.upstream.recently_reachable()
    if not opensearch:
        reasons.append(f"{context.upstream.engine.label} is unreachable")
    ready = not reasons
    context.metrics.ready.set(1 if ready else 0)
    # "opensearch" names the upstream, whichever engine it is (the key predates Elasticsearch upstreams).
    details = {"ready": ready, "model": model, "opensearch": "reachable" if opensearch else "unreachable",
               "engine": context.upstream.engine.describe(), "reasons": reasons}
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


def metrics_text(context: ProxyContext) -> str:
    """The Prometheus text of the proxy's metrics, plus the A/B ones when an A/B test runs."""
    text = context.metrics.render()
    if context.ab is None:
        return text
    context.ab_dropped.set(context.ab.dropped)
    lines = [line for metric in (context.ab_searches, context.ab_dropped) for line in metric.header() + metric.lines()]
    return text + "\n".join(lines) + "\n"
