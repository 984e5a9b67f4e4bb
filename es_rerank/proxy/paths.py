"""Which request paths the proxy relays at all: no dot segments, no encoded slashes, origin-form only.

The upstream address is fixed by configuration; these checks keep a path from steering a request
anywhere else on that server than where its plain segments say.

Example:
    >>> check_path("/scifact/_doc/1")
    >>> check_path("/scifact/%2e%2e/_cluster/settings")
    Traceback (most recent call last):
    ...
    es_rerank.proxy.httperror.ProxyHTTPError: path segments '.' and '..' are not allowed
"""

from __future__ import annotations

from urllib.parse import unquote

from es_rerank.proxy.httperror import ProxyHTTPError


def check_path(path: str) -> None:
    """Raise 400 (OpenSearch shape) for a path the proxy refuses to relay.

    Example:
        >>> check_path("/a%2Fb/_doc/1")
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: encoded slashes or backslashes in the path are not allowed
    """
    if not path.startswith("/"):
        raise ProxyHTTPError(400, "illegal_argument_exception", "the request target must be a path starting with '/'")
    lower = path.lower()
    if "%2f" in lower or "%5c" in lower or "\\" in path:
        raise ProxyHTTPError(400, "illegal_argument_exception", "encoded slashes or backslashes in the path are not allowed")
    if any(segment in (".", "..") for segment in unquote(path).split("/")):
        raise ProxyHTTPError(400, "illegal_argument_exception", "path segments '.' and '..' are not allowed")
