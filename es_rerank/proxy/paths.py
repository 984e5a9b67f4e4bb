"""Which request paths the proxy relays at all, and how it reads one: segment by segment, decoded.

The upstream address is fixed by configuration; these checks keep a path from steering a request
anywhere else on that server than where its segments say. The path is relayed exactly as it came
(`%2F` in a document id or a date-math index name stays encoded, as OpenSearch expects); decisions
are taken on the decoded segments, the way OpenSearch itself splits and decodes them.

Example:
    >>> check_path("/scifact/_doc/1")
    >>> decoded_segments("/%3Clogs-%7Bnow%2Fd%7D%3E/_search")
    ['', '<logs-{now/d}>', '_search']
    >>> check_path("/scifact/%2e%2e/_cluster/settings")
    Traceback (most recent call last):
    ...
    es_rerank.proxy.httperror.ProxyHTTPError: path segments '.' and '..' are not allowed
"""

from __future__ import annotations

from urllib.parse import unquote

from es_rerank.proxy.httperror import ProxyHTTPError


def decoded_segments(path: str) -> list[str]:
    """The path split on its literal slashes, then each segment percent-decoded (`%2F` stays inside its segment).

    Example:
        >>> decoded_segments("/idx/_doc/http%3A%2F%2Fx.org%2Fp")
        ['', 'idx', '_doc', 'http://x.org/p']
    """
    return [unquote(segment) for segment in path.split("/")]


def check_path(path: str) -> None:
    """Raise 400 (OpenSearch shape) for a path the proxy refuses to relay.

    Encoded slashes and backslashes are data inside one segment and are relayed; a literal
    backslash (not valid in a URL) and dot segments are refused.

    Example:
        >>> check_path("/idx/_doc/a%2Fb%5Cc")
        >>> check_path("/a\\\\b")
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: a literal backslash is not allowed in the path; percent-encode it as %5C
    """
    if not path.startswith("/"):
        raise ProxyHTTPError.bad_request("the request target must be a path starting with '/'")
    if "\\" in path:
        raise ProxyHTTPError.bad_request("a literal backslash is not allowed in the path; percent-encode it as %5C")
    if any(segment in (".", "..") for segment in decoded_segments(path)):
        raise ProxyHTTPError.bad_request("path segments '.' and '..' are not allowed")
