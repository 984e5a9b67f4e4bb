"""The request mix of the load runs: reranked searches, pass-through searches, bulk writes, _count and _cat.

Every request carries a unique `X-Opaque-Id` (OpenSearch echoes it; the relay counts it), and
every bulk item a unique `uid`, half written with `create` and that id, half with auto ids,
so a write sent twice shows either as a conflict or as a second document with the same uid.

Example:
    >>> mix = Workload("r1", "rel-corpus", "rel-writes", ["wing lift", "boundary layer"])
    >>> [mix.request(i).kind for i in range(8)]
    ['rerank', 'passthrough', 'bulk', 'rerank', 'count', 'rerank', 'passthrough', 'bulk']
    >>> mix.request(2).uids
    ('r1-2-0', 'r1-2-1', 'r1-2-2', 'r1-2-3', 'r1-2-4')
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# One cycle of 20 requests: 35% reranked, 20% pass-through, 20% bulk, 15% _count, 10% _cat.
CYCLE = ("rerank", "passthrough", "bulk", "rerank", "count", "rerank", "passthrough", "bulk", "cat", "rerank",
         "count", "rerank", "passthrough", "bulk", "rerank", "cat", "passthrough", "bulk", "rerank", "count")
KINDS = ("rerank", "passthrough", "bulk", "count", "cat")
BULK_ITEMS = 5
PAGE_SIZE = 10


@dataclass(frozen=True)
class LoadItem:
    """One request of the mix; `search` holds the body of a search (to compare with BM25 afterwards)."""

    seq: int
    kind: str
    method: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    opaque_id: str
    uids: tuple[str, ...] = ()
    search: dict | None = None


class Workload:
    """Builds request `i` of a run: deterministic, so a record can always be traced to what was sent."""

    def __init__(self, run_id: str, corpus_index: str, writes_index: str, queries: list[str]) -> None:
        if not queries:
            raise ValueError("the workload needs at least one query text, got none")
        self.run_id = run_id
        self.corpus_index = corpus_index
        self.writes_index = writes_index
        self.queries = queries

    def request(self, i: int) -> LoadItem:
        """Request number `i` of the run.

        Example:
            >>> Workload("r", "c", "w", ["q"]).request(0).path
            '/c/_search'
        """
        kind = CYCLE[i % len(CYCLE)]
        opaque = f"{self.run_id}-{i}"
        headers: tuple[tuple[str, str], ...] = (("X-Opaque-Id", opaque),)
        if kind in ("rerank", "passthrough"):
            search = {"query": {"match": {"text": self.queries[i % len(self.queries)]}},
                      "from": PAGE_SIZE * ((i // len(CYCLE)) % 2), "size": PAGE_SIZE}
            if kind == "passthrough":
                headers += (("X-Rerank", "off"),)
            return LoadItem(i, kind, "POST", f"/{self.corpus_index}/_search", json.dumps(search).encode(),
                            headers + (("Content-Type", "application/json"),), opaque, search=search)
        if kind == "bulk":
            uids = tuple(f"{opaque}-{k}" for k in range(BULK_ITEMS))
            lines = []
            for k, uid in enumerate(uids):
                action = {"create": {"_id": uid}} if k % 2 == 0 else {"index": {}}
                lines += [json.dumps(action), json.dumps({"uid": uid, "request": opaque, "text": f"load write {k}"})]
            body = ("\n".join(lines) + "\n").encode()
            return LoadItem(i, kind, "POST", f"/{self.writes_index}/_bulk", body,
                            headers + (("Content-Type", "application/x-ndjson"),), opaque, uids=uids)
        if kind == "count":
            index = self.corpus_index if i % 2 else self.writes_index
            return LoadItem(i, kind, "GET", f"/{index}/_count", b"", headers, opaque)
        path = "/_cat/health" if i % 2 else f"/_cat/indices/{self.writes_index},{self.corpus_index}?h=index,docs.count"
        return LoadItem(i, kind, "GET", path, b"", headers, opaque)


def writes_index_body() -> dict:
    """Settings and mapping of the index the bulk writes go to (uid is a keyword, to count per uid).

    Example:
        >>> writes_index_body()["mappings"]["properties"]["uid"]
        {'type': 'keyword'}
    """
    return {"settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
            "mappings": {"properties": {"uid": {"type": "keyword"}, "request": {"type": "keyword"},
                                        "text": {"type": "text"}}}}
