"""The proxy's HTTP connections: a header-read timeout, a connection cap, and engine-shaped protocol errors.

aiohttp bounds neither the time a client takes to send its request headers nor the number of open
connections, so 200 clients trickling header bytes would hold 200 connections forever; and a
malformed request gets aiohttp's text/plain 400, which quotes the offending bytes. `guard_connections`
swaps the runner's connection handler for `GuardedHandler`, which closes a connection whose
request headers are not complete `header_timeout_s` after their first byte, closes connections
past `max_connections` as they arrive (both counted in `es_rerank_connections_cut_total`), and
answers malformed HTTP with the upstream engine's JSON error shape, quoting nothing.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from es_rerank.proxy.settings import ServerSettings
from es_rerank.proxy.headers import drop_engine_less, own_json_headers
from es_rerank.proxy.httperror import error_body
from es_rerank.proxy.metrics import ProxyMetrics
from es_rerank.proxy.upstream_engine import UpstreamEngine


class ConnectionGuard:
    """The limits every connection handler applies, and the metrics it reports them in."""

    def __init__(self, settings: ServerSettings, metrics: ProxyMetrics, engine: UpstreamEngine) -> None:
        self.header_timeout_s = settings.header_timeout_s
        self.max_connections = settings.max_connections
        self.metrics = metrics
        self.engine = engine  # whose error shape protocol errors take
        self.open = 0  # counted here: aiohttp lists a connection until its handler task ends, after it closed

    def opened(self) -> bool:
        """Count a new connection; False when it is over the cap (the caller closes it)."""
        self.open += 1
        self.metrics.connections.set(self.open)
        if self.open > self.max_connections:
            self.metrics.connections_cut.inc(("connection_cap",))
            return False
        return True

    def closed(self) -> None:
        self.open -= 1
        self.metrics.connections.set(self.open)


class EngineShapedError(web.Response):
    """A protocol error answer without aiohttp's `Server` and `Date` headers (the app's own hook never sees it)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        drop_engine_less(self.headers)


def protocol_error(status: int, exc: BaseException | None, engine: UpstreamEngine) -> web.Response:
    """The answer to a request aiohttp could not parse or handle: the engine's JSON error shape, closing.

    The reason names the kind of error only: aiohttp's message quotes the client's bytes.

    Example:
        >>> from aiohttp.http_exceptions import BadHttpMessage
        >>> protocol_error(400, BadHttpMessage("Authorization: Basic c2VjcmV0"), UpstreamEngine("auto")).text
        '{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"malformed HTTP request (BadHttpMessage); fix the client that sent it"}],"type":"illegal_argument_exception","reason":"malformed HTTP request (BadHttpMessage); fix the client that sent it"},"status":400}'
    """
    if status >= 500:
        error_type, reason = "proxy_internal_exception", "the rerank proxy failed unexpectedly; see its log"
    else:
        kind = type(exc).__name__ if exc is not None else HTTPStatus(status).phrase
        error_type = "illegal_argument_exception"
        reason = f"malformed HTTP request ({kind}); fix the client that sent it"
    response = EngineShapedError(status=status, body=error_body(status, error_type, reason),
                                 headers=own_json_headers(engine))
    response.force_close()
    return response


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler with the header-read timeout, the connection cap and JSON protocol errors."""

    _guard: ConnectionGuard | None = None
    _header_timer: asyncio.TimerHandle | None = None
    _finished_requests = 0  # requests whose handling ended; aiohttp counts the parsed ones

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        assert isinstance(self._manager, GuardedServer)
        self._guard = self._manager.guard
        if not self._guard.opened():
            transport.close()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        if self._guard is not None:
            self._guard.closed()
            self._guard = None  # counted once, however often aiohttp reports the loss
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The clock starts at the first byte of a request (idle keep-alive is keepalive_timeout's job)
        # and stops once its headers are parsed (each parsed request bumps _request_count). Bytes that
        # arrive while a parsed request is still queued or handled are its body: no clock for them.
        # (aiohttp's own in-progress flag is set only once the handler task runs, a loop turn after
        # the request leaves the queue, so body bytes arriving in that turn started the clock.)
        if self._guard is not None and self._header_timer is None and data \
                and self._request_count == self._finished_requests:
            self._header_timer = self._loop.call_later(self._guard.header_timeout_s, self._headers_too_slow)
        parsed = self._request_count
        super().data_received(data)
        if self._request_count > parsed:
            self._cancel_header_timer()

    async def _handle_request(self, request, start_time, request_handler):
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._finished_requests += 1

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport is not None and self._guard is not None:
            self._guard.metrics.connections_cut.inc(("header_timeout",))
            self.transport.close()

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it (redacted), raises if a response is under way
        assert isinstance(self._manager, GuardedServer)
        return protocol_error(status, exc, self._manager.guard.engine)


class GuardedServer(web.Server):
    """aiohttp's connection factory, making `GuardedHandler`s that share one `ConnectionGuard`."""

    guard: ConnectionGuard

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


def guard_connections(runner: web.AppRunner, settings: ServerSettings, metrics: ProxyMetrics,
                      engine: UpstreamEngine) -> None:
    """Make the set-up runner's connections `GuardedHandler`s (call before any site starts)."""
    server = runner.server
    assert server is not None, "call guard_connections after runner.setup()"
    server.__class__ = GuardedServer  # aiohttp builds its Server itself; this only changes the handler it makes
    assert isinstance(server, GuardedServer)
    server.guard = ConnectionGuard(settings, metrics, engine)
