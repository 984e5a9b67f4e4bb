"""Names shared by the proxy, its clients and `es-rerank ab`: headers, paths, variant names.

Kept in one place so that changing a header name is a one-line edit.

Example:
    >>> rerank_off_headers()
    {'X-Rerank': 'off'}
"""

from __future__ import annotations

# Request header that switches reranking off for one request (proxy contract, line 12).
RERANK_SWITCH_HEADER = "X-Rerank"
RERANK_OFF_VALUE = "off"

# Response headers the proxy sets (it takes these names from here, so `ab` reads them without importing it).
# reranked | fallback (model error/timeout/OOM) | degraded (overload) | interleaved or bm25 (online A/B arms)
OUTCOME_HEADER = "X-Rerank"
REASON_HEADER = "X-Rerank-Reason"          # why a search fell back or was degraded: timeout, oom, error, overload
BM25_OUTCOMES = ("fallback", "degraded", "bm25")   # outcomes where the client got the BM25 order
VARIANT_HEADER = "X-Rerank-Variant"        # which arm served this search: bm25, rerank or interleave
QUERY_ID_HEADER = "X-Rerank-Query-Id"      # UBI query_id of this search; click events carry it back

EVENTS_PATH = "/_rerank/events"

# Variant (arm) names as they appear in headers, the decision log and reports.
BM25 = "bm25"
RERANK = "rerank"
INTERLEAVE = "interleave"
VARIANTS = (BM25, RERANK, INTERLEAVE)
# Team of an interleaved hit past the rerank window: both lists hold it there in BM25 order, so a
# click on it credits neither team.
SHARED = "shared"

# UBI `application` value for lines es-rerank writes.
APPLICATION = "es-rerank"


def rerank_off_headers() -> dict[str, str]:
    """Request headers that make the proxy return the plain BM25 page."""
    return {RERANK_SWITCH_HEADER: RERANK_OFF_VALUE}
