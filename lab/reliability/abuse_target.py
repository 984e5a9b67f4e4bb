"""What an abuse case runs against, what it expects, and how a request is spelled in raw bytes.

Example:
    >>> Expect((400,), closed=True).statuses
    (400,)
    >>> http_request("GET", "/", headers=(("X-A", "1"),))
    b'GET / HTTP/1.1\\r\\nHost: proxy\\r\\nX-A: 1\\r\\nConnection: close\\r\\n\\r\\n'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from lab.reliability.decoy import DecoyServer

# An index name the proxy has no rule for and that does not exist: searches on it pass through.
UNCONFIGURED_INDEX = "rel-abuse-unconfigured"
# A request smuggled past the proxy would create this index; abuse runs assert it never exists.
SMUGGLED_INDEX = "rel-abuse-smuggled"
OPAQUE_ID_HEADER = "X-Opaque-Id"


@dataclass(frozen=True)
class AbuseTarget:
    """A running proxy, the OpenSearch node it relays to, and the decoy it must never reach.

    `index` is configured for reranking in the proxy and `query` finds hits in it;
    `max_body_bytes` and `body_timeout_s` are the proxy's limits.
    """

    proxy_url: str
    opensearch_url: str
    index: str
    query: str
    decoy: DecoyServer
    max_body_bytes: int
    body_timeout_s: float


@dataclass(frozen=True)
class Expect:
    """The outcome a case must have.

    statuses: acceptable response statuses (0 stands for "no response, connection closed").
    closed: True when the proxy must close the connection after answering.
    error_type: the OpenSearch-shaped `error.type` the body must carry.
    origin: "proxy" when the proxy must answer itself (OpenSearch never saw it), "opensearch" when
        the answer must come from OpenSearch (it echoes X-Opaque-Id), "" when either is fine.
    same_as_direct: the same status as sending the bytes to OpenSearch directly, and for errors
        the same body.
    """

    statuses: tuple[int, ...]
    closed: bool | None = None
    error_type: str = ""
    origin: str = ""
    same_as_direct: bool = False

    def __post_init__(self) -> None:
        if self.origin not in ("", "proxy", "opensearch"):
            raise ValueError(f"origin must be '', 'proxy' or 'opensearch', got {self.origin!r}")


@dataclass(frozen=True)
class RawCase:
    """Send `build(target)` as raw bytes to the proxy and check the answer against `expect`."""

    name: str
    family: str
    build: Callable[[AbuseTarget], bytes]
    expect: Expect


@dataclass(frozen=True)
class CustomCase:
    """A case that needs more than one exchange (slow clients): `run(target)` returns its problems."""

    name: str
    family: str
    run: Callable[[AbuseTarget], list[str]]


def http_request(method: str, target: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = (),
                 content_type: str = "application/json", close: bool = True, opaque_id: str = "",
                 host: str = "proxy") -> bytes:
    """A well-formed HTTP/1.1 request in bytes (Content-Length set when there is a body).

    Example:
        >>> http_request("POST", "/i/_search", b"{}", opaque_id="x").split(b"\\r\\n")[2:5]
        [b'X-Opaque-Id: x', b'Content-Type: application/json', b'Content-Length: 2']
    """
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    if opaque_id:
        lines.append(f"{OPAQUE_ID_HEADER}: {opaque_id}")
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def search_request(target: AbuseTarget, body: bytes, params: str = "", index: str | None = None,
                   opaque_id: str = "", headers: tuple[tuple[str, str], ...] = (),
                   content_type: str = "application/json") -> bytes:
    """A POST `_search` on the reranked index (or `index`) with the given raw body.

    Example:
        >>> t = AbuseTarget("http://p:1", "http://o:2", "docs", "wing", None, 1 << 20, 2.0)
        >>> search_request(t, b"{}", "size=1").split(b"\\r\\n")[0]
        b'POST /docs/_search?size=1 HTTP/1.1'
    """
    path = f"/{index or target.index}/_search" + (f"?{params}" if params else "")
    return http_request("POST", path, body, headers=headers, content_type=content_type, opaque_id=opaque_id)


def normal_search(target: AbuseTarget) -> bytes:
    """The ordinary reranked search sent after every case to show the proxy still serves.

    Example:
        >>> t = AbuseTarget("http://p:1", "http://o:2", "docs", "wing", None, 1 << 20, 2.0)
        >>> b'"text": "wing"' in normal_search(t)
        True
    """
    body = json.dumps({"query": {"match": {"text": target.query}}, "size": 3}).encode()
    return search_request(target, body, opaque_id="rel-abuse-normal")
