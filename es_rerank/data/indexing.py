"""Bulk-load a BEIR-layout corpus into an OpenSearch or Elasticsearch index with a BM25 mapping.

The mapping analyses `title` and `text` with the built-in `english` analyzer: standard
tokenizer, possessive removal, lowercasing, English stop words and the Porter stemmer.
Stemming matters for scientific claims ("activates" must match "activation"), and it is what
BEIR's own Elasticsearch baseline uses, so our BM25 figures compare with theirs. A
distribution without the analysis-common module (Elasticsearch's integ-test zip) has no
`english`; there the mapping uses `stop` (lowercasing and English stop words, no stemming)
and the report carries a one-line warning saying so.

Documents are written with the corpus `_id` as their OpenSearch `_id`, so a re-run
overwrites instead of duplicating. With `vectors` (a bi-encoder's `embed`), each document also
gets its vector in `knn_query.VECTOR_FIELD`, embedded from title and text, for kNN candidates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from es_rerank.data.beir import BadLine, Document, iter_corpus
from es_rerank.engine.engine_profile import EngineProfile, detect
from es_rerank.engine.knn_query import VECTOR_FIELD, index_settings, vector_mapping
from es_rerank.errors import DatasetError, IndexingError

ANALYZER = "english"
# The best analyzer every distribution has: stop words, but no stemming.
FALLBACK_ANALYZER = "stop"
TEXT_FIELDS = ("title", "text")
BULK_CHUNK = 500


@dataclass(frozen=True)
class DocumentVectors:
    """How documents get their vectors at index time: a bi-encoder's `embed` and its dimension."""

    embed: Callable[[Sequence[str]], np.ndarray]
    dim: int


def embedded_text(doc: Document) -> str:
    """The text a document's vector is made from: title and text, as the reranker reads them."""
    return f"{doc.title} {doc.text}".strip()


def choose_analyzer(profile: EngineProfile) -> tuple[str, str | None]:
    """The best analyzer `profile`'s cluster has, and a one-line warning when it is not `english`.

    Example:
        >>> choose_analyzer(EngineProfile("opensearch", "3.5.0", english_analyzer=True))
        ('english', None)
        >>> analyzer, warning = choose_analyzer(EngineProfile("elasticsearch", "9.2.0", english_analyzer=False))
        >>> analyzer, warning.split(";")[0]
        ('stop', 'Elasticsearch 9.2.0 has no english analyzer (its distribution lacks the analysis-common module)')
    """
    if profile.english_analyzer:
        return ANALYZER, None
    return FALLBACK_ANALYZER, (f"{profile.describe()} has no {ANALYZER} analyzer (its distribution lacks the "
                               f"analysis-common module); indexing with {FALLBACK_ANALYZER}: stop words but no "
                               f"stemming, so BM25 scores differ from an {ANALYZER}-analyzed index")


def index_body(shards: int = 1, replicas: int = 0, analyzer: str = ANALYZER, vector_dim: int | None = None,
               engine: str = "opensearch") -> dict:
    """Settings and mapping for a corpus index (with a vector field when `vector_dim` is given).

    Example:
        >>> index_body()["mappings"]["properties"]["text"]
        {'type': 'text', 'analyzer': 'english'}
        >>> index_body(analyzer="stop")["mappings"]["properties"]["title"]["analyzer"]
        'stop'
        >>> body = index_body(vector_dim=384, engine="opensearch")
        >>> body["settings"]["index"]["knn"], body["mappings"]["properties"]["embedding"]["dimension"]
        (True, 384)
    """
    properties: dict = {name: {"type": "text", "analyzer": analyzer} for name in TEXT_FIELDS}
    settings: dict = {"number_of_shards": shards, "number_of_replicas": replicas}
    if vector_dim is not None:
        properties[VECTOR_FIELD] = vector_mapping(engine, vector_dim)
        settings.update(index_settings(engine))
    return {"settings": {"index": settings}, "mappings": {"properties": properties}}


@dataclass
class IndexReport:
    """What one `index_corpus` run did."""

    index: str
    indexed: int = 0
    index_count: int = 0
    created: bool = False
    bad_lines: list[BadLine] = field(default_factory=list)
    analyzer: str = ANALYZER
    warning: str | None = None  # set when the cluster lacks `english` and `analyzer` is a fallback


@dataclass
class CorpusScan:
    """A first pass over the corpus: how many documents, distinct ids, and bad lines."""

    documents: int = 0
    distinct_ids: set[str] = field(default_factory=set)
    bad_lines: list[BadLine] = field(default_factory=list)


def scan_corpus(dataset: str | Path) -> CorpusScan:
    """Read the corpus once to find bad lines before anything is written."""
    scan = CorpusScan()
    for item in iter_corpus(dataset):
        if isinstance(item, BadLine):
            scan.bad_lines.append(item)
        else:
            scan.documents += 1
            scan.distinct_ids.add(item.doc_id)
    return scan


