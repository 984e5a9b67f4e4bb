"""Pass-through: send a request upstream and relay the answer unchanged (status, headers, body bytes).

Small bodies are read whole (one write upstream), large or chunked ones stream through with the
size limit enforced as they go. Either way every byte is depth-checked before it is relayed (a
deep query kills OpenSearch).
"""

from __future__ import annotations

import logging
from typing import Mapping

from aiohttp import web

from es_rerank.proxy.context import ProxyContext
from es_rerank.proxy.headers import forward_request_headers, relayed_response_headers, rewritten_body_headers
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.limits import BodyDepthCheck, check_declared_length, checked_stream, read_body, stream_body
from es_rerank.proxy.upstream import UPSTREAM_ERRORS

log = logging.getLogger("es_rerank.proxy")

# Bodies up to this size are read whole (one write upstream); larger ones stream through.
INLINE_BODY_BYTES = 1 << 20


async def relay_search_body(context: ProxyContext, request: web.Request, path_qs: str, raw: bytes,
                            rewritten: bytes | None, extra: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Relay a search whose body was read: the client's exact bytes, or a rewritten (plain JSON) body."""
    if rewritten is None:
        return await relay(context, request, path_qs, raw, request.headers, extra)
    return await relay(context, request, path_qs, rewritten, rewritten_body_headers(request.headers, rewritten), extra)


async def relay(context: ProxyContext, request: web.Request, path_qs: str, body: bytes | None,
                client_headers: Mapping[str, str], extra: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Send the request upstream and relay the answer unchanged; `extra` headers are added to it.

    `body=None` means the client's body has not been read: read here whole or streamed, checked either way.
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


async def _relay_response(context: ProxyContext, request: web.Request, upstream,
                          extra: Mapping[str, str] | None) -> web.StreamResponse:
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
