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
import re
import zlib
from typing import AsyncIterator

import numpy as np

from es_rerank.proxy.httperror import ProxyHTTPError

TOO_LARGE = "content_too_long_exception"


def too_large(size_text: str, limit: int) -> ProxyHTTPError:
    """The 413 the proxy answers; the connection closes so the unread body is never buffered.

    Example:
        >>> too_large("of 20 bytes", 10).status
        413
    """
    return ProxyHTTPError(413, TOO_LARGE, f"request body {size_text} exceeds the proxy limit of {limit} bytes",
                          close=True)


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
        >>> body = await read_body(request.content, request.content_length, 1 << 20, 30.0)   # doctest: +SKIP
    """
    check_declared_length(content_length, limit)
    try:
        async with _timeout(timeout_s):
            if content_length is not None:
                return await content.readexactly(content_length)
            return await _read_chunked(content, limit)
    except asyncio.TimeoutError:
        raise ProxyHTTPError(408, "timeout_exception", f"request body not received within {timeout_s:g} s",
                             close=True) from None
    except asyncio.IncompleteReadError:
        raise ProxyHTTPError(400, "parse_exception", "request body ended before its Content-Length",
                             close=True) from None


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
    """Yield a large request body chunk by chunk, stopping with 413 past `limit` and 408 when a chunk stalls.

    Example:
        >>> upstream_data = stream_body(request.content, 1 << 30, 30.0)   # doctest: +SKIP
    """
    size = 0
    while True:
        try:
            async with _timeout(timeout_s):
                chunk = await content.readany()
        except asyncio.TimeoutError:
            raise ProxyHTTPError(408, "timeout_exception", f"request body stalled for {timeout_s:g} s",
                                 close=True) from None
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
        raise ProxyHTTPError(415, "illegal_argument_exception",
                             f"request Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ProxyHTTPError(400, "parse_exception", f"request body is not valid {encoding} data: {exc}") from None
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


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")


_EXACT_DEPTH_BYTES = 1 << 20


def raw_json_depth(raw: bytes) -> int:
    """Bracket nesting depth of JSON bytes that may not parse, in C-speed passes.

    Brackets inside strings are skipped for bodies up to 1 MiB; larger ones are counted
    as if they had none (an upper bound: the check errs on the side of refusing).

    Example:
        >>> raw_json_depth(b'{"a": [{"b": "}}]]"}'), raw_json_depth(b'{"a": {"b": [')
        (3, 3)
    """
    brackets = raw.translate(None, _NOT_BRACKETS)
    depth = _bracket_depth(brackets)
    if depth and len(raw) <= _EXACT_DEPTH_BYTES and b'"' in raw:
        depth = _bracket_depth(_JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS))
    return depth


def refuse_deep_json(body: bytes, content_type: str, encoding: str, limit: int, max_bytes: int) -> None:
    """400 in OpenSearch's shape for a JSON or NDJSON body, read whole, nested deeper than `limit`.

    OpenSearch can die of a stack overflow on a deeply nested query, so the cap holds on every
    path, not only on reranked searches. Bodies that are not JSON, do not decode, or inflate past
    1 MiB (where brackets inside strings would be counted) are left for OpenSearch to answer.

    Example:
        >>> refuse_deep_json(b'{"a": [[1]]}', "application/json", "", 2, 100)
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request JSON nests 3 levels deep; the proxy accepts at most 2
        >>> refuse_deep_json(b'[[[', "text/plain", "", 2, 100)   # not JSON: relayed as it is
    """
    if not body or "json" not in content_type.lower():
        return
    try:
        plain = inflate(body, encoding, max_bytes)
    except ProxyHTTPError:
        return
    if len(plain) > _EXACT_DEPTH_BYTES:
        return
    depth = raw_json_depth(plain)
    if depth > limit:
        raise ProxyHTTPError(400, "parsing_exception",
                             f"request JSON nests {depth} levels deep; the proxy accepts at most {limit}")


def _bracket_depth(brackets: bytes) -> int:
    if not brackets:
        return 0
    steps = np.frombuffer(brackets, dtype=np.uint8)
    return int(np.cumsum(np.where((steps == ord("{")) | (steps == ord("[")), 1, -1)).max())


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
        raise ProxyHTTPError(400, "parsing_exception", f"request JSON nests {depth} levels deep; the proxy accepts at most {limit}")