def index_corpus(
    client,
    dataset: str | Path,
    index: str,
    recreate: bool = False,
    skip_bad: bool = False,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    vectors: DocumentVectors | None = None,
) -> IndexReport:
    """Index every document of `dataset` into `index` and verify the index count afterwards.

    Nothing is written when the corpus has a malformed line and `skip_bad` is False, or when
    `index` exists with a different mapping and `recreate` is False.
    """
    scan = scan_corpus(dataset)
    if scan.bad_lines and not skip_bad:
        first = scan.bad_lines[0]
        more = f" and {len(scan.bad_lines) - 1} more" if len(scan.bad_lines) > 1 else ""
        raise DatasetError(f"malformed corpus line {first}{more}; nothing was indexed",
                           hint="fix the line, or pass --skip-bad to skip malformed lines")
    if scan.documents == 0:
        raise DatasetError(f"the corpus in {dataset} holds no documents")

    profile = detect(client)
    analyzer, warning = choose_analyzer(profile)
    report = IndexReport(index=index, bad_lines=scan.bad_lines, analyzer=analyzer, warning=warning)
    body = index_body(analyzer=analyzer, vector_dim=vectors.dim if vectors else None, engine=profile.engine)
    report.created = prepare_index(client, index, recreate, analyzer, body)
    docs: Iterable[Document] = (item for item in iter_corpus(dataset) if isinstance(item, Document))
    if progress is not None:
        docs = progress(docs, scan.documents)
    report.indexed = _bulk_index(client, index, docs, vectors)
    client.indices.refresh(index=index)
    report.index_count = client.count(index=index)["count"]
    if report.index_count != len(scan.distinct_ids):
        raise IndexingError(
            f"index {index} holds {report.index_count} documents but the corpus has "
            f"{len(scan.distinct_ids)} distinct ids",
            hint="the index holds documents from elsewhere; pass --recreate to rebuild it from this corpus",
        )
    return report


def prepare_index(client, index: str, recreate: bool, analyzer: str = ANALYZER, body: dict | None = None) -> bool:
    """Create `index` with our mapping (`body`, default `index_body(analyzer=...)`); True when it was
    created. Refuses a foreign mapping."""
    body = body or index_body(analyzer=analyzer)
    exists = client.indices.exists(index=index)
    if exists and recreate:
        client.indices.delete(index=index)
        exists = False
    if exists:
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]
        if VECTOR_FIELD in mapping.get("properties", {}) and VECTOR_FIELD not in body["mappings"]["properties"]:
            # each document would be written again without its vector: the index's kNN half would be gone
            raise IndexingError(
                f"index {index} holds document vectors ({VECTOR_FIELD!r}), and indexing without a bi-encoder "
                "would write every document again without its vector; nothing was written",
                hint="pass --dense-model EXPORT (the bi-encoder the vectors came from), or --recreate to rebuild "
                     "the index without vectors")
        problems = mapping_differences(mapping, analyzer, body["mappings"]["properties"])
        if problems:
            raise IndexingError(
                f"index {index} exists with a different mapping: {'; '.join(problems)}",
                hint="pass --recreate to delete and rebuild it, or choose another --index",
            )
        return False
    client.indices.create(index=index, body=body)
    return True


def mapping_differences(existing: dict, analyzer: str = ANALYZER, wanted: dict | None = None) -> list[str]:
    """Ways an existing mapping differs from ours, as readable strings (empty when equal).

    Example:
        >>> mapping_differences({"properties": {"title": {"type": "keyword"}}})
        ['title is {"type": "keyword"}, expected text with analyzer english', 'text is missing']
    """
    import json

    wanted = wanted or index_body(analyzer=analyzer)["mappings"]["properties"]
    have = existing.get("properties", {})
    problems = []
    for name, spec in wanted.items():
        if name not in have:
            problems.append(f"{name} is missing")
        elif name == VECTOR_FIELD:
            if not _holds(have[name], spec):  # the similarity too: vectors compared another way rank kNN hits otherwise
                problems.append(f"{name} is {json.dumps(have[name], sort_keys=True)}, "
                                f"expected {json.dumps(spec, sort_keys=True)}")
        elif {k: have[name].get(k) for k in spec} != spec:
            problems.append(f"{name} is {json.dumps(have[name], sort_keys=True)}, expected text with analyzer {analyzer}")
    return problems


def _holds(have: dict, wanted: dict) -> bool:
    """Whether mapping `have` has every setting of `wanted`, nested ones too (the engine adds defaults).

    Example:
        >>> _holds({"type": "knn_vector", "method": {"space_type": "l2", "engine": "lucene"}},
        ...        {"type": "knn_vector", "method": {"space_type": "cosinesimil"}})
        False
    """
    for key, value in wanted.items():
        if isinstance(value, dict):
            if not isinstance(have.get(key), dict) or not _holds(have[key], value):
                return False
        elif have.get(key) != value:
            return False
    return True


def _bulk_index(client, index: str, docs: Iterable[Document], vectors: DocumentVectors | None = None) -> int:
    from opensearchpy import helpers

    indexed, failures = 0, []
    for ok, item in helpers.streaming_bulk(
        client, _actions(index, docs, vectors), chunk_size=BULK_CHUNK, raise_on_error=False, max_retries=3
    ):
        if ok:
            indexed += 1
        else:
            failures.append(item)
    if failures:
        raise IndexingError(
            f"{len(failures)} document(s) were rejected by the cluster; first: {failures[0]}",
            hint="fix the rejected documents and run the command again (already indexed ones are not duplicated)",
        )
    return indexed


def _actions(index: str, docs: Iterable[Document], vectors: DocumentVectors | None = None) -> Iterator[dict]:
    iterator = iter(docs)
    while chunk := list(itertools.islice(iterator, BULK_CHUNK)):
        embedded = vectors.embed([embedded_text(d) for d in chunk]) if vectors else None
        if embedded is not None and embedded.shape != (len(chunk), vectors.dim):  # type: ignore[union-attr]
            raise IndexingError(f"the bi-encoder returned vectors of shape {embedded.shape} for {len(chunk)} documents",
                                hint="check the bi-encoder export (es-rerank export-dense)")
        for position, doc in enumerate(chunk):
            action: dict[str, object] = {"_op_type": "index", "_index": index, "_id": doc.doc_id, "title": doc.title,
                                         "text": doc.text}
            if embedded is not None:
                action[VECTOR_FIELD] = [float(x) for x in embedded[position]]
            yield action
