"""Errors the proxy answers itself, in the upstream engine's error shape.

Every such error is one row of `STATUS_TABLE` (its HTTP status and OpenSearch error type) and
is built by the named constructor of that row, so a status and its type never drift apart.
Elasticsearch's error object has the same shape; where its type for the same fault has another
name, `ELASTICSEARCH_TYPES` gives it (`ProxyHTTPError.type_for`).

Example:
    >>> err = ProxyHTTPError.payload_too_large("body is 20 bytes, limit 10")
    >>> err.status, loads(error_body(err.status, err.error_type, err.reason))["error"]["type"]
    (413, 'content_too_long_exception')
"""

from __future__ import annotations

import logging

from es_rerank.engine.engine_profile import ELASTICSEARCH, OPENSEARCH
from es_rerank.errors import EsRerankError
from es_rerank.proxy.jsonio import dumps, loads  # noqa: F401 (loads: doctest)
from es_rerank.proxy.metrics import ProxyMetrics

log = logging.getLogger("es_rerank.proxy")

# kind -> (HTTP status, OpenSearch error type); each kind has the ProxyHTTPError constructor of its name.
# The types are the ones OpenSearch itself answers with for the same fault, where it has one.
STATUS_TABLE: dict[str, tuple[int, str]] = {
    "bad_request": (400, "illegal_argument_exception"),
    "parse_error": (400, "parse_exception"),  # the body's bytes: truncated, bad gzip
    "parsing_error": (400, "parsing_exception"),  # the body's structure: nested too deep
    "not_found": (404, "resource_not_found_exception"),
    "method_not_allowed": (405, "method_not_allowed_exception"),
    "request_timeout": (408, "timeout_exception"),
    "payload_too_large": (413, "content_too_long_exception"),
    "unsupported_media_type": (415, "illegal_argument_exception"),
    "rejected": (429, "rejected_execution_exception"),  # the shed status is configurable (429 or 503)
    "internal": (500, "proxy_internal_exception"),
    "upstream_unavailable": (502, "upstream_unavailable_exception"),
    "upstream_timeout": (504, "upstream_timeout_exception"),
}
# kind -> Elasticsearch's type, where it differs from OpenSearch's (EsRejectedExecutionException).
ELASTICSEARCH_TYPES: dict[str, str] = {
    "rejected": "es_rejected_execution_exception",
}


