"""Candidate sets: queries with the documents a reranker would score for them.

A candidates file is JSON lines, one query per line::

    {"query_id": "1", "query": "0-dimensional biomaterials ...", "doc_ids": ["31715818", ...],
     "docs": ["Microstructural development of human ...", ...]}

(`query_id` and `doc_ids` are optional; `.gz` files are read and written gzipped.) It lets
the scorer benchmark and the export parity check run on real BM25 candidates where no
OpenSearch runs: write the file next to the index, carry it to the GPU machine.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "top2.jsonl.gz"
    >>> _ = write_candidates(path, [QueryCandidates("1", "gene therapy", ("doc a", "doc b"), ("d1", "d2"))])
    >>> [(c.query, c.docs, c.doc_ids) for c in read_candidates(path)]
    [('gene therapy', ('doc a', 'doc b'), ('d1', 'd2'))]
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries
from es_rerank.errors import DatasetError
from es_rerank.engine.bm25_query import DEFAULT_FIELDS, search_bm25
from es_rerank.data.textfiles import open_text


@dataclass(frozen=True)
class QueryCandidates:
    """One query and its candidate documents' texts (in retrieval order)."""

    query_id: str
    query: str
    docs: tuple[str, ...]
    doc_ids: tuple[str, ...] = ()

    def head(self, k: int) -> "QueryCandidates":
        """The first `k` candidates.

        Example:
            >>> QueryCandidates("1", "q", ("a", "b", "c")).head(2).docs
            ('a', 'b')
        """
        return QueryCandidates(self.query_id, self.query, self.docs[:k], self.doc_ids[:k])


def read_candidates(path: str | Path) -> list[QueryCandidates]:
    """Read a candidates file (JSON lines, optionally gzipped).

    Example:
        >>> read_candidates("missing.jsonl")
        Traceback (most recent call last):
        ...
        es_rerank.errors.DatasetError: candidates file missing.jsonl does not exist (write one with `es-rerank bench scorer --write-candidates FILE`)
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"candidates file {path} does not exist",
                           hint="write one with `es-rerank bench scorer --write-candidates FILE`")
    items = []
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                items.append(_parse_line(path.name, line_no, line))
    if not items:
        raise DatasetError(f"candidates file {path} holds no queries", hint="write it again with --write-candidates")
    return items


def write_candidates(path: str | Path, items: Iterable[QueryCandidates]) -> Path:
    """Write candidates as JSON lines (gzipped when `path` ends in .gz).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "top1.jsonl"
        >>> print(write_candidates(path, [QueryCandidates("1", "q", ("a",), ("d1",))]).read_text(), end="")
        {"query_id": "1", "query": "q", "doc_ids": ["d1"], "docs": ["a"]}
    """
    path = Path(path)
    lines = "".join(json.dumps({"query_id": c.query_id, "query": c.query, "doc_ids": list(c.doc_ids),
                                "docs": list(c.docs)}, ensure_ascii=False) + "\n" for c in items)
    data = lines.encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def fetch_bm25(client, index: str, queries: Mapping[str, str], k: int,
               fields: Sequence[str] = DEFAULT_FIELDS) -> list[QueryCandidates]:
    """Each query's BM25 top-`k` from `index`, with the texts the reranker would score.

    The document text is `Hit.text(fields)`, the same text the proxy reranks.
    """
    items = []
    for query_id, text in queries.items():
        hits = search_bm25(client, index, text, k, fields, source=list(fields))
        items.append(QueryCandidates(query_id, text, tuple(h.text(tuple(fields)) for h in hits),
                                     tuple(h.doc_id for h in hits)))
    return items


def sample_from_qrels(dataset: str | Path, n_queries: int, k: int, split: str = "test",
                      seed: int = 0) -> list[QueryCandidates]:
    """Candidates without a search engine: each judged query's judged documents plus seeded
    random corpus documents, `k` in all, for the first `n_queries` judged queries.

    Real texts, though not BM25's choice; for parity checks where no OpenSearch runs.
    """
    queries = read_queries(dataset)
    qrels = read_qrels(dataset, split)
    chosen = [q for q in qrels if q in queries][:n_queries]
    corpus = {doc_id: f"{doc.title} {doc.text}".strip() for doc_id, doc in iter_corpus_docs(dataset)}
    if not chosen or not corpus:
        raise DatasetError(f"{dataset} has no judged queries or no documents for split {split!r}")
    rng = random.Random(seed)
    all_ids = sorted(corpus)
    items = []
    for query_id in chosen:
        judged = [d for d in qrels[query_id] if d in corpus][:k]
        others = [d for d in rng.sample(all_ids, min(len(all_ids), k + len(judged))) if d not in judged]
        doc_ids = (judged + others)[:k]
        items.append(QueryCandidates(query_id, queries[query_id], tuple(corpus[d] for d in doc_ids), tuple(doc_ids)))
    return items


def _parse_line(name: str, line_no: int, line: str) -> QueryCandidates:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{name}:{line_no}: not valid JSON ({exc.msg})",
                           hint="each line must be an object with \"query\" and \"docs\"") from exc
    query, docs = (record.get("query"), record.get("docs")) if isinstance(record, dict) else (None, None)
    if not isinstance(query, str) or not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
        raise DatasetError(f"{name}:{line_no}: expected {{\"query\": str, \"docs\": [str, ...]}}",
                           hint="write the file with `es-rerank bench scorer --write-candidates FILE`")
    doc_ids = record.get("doc_ids") or []
    return QueryCandidates(str(record.get("query_id", line_no)), query, tuple(docs), tuple(str(d) for d in doc_ids))
