"""Bulk-load a BEIR-layout corpus into an OpenSearch or Elasticsearch index with a BM25 mapping.

The mapping analyses `title` and `text` with the built-in `english` analyzer: standard
tokenizer, possessive removal, lowercasing, English stop words and the Porter stemmer.
Stemming matters for scientific claims ("activates" must match "activation"), and it is what
BEIR's own Elasticsearch baseline uses, so our BM25 figures compare with theirs. A
distribution without the analysis-common module (Elasticsearch's integ-test zip) has no
`english`; there the mapping uses `stop` (lowercasing and English stop words, no stemming)
and the report carries a one-line warning saying so.

Documents are written with the corpus `_id` as their OpenSearch `_id`, so a re-run
overwrites instead of duplicating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from es_rerank.data.beir import BadLine, Document, iter_corpus
from es_rerank.engine.engine_profile import EngineProfile, detect
from es_rerank.errors import DatasetError, IndexingError

ANALYZER = "english"
# The best analyzer every distribution has: stop words, but no stemming.
FALLBACK_ANALYZER = "stop"
TEXT_FIELDS = ("title", "text")
BULK_CHUNK = 500


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


def index_body(shards: int = 1, replicas: int = 0, analyzer: str = ANALYZER) -> dict:
    """Settings and mapping for a corpus index.

    Example:
        >>> index_body()["mappings"]["properties"]["text"]
        {'type': 'text', 'analyzer': 'english'}
        >>> index_body(analyzer="stop")["mappings"]["properties"]["title"]["analyzer"]
        'stop'
    """
    return {
        "settings": {"index": {"number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": {
            "properties": {name: {"type": "text", "analyzer": analyzer} for name in TEXT_FIELDS},
        },
    }


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

    analyzer, warning = choose_analyzer(detect(client))
    report = IndexReport(index=index, bad_lines=scan.bad_lines, analyzer=analyzer, warning=warning)
    report.created = prepare_index(client, index, recreate, analyzer)
    docs: Iterable[Document] = (item for item in iter_corpus(dataset) if isinstance(item, Document))
    if progress is not None:
        docs = progress(docs, scan.documents)
    report.indexed = _bulk_index(client, index, docs)
    client.indices.refresh(index=index)
    report.index_count = client.count(index=index)["count"]
    if report.index_count != len(scan.distinct_ids):
        raise IndexingError(
            f"index {index} holds {report.index_count} documents but the corpus has "
            f"{len(scan.distinct_ids)} distinct ids",
            hint="the index holds documents from elsewhere; pass --recreate to rebuild it from this corpus",
        )
    return report


def prepare_index(client, index: str, recreate: bool, analyzer: str = ANALYZER) -> bool:
    """Create `index` with our mapping; True when it was created. Refuses a foreign mapping."""
    exists = client.indices.exists(index=index)
    if exists and recreate:
        client.indices.delete(index=index)
        exists = False
    if exists:
        problems = mapping_differences(client.indices.get_mapping(index=index)[index]["mappings"], analyzer)
        if problems:
            raise IndexingError(
                f"index {index} exists with a different mapping: {'; '.join(problems)}",
                hint="pass --recreate to delete and rebuild it, or choose another --index",
            )
        return False
    client.indices.create(index=index, body=index_body(analyzer=analyzer))
    return True


def mapping_differences(existing: dict, analyzer: str = ANALYZER) -> list[str]:
    """Ways an existing mapping differs from ours, as readable strings (empty when equal).

    Example:
        >>> mapping_differences({"properties": {"title": {"type": "keyword"}}})
        ['title is {"type": "keyword"}, expected text with analyzer english', 'text is missing']
    """
    import json

    wanted = index_body(analyzer=analyzer)["mappings"]["properties"]
    have = existing.get("properties", {})
    problems = []
    for name, spec in wanted.items():
        if name not in have:
            problems.append(f"{name} is missing")
        elif {k: have[name].get(k) for k in spec} != spec:
            problems.append(f"{name} is {json.dumps(have[name], sort_keys=True)}, expected text with analyzer {analyzer}")
    return problems


def _bulk_index(client, index: str, docs: Iterable[Document]) -> int:
    from opensearchpy import helpers

    indexed, failures = 0, []
    for ok, item in helpers.streaming_bulk(
        client, _actions(index, docs), chunk_size=BULK_CHUNK, raise_on_error=False, max_retries=3
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


def _actions(index: str, docs: Iterable[Document]) -> Iterator[dict]:
    for doc in docs:
        yield {"_op_type": "index", "_index": index, "_id": doc.doc_id, "title": doc.title, "text": doc.text}
