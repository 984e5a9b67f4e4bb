"""Approximate kNN over document vectors stored in the engine itself: the mapping and the query.

A bi-encoder's document vectors, written at index time into `VECTOR_FIELD`, let the engine find
what BM25 misses (different words, same meaning); the candidate pool to rerank is then BM25's
top-k together with the kNN top-k. OpenSearch stores them in a `knn_vector` field (the k-NN
plugin) and Elasticsearch in a `dense_vector` field, both searched by HNSW with cosine similarity.

On OpenSearch only the `lucene` engine is offered: the k-NN plugin's Maven Central zip carries no
native libraries, and a `faiss` or `nmslib` field there takes the node down when a document is
written (`UnsatisfiedLinkError`), so those engines are refused here with an error instead.

Example:
    >>> vector_mapping("elasticsearch", 384)["type"], vector_mapping("opensearch", 384)["method"]["engine"]
    ('dense_vector', 'lucene')
    >>> sorted(knn_body("elasticsearch", [0.1, 0.2], 10))
    ['_source', 'knn', 'size']
"""

from __future__ import annotations

from typing import Sequence

from es_rerank.errors import ConfigError
from es_rerank.types import Hit

VECTOR_FIELD = "embedding"
KNN_ENGINES = ("lucene",)   # OpenSearch k-NN engines that run from the Maven Central plugin zip
ENGINES = ("opensearch", "elasticsearch")
# HNSW looks at this many candidates per result: recall near exact search at k = 100.
CANDIDATES_PER_RESULT = 4


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} for vector search", hint=f"expected one of {', '.join(ENGINES)}")


def vector_mapping(engine: str, dim: int, knn_engine: str = "lucene") -> dict:
    """The mapping of the vector field on `engine` for vectors of `dim` floats (cosine).

    Example:
        >>> vector_mapping("opensearch", 8, knn_engine="faiss")
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: OpenSearch k-NN engine 'faiss' is not supported (the k-NN plugin zip from Maven Central carries no native libraries; a faiss or nmslib field takes the node down) (use the lucene engine)
    """
    _check_engine(engine)
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"vector dimension must be a positive integer, got {dim!r}")
    if engine == "elasticsearch":
        return {"type": "dense_vector", "dims": dim, "index": True, "similarity": "cosine"}
    if knn_engine not in KNN_ENGINES:
        raise ConfigError(f"OpenSearch k-NN engine {knn_engine!r} is not supported (the k-NN plugin zip from Maven "
                          f"Central carries no native libraries; a faiss or nmslib field takes the node down)",
                          hint="use the lucene engine")
    return {"type": "knn_vector", "dimension": dim,
            "method": {"name": "hnsw", "engine": knn_engine, "space_type": "cosinesimil"}}


def index_settings(engine: str) -> dict:
    """Index settings a vector field needs (OpenSearch: `index.knn`).

    Example:
        >>> index_settings("opensearch"), index_settings("elasticsearch")
        ({'knn': True}, {})
    """
    _check_engine(engine)
    return {"knn": True} if engine == "opensearch" else {}


def knn_body(engine: str, vector: Sequence[float], k: int, source: bool | Sequence[str] = True) -> dict:
    """The `_search` body for the `k` documents whose vectors are nearest to `vector`.

    Example:
        >>> knn_body("opensearch", [1.0, 0.0], 5)["query"]
        {'knn': {'embedding': {'vector': [1.0, 0.0], 'k': 5}}}
    """
    _check_engine(engine)
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}", hint="e.g. 100")
    values = [float(x) for x in vector]
    body: dict = {"size": k, "_source": source if isinstance(source, bool) else list(source)}
    if engine == "elasticsearch":
        body["knn"] = {"field": VECTOR_FIELD, "query_vector": values, "k": k,
                       "num_candidates": max(k * CANDIDATES_PER_RESULT, 10)}
    else:
        body["query"] = {"knn": {VECTOR_FIELD: {"vector": values, "k": k}}}
    return body


def check_vector_field(client, index: str, dim: int) -> None:
    """Refuse an index whose mapping has no `VECTOR_FIELD` of `dim` floats, before any kNN query is sent.

    Example:
        >>> class Client:
        ...     class indices:
        ...         get_mapping = staticmethod(lambda index: {index: {"mappings": {"properties": {"title": {}}}}})
        >>> check_vector_field(Client(), "scifact", 384)
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: index scifact has no vector field 'embedding' (es-rerank index --dense-model EXPORT writes one; reindex with the bi-encoder whose export embeds the queries)
    """
    mappings = client.indices.get_mapping(index=index)
    for mapping in mappings.values():  # an alias may name several indices: each needs the field
        properties = mapping.get("mappings", {}).get("properties", {})
        field = properties.get(VECTOR_FIELD)
        if field is None:
            raise ConfigError(f"index {index} has no vector field {VECTOR_FIELD!r}",
                              hint="es-rerank index --dense-model EXPORT writes one; reindex with the bi-encoder "
                                   "whose export embeds the queries")
        stored = field.get("dims", field.get("dimension"))
        if stored != dim:
            raise ConfigError(f"index {index} stores {stored}-float vectors in {VECTOR_FIELD!r}, but the query "
                              f"bi-encoder makes {dim}-float ones",
                              hint="embed the queries with the export the index was built with")


def search_knn(client, index: str, engine: str, vector: Sequence[float], k: int,
               source: bool | Sequence[str] = False) -> list[Hit]:
    """The kNN hits in rank order (`Hit.score` is the engine's similarity score)."""
    from es_rerank.engine.bm25_query import hits_from_response

    return hits_from_response(client.search(index=index, body=knn_body(engine, vector, k, source)))
