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


def bm25_scores_of(client, index: str, text: str, doc_ids: Sequence[str],
                   fields: Sequence[str] = DEFAULT_FIELDS) -> dict[str, float]:
    """BM25 scores of `doc_ids` for `text`, from the served query restricted to those ids.

    A document that matches no query term is absent from the answer: its BM25 score is 0.
    Lets a pool that holds documents BM25 did not rank (kNN hits) carry a BM25 score for each.
    """
    ids = list(dict.fromkeys(doc_ids))
    if not ids:
        return {}
    body = bm25_body(text, len(ids), fields, source=False)
    body["query"] = {"bool": {"must": [body["query"]], "filter": [{"ids": {"values": ids}}]}}
    scores = {hit.doc_id: hit.score for hit in hits_from_response(client.search(index=index, body=body))}
    return {doc_id: scores.get(doc_id, 0.0) for doc_id in ids}


def hits_from_response(response: dict) -> list[Hit]:
    """Turn an OpenSearch `_search` response into `Hit`s, keeping rank order."""
    return [Hit(str(h["_id"]), float(h.get("_score") or 0.0), h.get("_source") or {})
            for h in response.get("hits", {}).get("hits", [])]
