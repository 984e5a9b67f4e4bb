"""Candidate pools that hold what BM25 misses: BM25's top-k together with the engine's kNN top-k.

A reranker can only promote what its pool holds. The union pool keeps BM25's hits in BM25 order
and appends the kNN hits BM25 did not return, in kNN order. Every document carries a BM25 score
(`bm25_query.bm25_scores_of`: 0 when it matches no query term), so fusion and the BM25 baseline
read the same columns as on a plain BM25 pool: ranked by BM25 alone, the union gives BM25's own
top-k back.

Example:
    >>> union_ids(["a", "b"], ["c", "a", "d"])
    ['a', 'b', 'c', 'd']
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from es_rerank.data.candidates import FORMAT, VERSION, CandidateSet, QueryCandidates, natural_key
from es_rerank.engine.bm25_query import DEFAULT_FIELDS, bm25_scores_of, search_bm25
from es_rerank.engine.knn_query import search_knn
from es_rerank.errors import ConfigError

POOL = "bm25+knn"


def union_ids(bm25_ids: Sequence[str], knn_ids: Sequence[str]) -> list[str]:
    """BM25's ids in order, then the kNN ids BM25 did not return, in kNN order."""
    return list(dict.fromkeys([*bm25_ids, *knn_ids]))


def collect_union_candidates(client, index: str, engine: str, queries: Mapping[str, str],
                             vectors: Mapping[str, Sequence[float]], depth: int,
                             fields: Sequence[str] = DEFAULT_FIELDS, meta: Mapping[str, object] | None = None,
                             progress: Callable[[Sequence], Iterable] | None = None) -> CandidateSet:
    """For each query, BM25's top `depth` ∪ the kNN top `depth` of its vector, with BM25 scores for all.

    `vectors` holds each query's embedding from the bi-encoder whose document vectors the index
    stores (`es-rerank index --dense-model`). The document text is `Hit.text(fields)`, the text
    the proxy reranks.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"candidate depth must be a positive integer, got {depth!r}", hint="e.g. 100")
    missing = [query_id for query_id in queries if query_id not in vectors]
    if missing:
        raise ConfigError(f"{len(missing)} queries have no vector (first: {missing[0]!r})",
                          hint="embed every query with the bi-encoder the index's vectors came from")
    fields = tuple(fields)
    docs: dict[str, str] = {}
    result = []
    items = sorted(queries.items(), key=lambda item: natural_key(item[0]))
    for query_id, text in (progress(items) if progress else items):
        bm25 = search_bm25(client, index, text, depth, fields, source=list(fields))
        knn = search_knn(client, index, engine, vectors[query_id], depth, source=list(fields))
        for hit in (*bm25, *knn):
            docs.setdefault(hit.doc_id, hit.text(fields))
        ids = union_ids([h.doc_id for h in bm25], [h.doc_id for h in knn])
        scores = {h.doc_id: h.score for h in bm25}
        knn_only = [doc_id for doc_id in ids if doc_id not in scores]
        scores.update(bm25_scores_of(client, index, text, knn_only, fields))
        result.append(QueryCandidates(query_id, text, ids,
                                      {"bm25": np.array([scores[d] for d in ids], dtype=np.float64)}))
    full_meta = {"type": "meta", "format": FORMAT, "version": VERSION, **dict(meta or {}), "index": index,
                 "depth": depth, "pool": POOL, "fields": list(fields),
                 "models": dict((meta or {}).get("models", {}))}  # type: ignore[call-overload]
    return CandidateSet(full_meta, docs, result)
