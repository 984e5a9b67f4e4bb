"""Helpers for the proxy tests: a small real scorer, fault-injecting scorers, and an in-process proxy.

The term-overlap scorer is a real (if simple) relevance model, deterministic and fast, so tests
can compute the order the proxy must produce. Fault scorers only inject what a real model cannot
be made to do on demand: raise, run out of memory, or take too long.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np

from es_rerank.proxy.settings import IndexRule, ProxySettings, ServerSettings, UpstreamSettings
from es_rerank.errors import ScoringError, ScoringOutOfMemory
from es_rerank.proxy.server import ProxyThread

WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class TermOverlapScorer:
    """Score = distinct query words found in the document, minus a hair per document word (shorter wins ties)."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def score_pairs(self, queries, documents) -> np.ndarray:
        with self._lock:
            self.calls.append(len(documents))
        out = []
        for query, doc in zip(queries, documents):
            doc_words = words(doc)
            out.append(len(set(words(query)) & set(doc_words)) - 1e-4 * len(doc_words))
        return np.asarray(out, dtype=np.float32)


class RaisingScorer:
    """A model that fails on every call, as a broken export or a CUDA error would."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or ScoringError("injected model failure")

    def score_pairs(self, queries, documents):
        raise self.error


class OutOfMemoryScorer(RaisingScorer):
    """A model that reports accelerator out-of-memory on every call."""

    def __init__(self) -> None:
        super().__init__(ScoringOutOfMemory("injected CUDA out of memory"))


class SlowScorer(TermOverlapScorer):
    """A real scorer that takes `seconds` per call (past a short deadline)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def score_pairs(self, queries, documents):
        time.sleep(self.seconds)
        return super().score_pairs(queries, documents)


class GatedScorer(TermOverlapScorer):
    """A real scorer whose calls (after warm-up) wait until `release()`: holds searches in flight on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self._warmed = False

    def score_pairs(self, queries, documents):
        if self._warmed:
            self.entered.set()
            self.gate.wait(30)
        self._warmed = True
        return super().score_pairs(queries, documents)

    def release(self) -> None:
        self.gate.set()


class WarmUpGatedScorer(TermOverlapScorer):
    """A real scorer whose first call (the warm-up) waits until `release()`: holds the proxy not ready on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def score_pairs(self, queries, documents):
        self.gate.wait(60)
        return super().score_pairs(queries, documents)

    def release(self) -> None:
        self.gate.set()


def settings_for(upstream_url: str, *rules: IndexRule, **sections) -> ProxySettings:
    """Proxy settings on a free port; `sections` replace whole sub-settings (limits=..., load=..., upstream=...)."""
    settings = ProxySettings(UpstreamSettings(upstream_url), rules=tuple(rules), server=ServerSettings(port=0))
    return replace(settings, **sections)


@contextlib.contextmanager
def running_proxy(settings: ProxySettings, scorer=None, wait_warm: bool = True):
    """Run the proxy in-process; yields the ProxyThread (its `.url`, `.context`)."""
    proxy = ProxyThread(settings, scorer).start()
    try:
        batcher = proxy.context.batcher
        if wait_warm and batcher is not None:
            batcher.warm.wait(30)
        yield proxy
    finally:
        proxy.stop()


class BackgroundApp:
    """Any aiohttp app served on a free port from a background thread (for fault-injecting upstreams)."""

    def __init__(self, app) -> None:
        self.app = app
        self.url = ""
        self._loop: Any = None
        self._runner = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        from aiohttp import web

        self._loop = asyncio.new_event_loop()

        async def start():
            self._runner = web.AppRunner(self.app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        import asyncio

        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def capture_app(seen: list):
    """An upstream that records each request's method, raw path, headers and body, and answers 200 `{}`."""
    from aiohttp import web

    async def record(request):
        seen.append({"method": request.method, "path": request.raw_path, "headers": list(request.raw_headers),
                     "body": await request.read()})
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


class RawUpstream:
    """A TCP server that reads one request per connection, counts it, optionally writes `reply` (e.g. a
    response cut short), then drops the connection (after `stall_s`)."""

    def __init__(self, stall_s: float = 0.0, reply: bytes = b"") -> None:
        import socket

        self.stall_s = stall_s
        self.reply = reply
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.requests.append(head)
            if self.reply:
                conn.sendall(self.reply)
            time.sleep(self.stall_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._sock.close()
