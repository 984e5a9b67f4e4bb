"""Request limits: body size (checked before buffering), slow bodies, gzip inflation, JSON depth.

Example:
    >>> import gzip
    >>> inflate(gzip.compress(b'{"a":1}'), "gzip", max_bytes=100)
    b'{"a":1}'
    >>> json_depth({"a": [{"b": 1}]})
    3
"""

from __future__ import annotations

import asyncio
import zlib
from typing import AsyncIterator

import numpy as np

from es_rerank.proxy.httperror import ProxyHTTPError

_SCAN_SLICE = 1 << 20  # the depth scanner's numpy passes work on at most this many bytes at once


def too_large(size_text: str, limit: int) -> ProxyHTTPError:
    """The 413 the proxy answers; the connection closes so the unread body is never buffered.

    Example:
        >>> too_large("of 20 bytes", 10).status
        413
    """
    return ProxyHTTPError.payload_too_large(f"request body {size_text} exceeds the proxy limit of {limit} bytes")


def check_declared_length(content_length: int | None, limit: int) -> None:
    """Refuse a declared Content-Length over the limit before a byte of the body is read.

    Example:
        >>> check_declared_length(11, 10)
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request body of 11 bytes exceeds the proxy limit of 10 bytes
    """
    if content_length is not None and content_length > limit:
        raise too_large(f"of {content_length} bytes", limit)


async def read_body(content, content_length: int | None, limit: int, timeout_s: float) -> bytes:
    """Read a whole request body from an aiohttp StreamReader within `limit` bytes and `timeout_s`.

    A slow client gets 408 and only its own connection waits.

    Example:
        >>> async def body():
        ...     content = asyncio.StreamReader()
        ...     content.feed_data(b'{"a": 1}')
        ...     content.feed_eof()
        ...     return await read_body(content, 8, limit=100, timeout_s=5.0)
        >>> asyncio.run(body())
        b'{"a": 1}'
    """
    check_declared_length(content_length, limit)
    try:
        async with _timeout(timeout_s):
            if content_length is not None:
                return await content.readexactly(content_length)
            return await _read_chunked(content, limit)
    except asyncio.TimeoutError:
        raise ProxyHTTPError.request_timeout(f"request body not received within {timeout_s:g} s") from None
    except asyncio.IncompleteReadError:
        raise ProxyHTTPError.parse_error("request body ended before its Content-Length", close=True) from None


def _timeout(seconds: float):
    """`asyncio.timeout` (3.11+: no extra task per read); aiohttp's equivalent on Python 3.10."""
    if hasattr(asyncio, "timeout"):
        return asyncio.timeout(seconds)
    from aiohttp.helpers import ceil_timeout

    return ceil_timeout(seconds)


async def _read_chunked(content, limit: int) -> bytes:
    parts = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large("(chunked)", limit)
        parts.append(chunk)
    return b"".join(parts)


async def stream_body(content, limit: int, timeout_s: float) -> AsyncIterator[bytes]:
    """Yield a large request body (aiohttp's `request.content`) chunk by chunk, stopping with 413 past
    `limit` and 408 when a chunk stalls."""
    size = 0
    while True:
        try:
            async with _timeout(timeout_s):
                chunk = await content.readany()
        except asyncio.TimeoutError:
            raise ProxyHTTPError.request_timeout(f"request body stalled for {timeout_s:g} s") from None
        if not chunk:
            return
        size += len(chunk)
        if size > limit:
            raise too_large("(streamed)", limit)
        yield chunk


def inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Decode a gzip/deflate request body, refusing to inflate past `max_bytes` (no zip bombs).

    Example:
        >>> inflate(b"plain", "identity", 10)
        b'plain'
        >>> inflate(b"not gzip", "gzip", 10)
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request body is not valid gzip data: Error -3 while decompressing data: incorrect header check
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise ProxyHTTPError.unsupported_media_type(
            f"request Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ProxyHTTPError.parse_error(f"request body is not valid {encoding} data: {exc}") from None
    if len(out) > max_bytes:
        raise too_large("(after decompression)", max_bytes)
    return out


def json_depth(value) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, `{}` is 1), computed without recursion.

    Example:
        >>> json_depth(5), json_depth([]), json_depth({"a": {"b": {}}})
        (0, 1, 3)
    """
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def raw_json_depth(raw: bytes) -> int:
    """Bracket nesting depth of JSON bytes that may not parse (brackets inside strings skipped).

    Example:
        >>> raw_json_depth(b'{"a": [{"b": "}}]]"}'), raw_json_depth(b'{"a": {"b": [')
        (3, 3)
    """
    scanner = JsonDepthScanner()
    scanner.feed(raw)
    return scanner.deepest


def too_deep(depth: int, limit: int, fmt: str = "json") -> ProxyHTTPError:
    """The 400 for a body nested past the cap; the connection closes as the rest may be unread.

    Example:
        >>> too_deep(150, 100).reason
        'request JSON nests at least 150 levels deep; the proxy accepts at most 100'
        >>> too_deep(150, 100, "yaml").reason
        'request YAML may nest up to 150 levels deep; the proxy accepts at most 100 (send it as JSON for an exact check)'
    """
    if fmt == "json":
        reason = f"request JSON nests at least {depth} levels deep; the proxy accepts at most {limit}"
    elif fmt == "cbor":
        reason = f"request CBOR nests {depth} levels deep; the proxy accepts at most {limit}"
    else:
        reason = (f"request {fmt.upper()} may nest up to {depth} levels deep; the proxy accepts at most {limit} "
                  "(send it as JSON for an exact check)")
    return ProxyHTTPError.parsing_error(reason, close=True)


def is_ndjson(path: str) -> bool:
    """Bodies of `_bulk`, `_msearch` and `_msearch/template` are NDJSON: checked line by line.

    Decided by the endpoint, never by Content-Type: OpenSearch parses an `x-ndjson` body sent to
    `_count` as one JSON document, newlines and all.

    Example:
        >>> is_ndjson("/docs/_bulk?refresh=true"), is_ndjson("/_msearch/template"), is_ndjson("/_search/template")
        (True, True, False)
    """
    segments = path.partition("?")[0].rstrip("/").split("/")
    return segments[-1] in ("_bulk", "_msearch") or segments[-2:] == ["_msearch", "template"]


class BodyDepthCheck:
    """Depth check of a request body as its bytes pass, before they are relayed.

    JSON bodies must not nest deeper than `limit` (OpenSearch dies of a stack overflow on deep
    queries); NDJSON is checked line by line, as the bytes stream. YAML, CBOR and Smile bodies are
    held and checked whole by `finish()` (`streams` is False: read them whole before relaying).
    gzip/deflate bodies are inflated on the side (the client's bytes are relayed as sent), refused
    with 413 past `max_bytes`. A body OpenSearch would not parse (another type, an unknown or
    corrupt encoding) is not checked.

    Example:
        >>> check = BodyDepthCheck("application/json", "", "/docs/_count", limit=2, max_bytes=100)
        >>> check.feed(b'{"a": [')
        >>> check.feed(b'[1]]}')
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request JSON nests at least 3 levels deep; the proxy accepts at most 2
    """

    def __init__(self, content_type: str, encoding: str, path: str, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.format = body_format(content_type)
        self.active = self.format is not None
        self.streams = self.format == "json"
        self.scanner = JsonDepthScanner(lines=is_ndjson(path))
        self._held: list[bytes] = []
        self._inflated = 0
        encoding = (encoding or "identity").strip().lower()
        self._decoder = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding != "identity":
            self.active = False  # OpenSearch cannot decode it either, so it never parses it

    def feed(self, raw: bytes) -> None:
        """Check the next bytes; raises 400 past the depth cap, 413 when they inflate past `max_bytes`."""
        if not self.active or not raw:
            return
        if self._decoder is None:
            self._scan(raw)
            return
        try:
            data = raw
            while data and self.active:
                plain = self._decoder.decompress(data, 1 << 20)
                self._count(len(plain))
                self._scan(plain)
                data = self._decoder.unconsumed_tail
        except zlib.error:
            self.active = False  # corrupt: OpenSearch fails to decode it before parsing anything

    def _count(self, size: int) -> None:
        self._inflated += size
        if self._inflated > self.max_bytes:
            raise too_large("(after decompression)", self.max_bytes)

    def _scan(self, plain: bytes) -> None:
        if not self.streams:
            self._held.append(plain)
            return
        self.scanner.feed(plain)
        if self.scanner.deepest > self.limit:
            raise too_deep(self.scanner.deepest, self.limit)

    def finish(self) -> None:
        """The body has ended: check a YAML, CBOR or Smile body held until now (JSON was checked as it came)."""
        if not self.active or self.streams:
            return
        body, self._held = b"".join(self._held), []
        depth = depth_bound(body, self.format)
        if depth > self.limit:
            raise too_deep(depth, self.limit, self.format)


def refuse_deep_json(body: bytes, content_type: str, encoding: str, path: str, limit: int, max_bytes: int) -> None:
    """400 in OpenSearch's shape for a JSON or NDJSON body, read whole, nested deeper than `limit`.

    OpenSearch can die of a stack overflow on a deeply nested query, so the cap holds on every
    path, not only on reranked searches.

    Example:
        >>> refuse_deep_json(b'{"a": [[1]]}', "application/json", "", "/_search", 2, 100)
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request JSON nests at least 3 levels deep; the proxy accepts at most 2
        >>> refuse_deep_json(b'[[[', "text/plain", "", "/_search", 2, 100)   # not JSON: OpenSearch refuses the type
    """
    check = BodyDepthCheck(content_type, encoding, path, limit, max_bytes)
    check.feed(body)
    check.finish()


async def checked_stream(chunks: AsyncIterator[bytes], check: BodyDepthCheck) -> AsyncIterator[bytes]:
    """Pass a streamed body through, each chunk checked before it is relayed.

    Example:
        >>> async def parts():
        ...     yield b'{"a": ['
        ...     yield b'[[1]]]}'
        >>> async def relay(check):
        ...     return [chunk async for chunk in checked_stream(parts(), check)]
        >>> asyncio.run(relay(BodyDepthCheck("application/json", "", "/_count", limit=2, max_bytes=100)))
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request JSON nests at least 4 levels deep; the proxy accepts at most 2
    """
    async for chunk in chunks:
        check.feed(chunk)
        yield chunk
    check.finish()


class JsonDepthScanner:
    """Bracket nesting depth of JSON bytes fed in any chunking, brackets inside strings skipped.

    Each chunk is scanned in vectorised passes (escapes, string parity, depth walk), carrying
    the state across chunk borders, so a body can be checked as it streams through. With
    `lines=True` (NDJSON: `_bulk`, `_msearch`) every newline starts a fresh document. The walk
    never goes below 0: a stray closing bracket cannot hide the opening ones after it.

    Example:
        >>> scanner = JsonDepthScanner()
        >>> for part in (b'{"a": [{"b": "}}]', b']"}', b']}'):
        ...     scanner.feed(part)
        >>> scanner.deepest, scanner.depth
        (3, 0)
        >>> lines = JsonDepthScanner(lines=True)
        >>> lines.feed(b'{"index": {}}\\n[[[\\n{"a": 1}\\n'); lines.deepest
        3
    """

    def __init__(self, lines: bool = False) -> None:
        self.lines = lines
        self.depth = 0
        self.deepest = 0
        self._in_string = 0
        self._backslashes = 0  # backslashes ending the previous chunk

    def feed(self, chunk: bytes) -> None:
        """Scan the next bytes of the body; `deepest` is the deepest nesting seen so far."""
        for start in range(0, len(chunk), _SCAN_SLICE):
            self._feed(chunk[start:start + _SCAN_SLICE])

    def _feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        a = np.frombuffer(chunk, dtype=np.uint8)
        n = a.size
        idx = np.arange(n, dtype=np.int64)
        backslash = a == 0x5C
        last_other = np.maximum.accumulate(np.where(backslash, -1, idx))
        run = idx - last_other + np.where(last_other < 0, self._backslashes, 0)  # backslashes ending at i
        before = np.empty(n, dtype=np.int64)
        before[0] = self._backslashes
        before[1:] = run[:-1]
        quote = (a == 0x22) & (before % 2 == 0)
        newline = (a == 0x0A) if self.lines else np.zeros(n, dtype=bool)
        last_newline = np.maximum.accumulate(np.where(newline, idx, -1))
        fresh = last_newline >= 0  # a line of this chunk started after position last_newline
        quotes = np.cumsum(quote)
        parity = np.where(fresh, quotes - quotes[np.maximum(last_newline, 0)], quotes + self._in_string) % 2
        outside = parity == 0
        step = np.where(((a == 0x7B) | (a == 0x5B)) & outside, 1,
                        np.where(((a == 0x7D) | (a == 0x5D)) & outside, -1, 0))
        walk = np.cumsum(step)
        local = np.where(fresh, walk - walk[np.maximum(last_newline, 0)], self.depth + walk)
        # Reflect the walk at 0 within each line: offset lines so a running minimum never crosses them.
        offset = (np.cumsum(newline) * (n + self.depth + 1)) if self.lines else 0
        shifted = local - offset
        floor = np.minimum.accumulate(np.minimum(shifted, -offset))
        depth = shifted - floor
        self.deepest = max(self.deepest, int(depth.max()))
        self.depth = int(depth[-1])
        self._in_string = int(parity[-1])
        self._backslashes = int(run[-1])


def check_json_depth(value, limit: int) -> None:
    """400 in OpenSearch's shape when a body nests deeper than `limit`.

    Example:
        >>> check_json_depth({"a": {"b": {}}}, 2)
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request JSON nests 3 levels deep; the proxy accepts at most 2
    """
    depth = json_depth(value)
    if depth > limit:
        raise ProxyHTTPError.parsing_error(f"request JSON nests {depth} levels deep; the proxy accepts at most {limit}")


from es_rerank.proxy.xcontent_depth import body_format, depth_bound  # noqa: E402 (it uses JsonDepthScanner)
