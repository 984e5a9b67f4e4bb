"""Errors the proxy answers itself, always in OpenSearch's error shape.

Example:
    >>> err = ProxyHTTPError(413, "content_too_long_exception", "body is 20 bytes, limit 10")
    >>> loads(error_body(err.status, err.error_type, err.reason))["error"]["type"]
    'content_too_long_exception'
"""

from __future__ import annotations

from es_rerank.errors import EsRerankError
from es_rerank.proxy.jsonio import dumps, loads  # noqa: F401 (loads: doctest)

JSON_TYPE = "application/json; charset=UTF-8"  # what OpenSearch labels its JSON answers


class ProxyHTTPError(EsRerankError):
    """A request the proxy answers with an error of its own (never for a model failure).

    `headers` are extra response headers such as `Retry-After`; `close` asks to drop the connection.
    """

    def __init__(self, status: int, error_type: str, reason: str, *, headers: dict | None = None,
                 close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.headers = dict(headers or {})
        self.close = close


def error_body(status: int, error_type: str, reason: str) -> bytes:
    """`{"error": {"root_cause", "type", "reason"}, "status"}`, the shape OpenSearch's own errors have.

    Example:
        >>> loads(error_body(502, "upstream_unavailable_exception", "down"))["status"]
        502
    """
    cause = {"type": error_type, "reason": reason}
    return dumps({"error": {"root_cause": [cause], **cause}, "status": status})
