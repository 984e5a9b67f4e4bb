"""Header policy, all of it: what crosses the proxy each way, and what the proxy sets itself.

Hop-by-hop headers never cross (RFC 9110 7.6.1); Host comes from the fixed upstream address. A
body the proxy rewrote or made gets a fresh Content-Length and no Content-Encoding; an answer it
rewrote gets the `X-Rerank` outcome headers; aiohttp's `Server` and `Date` are taken out, since
OpenSearch sends neither.

Example:
    >>> forward_request_headers({"Authorization": "Basic eA==", "Connection": "keep-alive", "Host": "evil"})
    <CIMultiDict('Authorization': 'Basic eA==')>
    >>> rewritten_response_headers({"Content-Length": "5", "X-Opaque-Id": "7"}, "fallback", "timeout")
    <CIMultiDict('X-Opaque-Id': '7', 'X-Rerank': 'fallback', 'X-Rerank-Reason': 'timeout')>
"""

from __future__ import annotations

from typing import Mapping

from multidict import CIMultiDict

from es_rerank.evaluation.protocol import OUTCOME_HEADER, REASON_HEADER
from es_rerank.proxy.httperror import JSON_TYPE

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "host"})
ENGINE_LESS_HEADERS = ("Server", "Date")  # headers aiohttp adds that OpenSearch never sends
# A body's framing: it no longer holds once the proxy changed the body.
BODY_FRAMING = ("Content-Length", "Content-Encoding")


def _end_to_end(headers: Mapping[str, str]) -> CIMultiDict:
    named = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower not in HOP_BY_HOP and lower not in named:
            out.add(name, value)
    return out


def forward_request_headers(headers: Mapping[str, str]) -> CIMultiDict:
    """The client's headers as OpenSearch should get them: end-to-end ones only, values untouched.

    Example:
        >>> forward_request_headers({"Connection": "close, X-Hop", "X-Hop": "1", "X-Opaque-Id": "7"})
        <CIMultiDict('X-Opaque-Id': '7')>
    """
    return _end_to_end(headers)


def forward_response_headers(headers: Mapping[str, str]) -> CIMultiDict:
    """OpenSearch's response headers as the client should get them (Content-Length and -Encoding kept).

    Example:
        >>> forward_response_headers({"Content-Length": "5", "Transfer-Encoding": "chunked"})
        <CIMultiDict('Content-Length': '5')>
    """
    return _end_to_end(headers)


def relayed_response_headers(headers: Mapping[str, str], extra: Mapping[str, str] | None = None) -> CIMultiDict:
    """An answer relayed unchanged, plus the proxy's own `extra` headers (a degraded search's outcome).

    Example:
        >>> relayed_response_headers({"Content-Length": "5"}, degraded_headers())
        <CIMultiDict('Content-Length': '5', 'X-Rerank': 'degraded', 'X-Rerank-Reason': 'overload')>
    """
    out = forward_response_headers(headers)
    if extra:
        out.update(extra)
    return out


def rewritten_body_headers(client_headers: Mapping[str, str], body: bytes) -> CIMultiDict:
    """Client headers for a search body the proxy rewrote: plain JSON, fresh Content-Length.

    Example:
        >>> rewritten_body_headers({"Content-Encoding": "gzip", "Content-Length": "40"}, b"{}")
        <CIMultiDict('Content-Length': '2', 'Content-Type': 'application/json')>
    """
    headers = CIMultiDict(client_headers)
    headers.popall("Content-Encoding", None)
    headers["Content-Length"] = str(len(body))
    headers.setdefault("Content-Type", "application/json")
    return headers


def made_body_headers(client_headers: Mapping[str, str], body: bytes, content_type: str) -> CIMultiDict:
    """Headers for a request body the proxy made itself, sent and answered uncompressed.

    Example:
        >>> made_body_headers({"Authorization": "Basic eA==", "Accept-Encoding": "gzip"}, b"{}", "application/json")
        <CIMultiDict('Authorization': 'Basic eA==', 'Content-Length': '2', 'Content-Type': 'application/json')>
    """
    headers = forward_request_headers(client_headers)
    headers.popall("Content-Encoding", None)
    headers.popall("Accept-Encoding", None)
    headers["Content-Length"] = str(len(body))
    headers["Content-Type"] = content_type
    return headers


def bodiless_headers(client_headers: Mapping[str, str]) -> CIMultiDict:
    """Headers for a GET the proxy makes with the client's credentials (no body, plain answer).

    Example:
        >>> bodiless_headers({"Authorization": "Basic eA==", "Content-Length": "9", "Content-Type": "application/json"})
        <CIMultiDict('Authorization': 'Basic eA==')>
    """
    headers = forward_request_headers(client_headers)
    for name in ("Content-Length", "Content-Type", "Content-Encoding", "Accept-Encoding"):
        headers.popall(name, None)
    return headers


def rewritten_response_headers(upstream_headers: Mapping[str, str], outcome: str, reason: str = "",
                               extra: Mapping[str, str] | None = None) -> CIMultiDict:
    """OpenSearch's headers for an answer the proxy rewrote: no stale framing, its `X-Rerank` outcome
    (one per search of an `_msearch`, comma-separated), the reason of a fallback, then `extra`
    (the online A/B headers).

    Example:
        >>> rewritten_response_headers({"Content-Encoding": "gzip"}, "reranked,skipped")
        <CIMultiDict('X-Rerank': 'reranked,skipped')>
    """
    headers = forward_response_headers(upstream_headers)
    for name in BODY_FRAMING:
        headers.popall(name, None)
    headers[OUTCOME_HEADER] = outcome
    if reason:
        headers[REASON_HEADER] = reason
    if extra:
        headers.update(extra)
    return headers


def degraded_headers() -> dict[str, str]:
    """The outcome headers of a search relayed as BM25 because the proxy is at its concurrency limit.

    Example:
        >>> degraded_headers()
        {'X-Rerank': 'degraded', 'X-Rerank-Reason': 'overload'}
    """
    return {OUTCOME_HEADER: "degraded", REASON_HEADER: "overload"}


def drop_engine_less(headers: CIMultiDict) -> None:
    """Take out the headers aiohttp adds to every answer that OpenSearch never sends (`Server` names
    the proxy's software and versions).

    Example:
        >>> headers = CIMultiDict({"Server": "Python/3.11 aiohttp", "Date": "today", "X-Opaque-Id": "7"})
        >>> drop_engine_less(headers); headers
        <CIMultiDict('X-Opaque-Id': '7')>
    """
    for name in ENGINE_LESS_HEADERS:
        headers.popall(name, None)


def own_json_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers of a JSON answer the proxy makes itself (an error, readiness): OpenSearch's JSON type,
    plus an error's own (`Retry-After`).

    Example:
        >>> own_json_headers({"Retry-After": "2"})
        {'Content-Type': 'application/json; charset=UTF-8', 'Retry-After': '2'}
    """
    return {"Content-Type": JSON_TYPE, **(extra or {})}

