"""The connection pool to the upstream engine: a fixed address, separate connect/read timeouts, no retries.

Requests go to `settings.url` + the client's raw path and query, never to a host taken from the
request. Bodies are relayed as bytes: no decompression, no cookies, no headers added (which
headers cross is `es_rerank.proxy.headers`). Its answers tell `engine` which engine is upstream
(`es_rerank.proxy.upstream_engine`), asked once with `GET /` as the pool opens.

Example:
    >>> Upstream(UpstreamSettings("http://127.0.0.1:9200"), ProxyMetrics()).url("/_cat/indices?v")
    URL('http://127.0.0.1:9200/_cat/indices?v')
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from es_rerank.proxy.settings import UpstreamSettings
from es_rerank.errors import ConfigError
from es_rerank.engine.client import redact
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.jsonio import loads
from es_rerank.proxy.metrics import ProxyMetrics
from es_rerank.proxy.upstream_engine import UpstreamEngine

UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
READY_CACHE_S = 1.0
ENGINE_PROBE_S = 5.0  # the start-up `GET /` that tells the engine; past it, later answers tell

log = logging.getLogger("es_rerank.proxy")


def upstream_ssl(settings: UpstreamSettings) -> ssl.SSLContext | bool:
    """What aiohttp's connector gets as `ssl=`: a context trusting `ca_file`, False to skip checks, True for defaults.

    With `verify=False` the certificate is not checked at all, which lets anyone on the path read
    the clients' credentials; it is logged as a warning.

    Example:
        >>> upstream_ssl(UpstreamSettings("http://127.0.0.1:9200"))
        True
        >>> upstream_ssl(UpstreamSettings("https://127.0.0.1:9200", verify=False))
        False
    """
    if not settings.verify:
        log.warning("certificate checks of OpenSearch at %s are OFF (--opensearch-insecure): anyone on the path "
                    "can read the credentials clients send; use --opensearch-ca-file instead", redact(settings.base))
        return False
    if settings.ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load OpenSearch CA file {settings.ca_file}: {exc}",
                              hint="pass a PEM file holding the CA certificate(s)") from exc
    return True


class Upstream:
    """One aiohttp session to the upstream engine for the proxy's lifetime."""

    def __init__(self, settings: UpstreamSettings, metrics: ProxyMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = UpstreamEngine(settings.engine)
        self.session: aiohttp.ClientSession | None = None
        self._ssl = upstream_ssl(settings)  # built here so a bad CA file fails before the port opens
        self._reachable = (0.0, False)  # (checked at, answered)

    async def start(self) -> None:
        """Open the pooled session (inside the running event loop).
        """
        timeout = aiohttp.ClientTimeout(total=None, connect=self.settings.connect_timeout_s,
                                        sock_connect=self.settings.connect_timeout_s,
                                        sock_read=self.settings.read_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.settings.pool_size, limit_per_host=self.settings.pool_size,
                                         keepalive_timeout=30.0, enable_cleanup_closed=False,
                                         ssl=self._ssl)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # a shared jar would hand one client's cookies to another
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            read_bufsize=2 ** 16)
        # aiohttp re-sends "idempotent" methods (PUT, DELETE too) once on a dropped keep-alive
        # connection; OpenSearch PUT/DELETE are not safe to repeat, so nothing is ever re-sent.
        self.session._retry_connection = False

    async def detect_engine(self) -> None:
        """Ask `GET /` which engine is upstream, when `--upstream-engine auto` left it open; a failed
        probe leaves it to later answers (the log says so)."""
        if self.engine.known:
            return
        try:
            async with self.session.get(self.url("/"), timeout=aiohttp.ClientTimeout(total=ENGINE_PROBE_S)) as resp:
                body = await resp.read()
        except UPSTREAM_ERRORS as exc:
            log.warning("could not ask %s which engine it is (%s); answering in OpenSearch's shape until it answers "
                        "(--upstream-engine opensearch|elasticsearch fixes it)", redact(self.settings.base),
                        type(exc).__name__)
            return
        try:
            root = loads(body) if resp.status == 200 else {}
        except ValueError:
            root = {}
        self.engine.note(resp.status, resp.headers, root if isinstance(root, dict) else {})

    async def close(self) -> None:
        """Close pooled connections.
        """
        if self.session is not None:
            await self.session.close()
            self.session = None

    def url(self, path_qs: str) -> URL:
        """The fixed upstream base plus the request's raw path and query, left encoded as the client sent them.

        Example:
            >>> Upstream(UpstreamSettings("http://127.0.0.1:9200"), ProxyMetrics()).url("/a%20b/_doc/1?x=%2B")
            URL('http://127.0.0.1:9200/a%20b/_doc/1?x=%2B')
        """
        return URL(self.settings.base + path_qs, encoded=True)

    async def send(self, method: str, path_qs: str, headers: CIMultiDict, data) -> aiohttp.ClientResponse:
        """Send one request; the caller reads and releases the response. Raises ProxyHTTPError 502/504.
        """
        try:
            response = await self.session.request(method, self.url(path_qs), headers=headers, data=data,
                                                  allow_redirects=False)
        except UPSTREAM_ERRORS as exc:
            raise self.error(exc) from exc
        if not self.engine.known:
            self.engine.note(response.status, response.headers)
        return response

    async def fetch(self, method: str, path_qs: str, headers: CIMultiDict, data: bytes | None
                    ) -> tuple[int, CIMultiDictProxy, bytes]:
        """Send one request and read its whole answer: (status, headers, body). Raises ProxyHTTPError 502/504.
        """
        response = await self.send(method, path_qs, headers, data)
        try:
            return response.status, response.headers, await response.read()
        except UPSTREAM_ERRORS as exc:
            raise self.error(exc) from exc
        finally:
            response.release()

    def error(self, exc: BaseException) -> ProxyHTTPError:
        """Turn a connection failure or timeout into a 502/504 in the engine's shape and count it.

        Example:
            >>> Upstream(UpstreamSettings("http://127.0.0.1:9200"), ProxyMetrics()).error(asyncio.TimeoutError()).status
            504
        """
        where = redact(self.settings.base)
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            self.metrics.upstream_errors.inc(("timeout",))
            return ProxyHTTPError.upstream_timeout(
                f"{self.engine.label} at {where} did not answer in time ({type(exc).__name__})")
        self.metrics.upstream_errors.inc(("connect",))
        return ProxyHTTPError.upstream_unavailable(
            f"{self.engine.label} at {where} is unavailable: {type(exc).__name__}: {exc}")

    async def recently_reachable(self) -> bool:
        """`reachable()`, asked at most once every READY_CACHE_S (readiness probes come often).
        """
        checked_at, reachable = self._reachable
        if time.monotonic() - checked_at > READY_CACHE_S:
            reachable = await self.reachable()
            self._reachable = (time.monotonic(), reachable)
        return reachable

    async def reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the upstream answers `GET /` with any HTTP status (401, or Elasticsearch's 405, still mean it is up).
        """
        try:
            async with self.session.get(self.url("/"), timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                await resp.read()
                self.engine.note(resp.status, resp.headers)
                return True
        except UPSTREAM_ERRORS:
            return False
