"""A TCP relay between the proxy and OpenSearch that injects network faults, and counts what it forwards.

Modes (switched at any time, from any thread):
- `pass`: bytes flow unchanged;
- `latency`: every chunk waits `latency_s` before it is forwarded, both ways;
- `reset`: open connections are reset (RST), and new ones are reset on arrival;
- `blackhole`: nothing is forwarded and nothing is answered; connections caught in it stay
  silent until their peer gives up, even after the mode ends (no half-delivered requests).

The relay reads the request heads it forwards upstream and counts each `X-Opaque-Id`: a
value forwarded twice means a request was sent to OpenSearch twice.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
from collections import Counter

MODES = ("pass", "latency", "reset", "blackhole")
CONNECT_TIMEOUT_S = 2.0
CHUNK = 1 << 16
# Enough of a chunk's tail to find a header that straddles two chunks.
TAIL = 512
OPAQUE = re.compile(rb"\r\nX-Opaque-Id: ([^\r\n]+)\r\n", re.IGNORECASE)


class _Pair:
    """One relayed connection: the client side, the upstream side, and whether it fell into a black hole."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.blackholed = False

    def reset(self) -> None:
        """Reset both sides of the connection.
        """
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP reset rather than an orderly close."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class FaultRelay:
    """The relay, on its own event loop in a background thread."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.latency_s = 0.0
        self.port = 0
        self.opaque_ids: Counter = Counter()
        self.connections = 0
        self.resets = 0
        self._pairs: set[_Pair] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-relay", daemon=True)

    @property
    def url(self) -> str:
        """The relay's http URL (point the proxy's upstream here).

        Example:
            >>> FaultRelay("127.0.0.1", 9200).url
            'http://127.0.0.1:0'
        """
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str, latency_s: float = 0.0) -> None:
        """Switch the fault; `reset` also resets every open connection at once. Returns once the
        new mode is in force, so the next exchange sees it.
        """
        if mode not in MODES:
            raise ValueError(f"relay mode must be one of {MODES}, got {mode!r}")
        if mode == "latency" and latency_s <= 0:
            raise ValueError(f"latency mode needs latency_s > 0, got {latency_s}")
        switched = threading.Event()

        def switch() -> None:
            self._switch(mode, latency_s)
            switched.set()

        self._loop.call_soon_threadsafe(switch)
        switched.wait()

    def _switch(self, mode: str, latency_s: float) -> None:
        self.mode, self.latency_s = mode, latency_s
        if mode == "reset":
            for pair in list(self._pairs):
                self.resets += 1
                pair.reset()
        elif mode == "blackhole":
            for pair in self._pairs:
                pair.blackholed = True

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        pair = _Pair(writer)
        if self.mode == "reset":
            self.resets += 1
            pair.reset()
            return
        self._pairs.add(pair)
        try:
            if self.mode == "blackhole":
                pair.blackholed = True
                await self._swallow(reader)
                return
            try:
                up_reader, pair.upstream = await asyncio.wait_for(
                    asyncio.open_connection(self.upstream_host, self.upstream_port), CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                _reset(writer)  # OpenSearch is down: the proxy sees its connection refused, as it would directly
                return
            await asyncio.gather(self._pump(reader, pair.upstream, pair, count=True),
                                 self._pump(up_reader, writer, pair, count=False))
        finally:
            self._pairs.discard(pair)
            for side in (pair.client, pair.upstream):
                if side is not None and not side.transport.is_closing():
                    side.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(CHUNK):
                pass
        except (ConnectionError, OSError):
            pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair, count: bool) -> None:
        tail = b""
        try:
            while chunk := await reader.read(CHUNK):
                if pair.blackholed:
                    continue
                if self.mode == "latency":
                    await asyncio.sleep(self.latency_s)
                if pair.blackholed or writer.transport.is_closing():
                    continue
                if count:
                    tail = self._count(tail, chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not pair.blackholed and not writer.transport.is_closing():
                writer.close()

    def _count(self, tail: bytes, chunk: bytes) -> bytes:
        """Count X-Opaque-Id values in forwarded bytes; a value straddling chunks is counted once."""
        data = tail + chunk
        for match in OPAQUE.finditer(data):
            if match.end() > len(tail):
                self.opaque_ids[match.group(1).decode("latin-1")] += 1
        return data[-TAIL:]

    def __enter__(self) -> "FaultRelay":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault relay did not start within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()
            for pair in list(self._pairs):
                pair.reset()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
