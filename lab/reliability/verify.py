"""After a fault run, check against OpenSearch itself: writes kept exactly once, pages equal to BM25.
"""

from __future__ import annotations

import json
from collections import Counter

from lab.reliability.openloop import Record
from lab.reliability.workload import Workload

COMPOSITE_PAGE = 5000
FALLBACK_HEADERS = ("fallback", "degraded")


def uid_counts(node, index: str) -> Counter:
    """Documents per `uid` in the writes index, read with a composite aggregation after a refresh.
    """
    node.call("POST", f"/{index}/_refresh")
    counts: Counter = Counter()
    after = None
    while True:
        composite = {"size": COMPOSITE_PAGE, "sources": [{"uid": {"terms": {"field": "uid"}}}]}
        if after is not None:
            composite["after"] = after
        response = node.call("POST", f"/{index}/_search", {"size": 0, "aggs": {"uids": {"composite": composite}}})
        agg = response["aggregations"]["uids"]
        for bucket in agg["buckets"]:
            counts[bucket["key"]["uid"]] = bucket["doc_count"]
        after = agg.get("after_key")
        if not agg["buckets"] or after is None:
            return counts


def write_findings(records: list[Record], counts: Counter, relay_ids: Counter, workload: Workload) -> dict:
    """Lost writes (acknowledged, not in the index), duplicates (a uid stored twice, or a create refused
    as already done), bulk requests OpenSearch got more than once, and writes of unknown fate that landed.

    Example:
        >>> write_findings([], Counter(), Counter(), Workload("r", "c", "w", ["q"]))["lost_writes"]
        0
    """
    bulks = [r for r in records if r.kind == "bulk"]
    acked = {uid for r in bulks for uid in r.acked}
    conflicts = [uid for r in bulks for uid in r.conflicts]
    sent_uids = {uid for r in bulks for uid in workload.request(r.seq).uids}
    unknown = sent_uids - acked - set(conflicts)
    return {
        "bulk_requests": len(bulks),
        "acknowledged_writes": len(acked),
        "lost_writes": sum(1 for uid in acked if counts.get(uid, 0) == 0),
        "duplicate_writes": sum(n - 1 for n in counts.values() if n > 1) + len(conflicts),
        "bulk_requests_reaching_opensearch_twice": sum(
            1 for r in bulks if relay_ids.get(workload.request(r.seq).opaque_id, 0) > 1),
        "unacknowledged_writes_that_landed": sum(1 for uid in unknown if counts.get(uid, 0) > 0),
        "stray_documents": sum(n for uid, n in counts.items() if uid not in sent_uids),
    }


def page_findings(records: list[Record], node, workload: Workload, window: int) -> dict:
    """Compare searches with OpenSearch's BM25, queried directly now that the run is over.

    Fallback and degraded answers, and every pass-through answer, must be exactly the BM25 page;
    a reranked page must hold distinct hits from the BM25 window.
    """
    windows: dict[str, list[str]] = {}
    found: Counter[str] = Counter()
    examples = []
    for record in records:
        if record.status != 200 or record.kind not in ("rerank", "passthrough"):
            continue
        search = workload.request(record.seq).search
        start, size = search["from"], search["size"]
        key = json.dumps(search["query"], sort_keys=True)
        if key not in windows:
            body = {"query": search["query"], "from": 0, "size": max(window, start + size), "_source": False}
            windows[key] = [h["_id"] for h in node.call("POST", f"/{workload.corpus_index}/_search", body)["hits"]["hits"]]
        bm25 = windows[key]
        rerank = record.headers.get("x-rerank", "")
        if record.kind == "passthrough" or rerank in FALLBACK_HEADERS:
            found["bm25_pages_checked"] += 1
            if list(record.hit_ids) != bm25[start: start + size]:
                found["bm25_page_mismatches"] += 1
                examples.append(f"#{record.seq} {record.kind}/{rerank or 'none'}: {list(record.hit_ids)[:5]} vs "
                                f"BM25 {bm25[start: start + 5]}")
        elif rerank == "reranked":
            found["reranked_pages_checked"] += 1
            if len(set(record.hit_ids)) != len(record.hit_ids) or not set(record.hit_ids) <= set(bm25):
                found["reranked_pages_outside_the_window"] += 1
                examples.append(f"#{record.seq} reranked page {list(record.hit_ids)[:5]} not within the BM25 window")
    return {"bm25_pages_checked": found["bm25_pages_checked"],
            "bm25_page_mismatches": found["bm25_page_mismatches"],
            "reranked_pages_checked": found["reranked_pages_checked"],
            "reranked_pages_outside_the_window": found["reranked_pages_outside_the_window"],
            "examples": examples[:10]}
