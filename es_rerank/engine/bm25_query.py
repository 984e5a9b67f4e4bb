"""The BM25 query es-rerank sends for a query text, shared by the quickstart, `mine` and `ab`.

One builder everywhere means the negatives `mine` trains on come from the same retriever that
the served searches use.

Example:
    >>> bm25_body("gene therapy", size=10)["query"]["multi_match"]["fields"]
    ['title', 'text']
"""

from __future__ import annotations

from typing import Sequence

from es_rerank.types import Hit

DEFAULT_FIELDS = ("title", "text")
# `cross_fields` scores title and text as one blended field. On SciFact *train* it beat
# `best_fields` and `most_fields` (see docs/benchmarks.md); the test split was not used to choose.
MATCH_TYPE = "cross_fields"


def bm25_body(text: str, size: int, fields: Sequence[str] = DEFAULT_FIELDS, source: bool | Sequence[str] = True) -> dict:
    """The `_search` body for a BM25 query over `fields`.

    Example:
        >>> bm25_body("x", 5, source=False)["_source"]
        False
    """
    return {
        "query": {"multi_match": {"query": text, "fields": list(fields), "type": MATCH_TYPE}},
        "size": size,
        "_source": source if isinstance(source, bool) else list(source),
    }


def search_bm25(client, index: str, text: str, size: int, fields: Sequence[str] = DEFAULT_FIELDS,
                source: bool | Sequence[str] = True) -> list[Hit]:
    """Run the BM25 query and return its hits in rank order.
    """
    response = client.search(index=index, body=bm25_body(text, size, fields, source))
    return hits_from_response(response)


def hits_from_response(response: dict) -> list[Hit]:
    """Turn an OpenSearch `_search` response into `Hit`s, keeping rank order."""
    return [Hit(str(h["_id"]), float(h.get("_score") or 0.0), h.get("_source") or {})
            for h in response.get("hits", {}).get("hits", [])]
