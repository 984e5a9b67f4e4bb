"""Sort every answer of a fault run into an acceptable class or a finding.

Acceptable: a 2xx carrying our own `X-Opaque-Id` back; an explicit 429/503 with `Retry-After`;
OpenSearch's own error (it echoes `X-Opaque-Id`); the proxy's 502/504 in OpenSearch's shape
while an upstream fault lasts (plus `grace_s`); connection refused while the proxy is down for
its restart; a pooled connection closed (or reset) by the draining proxy before it read the
request, provided the relay shows the request never reached OpenSearch (counted apart). Anything else is a finding: resets, truncated bodies,
timeouts, hangs beyond `hang_s`, answers with someone else's `X-Opaque-Id`, other 5xx.

Example:
    >>> record = Record(0, "cat", due=0.0, sent=0.0, done=0.1, status=200, headers={"x-opaque-id": "r-0"})
    >>> classify(record, "r-0", [], relay_seen=1, grace_s=3.0, hang_s=10.0)
    'ok'
"""

from __future__ import annotations

from lab.reliability.faults import UPSTREAM_FAULTS, FaultWindow
from lab.reliability.openloop import Record

ACCEPTABLE = ("ok", "shed", "opensearch_error", "upstream_fault_error", "proxy_down", "closed_unread_at_drain")
PROXY_UPSTREAM_ERRORS = ("upstream_unavailable_exception", "upstream_timeout_exception")


def overlaps(record: Record, window: FaultWindow, grace_s: float) -> bool:
    """Whether the request was open at any time during the window (extended by `grace_s`).

    Example:
        >>> overlaps(Record(0, "cat", 5.0, 5.0, 5.5), FaultWindow("relay_reset", 1.0, 3.0), grace_s=2.5)
        True
    """
    start = record.sent or record.due
    end = record.done or start
    return start <= window.ended + grace_s and end >= window.began


def classify(record: Record, opaque_id: str, windows: list[FaultWindow], relay_seen: int, grace_s: float,
             hang_s: float) -> str:
    """One of ACCEPTABLE, or a short description of what is wrong.

    Example:
        >>> r = Record(1, "bulk", 0.0, 0.0, 0.2, status=502, error_type="upstream_unavailable_exception")
        >>> classify(r, "r-1", [], relay_seen=0, grace_s=3.0, hang_s=10.0)
        'proxy 502 upstream_unavailable_exception outside any upstream fault'
    """
    if record.skipped:
        return "not sent: the load generator had too many requests open"
    if record.done - record.sent > hang_s:
        return f"hang: answered after {record.done - record.sent:.1f}s (bound {hang_s:g}s)"
    active = {w.kind for w in windows if overlaps(record, w, grace_s)}
    if record.client_error:
        return _client_error(record, active, relay_seen)
    echoed = record.headers.get("x-opaque-id")
    if echoed is not None and echoed != opaque_id:
        return f"answer carries another request's X-Opaque-Id {echoed!r}"
    if 200 <= record.status < 300:
        return "ok" if echoed == opaque_id else f"{record.status} without our X-Opaque-Id echoed"
    if echoed == opaque_id:
        return "opensearch_error"
    if record.status in (429, 503) and "retry-after" in record.headers:
        return "shed"
    if record.status in (502, 504) and record.error_type in PROXY_UPSTREAM_ERRORS:
        if active & UPSTREAM_FAULTS:
            return "upstream_fault_error"
        return f"proxy {record.status} {record.error_type} outside any upstream fault"
    return f"proxy answered {record.status} {record.error_type or ''}".strip()


def _client_error(record: Record, active: set[str], relay_seen: int) -> str:
    if "proxy_sigterm" in active and record.client_error == "connect_refused":
        return "proxy_down"
    if "proxy_sigterm" in active and record.client_error in ("disconnected", "reset", "broken_pipe") and relay_seen == 0:
        # A request sent on a pooled connection just as the draining proxy closed it: never read, never
        # relayed (the relay did not see it), so it had no effect; HTTP/1.1 keep-alive cannot rule this out.
        return "closed_unread_at_drain"
    where = f" during {sorted(active)}" if active else ""
    reached = ", after OpenSearch got the request" if relay_seen else ""
    return f"client saw {record.client_error}{where}{reached}"