class ProxyHTTPError(EsRerankError):
    """A request the proxy answers with an error of its own (never for a model failure).

    Build it with the constructor named for its kind in `STATUS_TABLE`. `headers` are extra
    response headers such as `Retry-After`; `close` asks to drop the connection.

    Example:
        >>> err = ProxyHTTPError.rejected("at the limit", status=503, retry_after_s=2)
        >>> err.status, err.error_type, err.headers
        (503, 'rejected_execution_exception', {'Retry-After': '2'})
    """

    def __init__(self, status: int, error_type: str, reason: str, *, headers: dict | None = None,
                 close: bool = False, kind: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.kind = kind
        self.reason = reason
        self.headers = dict(headers or {})
        self.close = close

    @classmethod
    def of_kind(cls, kind: str, reason: str, *, status: int | None = None, headers: dict | None = None,
                close: bool = False) -> ProxyHTTPError:
        """The error of a `STATUS_TABLE` row; `status` overrides the row's only where the kind allows a choice.

        Example:
            >>> ProxyHTTPError.of_kind("upstream_timeout", "slow").status
            504
            >>> ProxyHTTPError.of_kind("teapot", "short and stout")
            Traceback (most recent call last):
            ...
            KeyError: "no proxy error kind 'teapot'; STATUS_TABLE has bad_request, parse_error, parsing_error, not_found, method_not_allowed, request_timeout, payload_too_large, unsupported_media_type, rejected, internal, upstream_unavailable, upstream_timeout"
        """
        if kind not in STATUS_TABLE:
            raise KeyError(f"no proxy error kind {kind!r}; STATUS_TABLE has {', '.join(STATUS_TABLE)}")
        default_status, error_type = STATUS_TABLE[kind]
        return cls(status or default_status, error_type, reason, headers=headers, close=close, kind=kind)

    def type_for(self, engine: str = OPENSEARCH) -> str:
        """The error type as `engine` ('opensearch' or 'elasticsearch') names the same fault.

        Example:
            >>> err = ProxyHTTPError.rejected("at the limit", status=429, retry_after_s=1)
            >>> err.type_for("opensearch"), err.type_for("elasticsearch")
            ('rejected_execution_exception', 'es_rejected_execution_exception')
        """
        return ELASTICSEARCH_TYPES.get(self.kind, self.error_type) if engine == ELASTICSEARCH else self.error_type

    def body(self, engine: str = OPENSEARCH) -> bytes:
        """The error as the JSON body `engine` would answer.

        Example:
            >>> loads(ProxyHTTPError.bad_request("no").body("elasticsearch"))["error"]["type"]
            'illegal_argument_exception'
        """
        return error_body(self.status, self.type_for(engine), self.reason)

    @classmethod
    def bad_request(cls, reason: str) -> ProxyHTTPError:
        """400: a request the proxy refuses (a bad path, a bad `ext.rerank`)."""
        return cls.of_kind("bad_request", reason)

    @classmethod
    def parse_error(cls, reason: str, *, close: bool = False) -> ProxyHTTPError:
        """400: body bytes that cannot be read (ended early, not valid gzip)."""
        return cls.of_kind("parse_error", reason, close=close)

    @classmethod
    def parsing_error(cls, reason: str, *, close: bool = False) -> ProxyHTTPError:
        """400: a body whose structure the proxy refuses (nested past the depth cap)."""
        return cls.of_kind("parsing_error", reason, close=close)

    @classmethod
    def not_found(cls, reason: str) -> ProxyHTTPError:
        """404: no such proxy endpoint."""
        return cls.of_kind("not_found", reason)

    @classmethod
    def method_not_allowed(cls, reason: str) -> ProxyHTTPError:
        """405: a proxy endpoint asked with the wrong method."""
        return cls.of_kind("method_not_allowed", reason)

    @classmethod
    def request_timeout(cls, reason: str) -> ProxyHTTPError:
        """408: the client's body did not arrive in time; the connection closes."""
        return cls.of_kind("request_timeout", reason, close=True)

    @classmethod
    def payload_too_large(cls, reason: str) -> ProxyHTTPError:
        """413: a body over the size limit; the connection closes so the unread rest is never buffered."""
        return cls.of_kind("payload_too_large", reason, close=True)

    @classmethod
    def unsupported_media_type(cls, reason: str) -> ProxyHTTPError:
        """415: a Content-Encoding the proxy cannot decode."""
        return cls.of_kind("unsupported_media_type", reason)

    @classmethod
    def rejected(cls, reason: str, *, status: int, retry_after_s: int) -> ProxyHTTPError:
        """429 or 503 (`status`): the proxy sheds load; `Retry-After` says when to come back."""
        return cls.of_kind("rejected", reason, status=status, headers={"Retry-After": str(retry_after_s)})

    @classmethod
    def internal(cls, reason: str) -> ProxyHTTPError:
        """500: a bug in the proxy; its log has the traceback."""
        return cls.of_kind("internal", reason)

    @classmethod
    def upstream_unavailable(cls, reason: str) -> ProxyHTTPError:
        """502: OpenSearch cannot be reached or broke the connection."""
        return cls.of_kind("upstream_unavailable", reason)

    @classmethod
    def upstream_timeout(cls, reason: str) -> ProxyHTTPError:
        """504: OpenSearch did not answer in time."""
        return cls.of_kind("upstream_timeout", reason)


def error_body(status: int, error_type: str, reason: str) -> bytes:
    """`error_object` as the JSON bytes of a response body.

    Example:
        >>> loads(error_body(502, "upstream_unavailable_exception", "down"))["status"]
        502
    """
    return dumps(error_object(status, error_type, reason))


def error_object(status: int, error_type: str, reason: str) -> dict:
    """`{"error": {"root_cause", "type", "reason"}, "status"}`, the shape OpenSearch's and Elasticsearch's
    own errors have (a whole response, or one failed search among an `_msearch`'s `responses`).

    Example:
        >>> error_object(500, "proxy_internal_exception", "bug")["error"]["root_cause"]
        [{'type': 'proxy_internal_exception', 'reason': 'bug'}]
    """
    cause = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def report_bug(metrics: ProxyMetrics, stage: str, exc: BaseException, where: str) -> ProxyHTTPError:
    """Log an unexpected exception with its traceback, count it in es_rerank_bugs_total{stage}, return the 500.

    A bug is never served as a BM25 fallback: those are the designed degradations (model error,
    timeout, out of memory, overload), and a quiet fallback would hide a bug behind them.

    Example:
        >>> metrics = ProxyMetrics()
        >>> report_bug(metrics, "score", KeyError("text"), "_search on docs").status, metrics.bugs.value(("score",))
        (500, 1.0)
    """
    log.error("proxy bug in stage %s on %s: %s: %s", stage, where, type(exc).__name__, exc, exc_info=exc)
    metrics.bugs.inc((stage,))
    return ProxyHTTPError.internal("the rerank proxy failed unexpectedly; see its log")
