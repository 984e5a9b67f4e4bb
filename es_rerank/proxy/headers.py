"""Header policy, all of it: what crosses the proxy each way, and what the proxy sets itself.

Hop-by-hop headers never cross (RFC 9110 7.6.1); Host comes from the fixed upstream address. A
body the proxy rewrote or made gets a fresh Content-Length and no Content-Encoding; an answer it
rewrote gets the `X-Rerank` outcome headers; aiohttp's `Server` and `Date` are taken out, since
neither engine sends them. An answer the proxy makes itself carries the upstream engine's JSON
type and, for Elasticsearch, `X-Elastic-Product` (its clients refuse a 2xx without it) and the
`compatible-with` media type the client's Accept asked for. A body the proxy makes for upstream
keeps the client's `compatible-with` version: Elasticsearch refuses a versioned Accept beside an
unversioned Content-Type.

Example:
    >>> forward_request_headers({"Authorization": "Basic eA==", "Connection": "keep-alive", "Host": "evil"})
    <CIMultiDict('Authorization': 'Basic eA==')>
    >>> rewritten_response_headers({"Content-Length": "5", "X-Opaque-Id": "7"}, "fallback", "timeout")
    <CIMultiDict('X-Opaque-Id': '7', 'X-Rerank': 'fallback', 'X-Rerank-Reason': 'timeout')>
"""

from __future__ import annotations

import re
from typing import Mapping

from multidict import CIMultiDict

from es_rerank.evaluation.protocol import OUTCOME_HEADER, REASON_HEADER
from es_rerank.proxy.upstream_engine import UpstreamEngine

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "host"})
ENGINE_LESS_HEADERS = ("Server", "Date")  # headers aiohttp adds that OpenSearch never sends
# A body's framing: it no longer holds once the proxy changed the body.
BODY_FRAMING = ("Content-Length", "Content-Encoding")
OPENSEARCH_JSON = "application/json; charset=UTF-8"  # how each engine labels its JSON answers
ELASTICSEARCH_JSON = "application/json"
PRODUCT = ("X-Elastic-Product", "Elasticsearch")
# elasticsearch-py's media types: application/vnd.elasticsearch+json; compatible-with=9 (and +x-ndjson).
_COMPATIBLE = re.compile(r"application/vnd\.elasticsearch\+[\w.-]+\s*;\s*compatible-with\s*=\s*(\d+)", re.I)


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
    """Headers for a request body the proxy made itself (`content_type`: plain JSON or NDJSON), sent and
    answered uncompressed, its type in the client's `compatible-with` version when it asked for one.

    Example:
        >>> made_body_headers({"Authorization": "Basic eA==", "Accept-Encoding": "gzip"}, b"{}", "application/json")
        <CIMultiDict('Authorization': 'Basic eA==', 'Content-Length': '2', 'Content-Type': 'application/json')>
    """
    headers = forward_request_headers(client_headers)
    headers.popall("Content-Encoding", None)
    headers.popall("Accept-Encoding", None)
    headers["Content-Length"] = str(len(body))
    headers["Content-Type"] = made_body_type(client_headers, content_type)
    return headers


def compatible_version(media_type: str) -> str | None:
    """The N of an Elasticsearch `compatible-with=N` media type, or None for any other type.

    Example:
        >>> compatible_version("application/vnd.elasticsearch+json; compatible-with=9"), compatible_version("application/json")
        ('9', None)
    """
    match = _COMPATIBLE.search(media_type or "")
    return match.group(1) if match else None


def made_body_type(client_headers: Mapping[str, str], plain: str) -> str:
    """The Content-Type of a body the proxy made: `plain`, or its `compatible-with` form in the version
    of the client's Content-Type (else Accept), since Elasticsearch wants both versioned or neither.

    Example:
        >>> made_body_type({"Accept": "application/vnd.elasticsearch+json; compatible-with=8"}, "application/x-ndjson")
        'application/vnd.elasticsearch+x-ndjson; compatible-with=8'
        >>> made_body_type({"Accept": "application/json"}, "application/json")
        'application/json'
    """
    version = compatible_version(client_headers.get("Content-Type", "")) or \
        compatible_version(client_headers.get("Accept", ""))
    if version is None:
        return plain
    return f"application/vnd.elasticsearch+{plain.partition('/')[2]}; compatible-with={version}"


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


def own_json_headers(engine: UpstreamEngine, client_headers: Mapping[str, str] | None = None,
                     extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers of a JSON answer the proxy makes itself (an error, readiness) as the upstream engine
    would send them, plus an error's own (`Retry-After`). Elasticsearch answers a client's
    `compatible-with` Accept in that media type.

    Example:
        >>> own_json_headers(UpstreamEngine("opensearch"), {}, {"Retry-After": "2"})
        {'Content-Type': 'application/json; charset=UTF-8', 'Retry-After': '2'}
        >>> own_json_headers(UpstreamEngine("elasticsearch"), {"Accept": "application/vnd.elasticsearch+json; compatible-with=9"})
        {'Content-Type': 'application/vnd.elasticsearch+json;compatible-with=9', 'X-Elastic-Product': 'Elasticsearch'}
    """
    if not engine.is_elasticsearch:
        return {"Content-Type": OPENSEARCH_JSON, **(extra or {})}
    version = compatible_version((client_headers or {}).get("Accept", ""))
    content_type = ELASTICSEARCH_JSON if version is None else f"application/vnd.elasticsearch+json;compatible-with={version}"
    return {"Content-Type": content_type, PRODUCT[0]: PRODUCT[1], **(extra or {})}

