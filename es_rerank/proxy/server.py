"""Running the proxy: in the foreground with a SIGTERM drain (`es-rerank serve`), on a background
thread in-process (`ProxyThread`), or as an `es-rerank serve` subprocess (`serve_subprocess`).

Drain on SIGTERM/SIGINT: readiness turns false at once; after `drain_delay_s` (time for a load
balancer to notice) the listening socket closes, idle keep-alive connections close, and
in-flight requests get up to `drain_timeout_s` to finish.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Callable, Iterator, Mapping, Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from es_rerank.proxy.settings import ProxySettings
from es_rerank.errors import EsRerankError
from es_rerank.engine.client import redact
from es_rerank.proxy.app import CONTEXT, create_app
from es_rerank.proxy.connections import guard_connections
from es_rerank.scoring.cross_encoder import Scorer

log = logging.getLogger("es_rerank.proxy")
# The line `es-rerank serve` prints on stderr once it accepts connections (scripts wait for it).
LISTENING = "es-rerank proxy listening on "


class RedactMalformedRequests(logging.Filter):
    """aiohttp logs each malformed request with a traceback quoting the offending line, which can be a
    client's Authorization header: log one line naming the error class instead, quoting nothing.

    Example:
        >>> from aiohttp.http_exceptions import BadHttpMessage
        >>> record = logging.LogRecord("aiohttp.server", 40, "", 0, "Error handling request from %s", ("1.2.3.4",),
        ...                            (BadHttpMessage, BadHttpMessage("Authorization: Basic c2VjcmV0"), None))
        >>> RedactMalformedRequests().filter(record), record.getMessage(), record.exc_info
        (True, 'malformed HTTP request from 1.2.3.4 refused: BadHttpMessage', None)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed HTTP request from %s refused: %s", (remote, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.INFO:  # a client's mistake, not the proxy's error
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


async def _close_while_draining(request: web.Request, response: web.StreamResponse) -> None:
    """After SIGTERM every answer says `Connection: close`, so clients stop reusing connections that the
    drain is about to close (a request sent on an idle connection as it closes would see a reset).

    The header is set by hand: aiohttp writes its own Connection header before this hook runs, so
    `force_close()` alone closes the connection without telling the client.
    """
    if request.app[CONTEXT].draining:
        response.force_close()
        response.headers["Connection"] = "close"


def _redact_malformed_request_logs() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, RedactMalformedRequests) for f in server_log.filters):
        server_log.addFilter(RedactMalformedRequests())


async def start_site(settings: ProxySettings, scorer: Scorer | None,
                     dense_scorers: Mapping[str, Scorer] | None = None) -> tuple[web.AppRunner, str]:
    """Set up the app and bind it; returns the runner and the base URL it listens on.
    """
    _redact_malformed_request_logs()
    app = create_app(settings, scorer, dense_scorers)
    app.on_response_prepare.append(_close_while_draining)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=settings.server.drain_timeout_s,
                           keepalive_timeout=75.0,
                           auto_decompress=False)  # relay gzip bodies as sent; the app inflates only what it reads
    await runner.setup()
    guard_connections(runner, settings.server, app[CONTEXT].metrics, app[CONTEXT].upstream.engine)
    site = web.TCPSite(runner, settings.server.host, settings.server.port, reuse_address=True,
                       reuse_port=settings.server.reuse_port or None, backlog=1024)
    await site.start()
    if settings.server.own_socket:  # a worker of several: its peers read its metrics here
        await web.UnixSite(runner, settings.server.own_socket).start()
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    return runner, f"http://{host}:{port}"


async def drain(runner: web.AppRunner, settings: ProxySettings) -> None:
    """Readiness false, wait `drain_delay_s`, stop listening, let in-flight requests finish, clean up.
    """
    runner.app[CONTEXT].draining = True
    if settings.server.drain_delay_s:
        await asyncio.sleep(settings.server.drain_delay_s)
    await runner.cleanup()


def run_until_signal(settings: ProxySettings, scorer: Scorer | None,
                     on_listening: Callable[[str], None] | None = None,
                     dense_scorers: Mapping[str, Scorer] | None = None, handle_sigint: bool = True) -> None:
    """Serve in the foreground until SIGTERM (or, with `handle_sigint`, SIGINT), then drain. Used by
    `es-rerank serve` and by each of its worker processes (whose supervisor handles Ctrl-C).
    """
    async def main() -> None:
        runner, url = await start_site(settings, scorer, dense_scorers)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT) if handle_sigint else (signal.SIGTERM,):
            loop.add_signal_handler(sig, stop.set)
        log.info("proxy up at %s, relaying to %s", url, redact(settings.upstream.base))
        if on_listening is not None:
            on_listening(url)
        await stop.wait()
        log.info("signal received: draining (in-flight requests get up to %gs)", settings.server.drain_timeout_s)
        await drain(runner, settings)
        log.info("drained; exiting")

    asyncio.run(main())


class ProxyThread:
    """The proxy on its own event loop in a background thread; `url` is set once it listens.

    Port 0 in the settings picks a free port.
    """

    def __init__(self, settings: ProxySettings, scorer: Scorer | None,
                 dense_scorers: Mapping[str, Scorer] | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.dense_scorers = dense_scorers
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def context(self):
        """The running app's ProxyContext (metrics, state) for inspection.
        """
        return self._runner.app[CONTEXT]

    def start(self, timeout_s: float = 30.0) -> "ProxyThread":
        """Start serving; returns once the socket is bound (or raises what prevented it).
        """
        self._thread = threading.Thread(target=self._run, name="es-rerank-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"proxy did not start within {timeout_s}s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self.url = self._loop.run_until_complete(start_site(self.settings, self.scorer,
                                                                                    self.dense_scorers))
        except BaseException as exc:  # reported to the caller of start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain as on SIGTERM and stop the loop.
        """
        if self._loop is None or self._runner is None:
            return
        future = asyncio.run_coroutine_threadsafe(drain(self._runner, self.settings), self._loop)
        try:
            future.result(timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def __enter__(self) -> "ProxyThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve_subprocess(opensearch_url: str, args: Sequence[str], ready_timeout_s: float = 300.0) -> Iterator[str]:
    """Run `python -m es_rerank serve --opensearch URL --port 0 ARGS` until the block ends; yields its URL.

    Returns once `/_rerank/ready` answers 200; on exit sends SIGTERM and waits for the drain.
    """
    command = [sys.executable, "-m", "es_rerank", "serve", "--opensearch", opensearch_url, "--port", "0", *args]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "ES_RERANK_NO_PROGRESS": "1"})
    lines: collections.deque[str] = collections.deque(maxlen=200)
    found: list[str] = []
    listening = threading.Event()

    def read_stderr() -> None:  # keep draining stderr so the proxy never blocks on a full pipe
        for line in process.stderr:
            lines.append(line.rstrip())
            if line.startswith(LISTENING) and not found:
                found.append(line[len(LISTENING):].strip())
                listening.set()
        listening.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        if not listening.wait(ready_timeout_s) or not found:
            raise EsRerankError("the proxy subprocess did not start: " + " | ".join(list(lines)[-5:]),
                                hint="run the same `es-rerank serve` command by hand to see why")
        wait_ready(found[0], ready_timeout_s)
        yield found[0]
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll `/_rerank/ready` until it answers 200 (model warmed up, upstream reachable).
    """
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_rerank/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise EsRerankError(f"the proxy at {url} was not ready within {timeout_s:g}s: {last}",
                        hint="check the model directory and that the upstream answers")
