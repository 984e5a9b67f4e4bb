"""The one candidates file: each query's BM25 top-k, with their scores and texts.

Fusion fitting, `adapt`, the scorer benchmark and the export parity check all read it, so it can
be written next to the index and carried to a machine without OpenSearch (the GPU machine).
JSON lines, gzipped when the name ends in `.gz`; document texts are stored once each::

    {"type": "meta", "format": "es-rerank-candidates", "version": 1, "index": "scifact", ...}
    {"type": "doc", "id": "4983", "text": "Microstructural development ..."}
    {"type": "query", "id": "1", "text": "...", "doc_ids": ["4983", ...], "scores": {"bm25": [...]}}

A query's score columns are named by `SCORE_COLUMNS` (`bm25` from the engine, `ce` and `dense`
added by scoring the file). `windows()` gives the plain (query, document texts) view that a
scorer consumes.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "top2.jsonl.gz"
    >>> cands = CandidateSet({}, {"d1": "doc a", "d2": "doc b"}, [QueryCandidates("1", "gene therapy", ["d1", "d2"])])
    >>> write_candidates(cands, path)
    >>> [(w.query, w.docs, w.doc_ids) for w in read_candidates(path).windows()]
    [('gene therapy', ('doc a', 'doc b'), ('d1', 'd2'))]
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries
from es_rerank.data.textfiles import json_records, open_text
from es_rerank.engine.bm25_query import DEFAULT_FIELDS, search_bm25
from es_rerank.errors import ConfigError, DatasetError

FORMAT = "es-rerank-candidates"
VERSION = 1
# Score columns a query may carry: the cross-encoder's, BM25's and the bi-encoder's.
SCORE_COLUMNS = ("ce", "bm25", "dense")
MAKE_HINT = "make one with `es-rerank fusion-candidates` or `es-rerank bench scorer --write-candidates FILE`"


@dataclass
class QueryCandidates:
    """One query's candidates in rank order, with one score array per column."""

    query_id: str
    text: str
    doc_ids: list[str]
    scores: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class TextWindow:
    """A query and the texts of its candidates, in rank order: what a scorer is given."""

    query_id: str
    query: str
    docs: tuple[str, ...]
    doc_ids: tuple[str, ...] = ()

    def head(self, k: int) -> "TextWindow":
        """The first `k` candidates.

        Example:
            >>> TextWindow("1", "q", ("a", "b", "c")).head(2).docs
            ('a', 'b')
        """
        return TextWindow(self.query_id, self.query, self.docs[:k], self.doc_ids[:k])


@dataclass
class CandidateSet:
    """A whole candidates file: provenance, document texts, queries."""

    meta: dict
    docs: dict[str, str]
    queries: list[QueryCandidates]

    def inputs(self) -> tuple[str, ...]:
        """Score columns every query has, in `SCORE_COLUMNS` order.

        Example:
            >>> CandidateSet({}, {}, [QueryCandidates("1", "q", ["d"], {"bm25": np.ones(1)})]).inputs()
            ('bm25',)
        """
        present = [name for name in SCORE_COLUMNS if all(name in q.scores for q in self.queries)]
        return tuple(present) if self.queries else ()

    def windows(self) -> list[TextWindow]:
        """Each query with its candidates' texts.

        Example:
            >>> CandidateSet({}, {"d": "text"}, [QueryCandidates("1", "q", ["d"])]).windows()
            [TextWindow(query_id='1', query='q', docs=('text',), doc_ids=('d',))]
        """
        return [TextWindow(q.query_id, q.text, tuple(self.docs[d] for d in q.doc_ids), tuple(q.doc_ids))
                for q in self.queries]


def collect_candidates(client, index: str, queries: Mapping[str, str], depth: int,
                       fields: Sequence[str] = DEFAULT_FIELDS, meta: Mapping[str, object] | None = None,
                       progress: Callable[[Sequence], Iterable] | None = None) -> CandidateSet:
    """Run the served BM25 query (`bm25_query.search_bm25`) for each query; keep ids, scores, texts.

    The document text is `Hit.text(fields)`, the same text the proxy reranks.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"candidate depth must be a positive integer, got {depth!r}", hint="e.g. 100")
    fields = tuple(fields)
    meta = dict(meta or {})
    docs: dict[str, str] = {}
    result = []
    items = sorted(queries.items(), key=lambda item: natural_key(item[0]))
    for query_id, text in (progress(items) if progress else items):
        hits = search_bm25(client, index, text, depth, fields, source=list(fields))
        for hit in hits:
            docs.setdefault(hit.doc_id, hit.text(fields))
        result.append(QueryCandidates(query_id, text, [h.doc_id for h in hits],
                                      {"bm25": np.array([h.score for h in hits], dtype=np.float64)}))
    full_meta = {"type": "meta", "format": FORMAT, "version": VERSION, **meta, "index": index, "depth": depth,
                 "fields": list(fields), "models": dict(meta.get("models", {}))}  # type: ignore[call-overload]
    return CandidateSet(full_meta, docs, result)


def sample_from_qrels(dataset: str | Path, n_queries: int, k: int, split: str = "test",
                      seed: int = 0) -> CandidateSet:
    """Candidates without a search engine: each judged query's judged documents plus seeded
    random corpus documents, `k` in all, for the first `n_queries` judged queries.

    Real texts, though not BM25's choice (so no score columns); for parity checks where no
    OpenSearch runs.
    """
    queries = read_queries(dataset)
    qrels = read_qrels(dataset, split)
    chosen = [q for q in qrels if q in queries][:n_queries]
    corpus = {doc_id: f"{doc.title} {doc.text}".strip() for doc_id, doc in iter_corpus_docs(dataset)}
    if not chosen or not corpus:
        raise DatasetError(f"{dataset} has no judged queries or no documents for split {split!r}")
    rng = random.Random(seed)
    all_ids = sorted(corpus)
    items: list[QueryCandidates] = []
    docs: dict[str, str] = {}
    for query_id in chosen:
        judged = [d for d in qrels[query_id] if d in corpus][:k]
        others = [d for d in rng.sample(all_ids, min(len(all_ids), k + len(judged))) if d not in judged]
        doc_ids = (judged + others)[:k]
        docs.update((d, corpus[d]) for d in doc_ids)
        items.append(QueryCandidates(query_id, queries[query_id], doc_ids))
    meta = {"type": "meta", "format": FORMAT, "version": VERSION, "dataset": Path(dataset).name,
            "sampled_from_qrels": split, "seed": seed, "models": {}}
    return CandidateSet(meta, docs, items)


def write_candidates(cands: CandidateSet, path: str | Path) -> None:
    """Write the file (gzip when `path` ends in `.gz`); floats are written exactly.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "tiny.jsonl.gz"
        >>> cands = CandidateSet({"models": {}}, {"a": "xx", "b": "x"},
        ...                      [QueryCandidates("1", "q", ["a", "b"], {"bm25": np.array([2.0, 1.0])})])
        >>> write_candidates(cands, path)
        >>> read_candidates(path).queries[0].scores["bm25"].tolist()
        [2.0, 1.0]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**cands.meta, "type": "meta", "format": FORMAT, "version": VERSION, "scores": list(cands.inputs()),
            "queries": len(cands.queries)}
    with open_text(path, "w") as handle:
        handle.write(json.dumps(meta) + "\n")
        for doc_id, text in cands.docs.items():
            handle.write(json.dumps({"type": "doc", "id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        for query in cands.queries:
            scores = {name: [float(x) for x in values] for name, values in query.scores.items()}
            handle.write(json.dumps({"type": "query", "id": query.query_id, "text": query.text,
                                     "doc_ids": query.doc_ids, "scores": scores}, ensure_ascii=False) + "\n")


def read_candidates(path: str | Path) -> CandidateSet:
    """Read and check a file written by `write_candidates`.

    Example:
        >>> read_candidates("missing.jsonl")
        Traceback (most recent call last):
        ...
        es_rerank.errors.DatasetError: no candidates file at missing.jsonl (make one with `es-rerank fusion-candidates` or `es-rerank bench scorer --write-candidates FILE`)
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no candidates file at {path}", hint=MAKE_HINT)
    meta, docs, queries = None, {}, []
    try:
        for line_no, line, record in json_records(path, "make the file again"):
            kind = record.get("type")
            if meta is None:
                meta = _check_meta(record, path, line)
            elif kind == "doc":
                docs[str(record["id"])] = str(record["text"])
            elif kind == "query":
                queries.append(_query_from_record(record, path, line_no))
            else:
                raise DatasetError(f"{path}:{line_no}: unknown record type {kind!r}",
                                   hint="expected meta, doc or query lines")
    except (OSError, EOFError, KeyError) as exc:
        raise DatasetError(f"cannot read {path}: {exc!r}", hint="the file is truncated or was edited; "
                           "make it again") from exc
    if meta is None:
        raise DatasetError(f"{path} is empty", hint=MAKE_HINT)
    missing = {d for q in queries for d in q.doc_ids} - docs.keys()
    if missing:
        raise DatasetError(f"{path} names {len(missing)} candidate(s) without text, e.g. {sorted(missing)[0]}",
                           hint="make the file again; it is incomplete")
    return CandidateSet(meta, docs, queries)


def natural_key(value: str) -> tuple:
    """Sort key that puts numeric ids in numeric order, before other ids.

    Example:
        >>> sorted(["10", "b", "2"], key=natural_key)
        ['2', '10', 'b']
    """
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _check_meta(record: dict, path: Path, line: str) -> dict:
    if record.get("type") == "meta" and record.get("format") == FORMAT and record.get("version") == VERSION:
        return record
    if "query" in record and "docs" in record:
        raise DatasetError(f"{path} is an older candidates file (one query with inline texts per line)",
                           hint=f"write it again in the {FORMAT} v{VERSION} format: {MAKE_HINT}")
    raise DatasetError(f"{path} is not an {FORMAT} v{VERSION} file (first line: {line[:80]!r})", hint=MAKE_HINT)


def _query_from_record(record: dict, path: Path, line_no: int) -> QueryCandidates:
    doc_ids = [str(d) for d in record["doc_ids"]]
    scores = {}
    for name, values in record["scores"].items():
        if name not in SCORE_COLUMNS:
            raise DatasetError(f"{path}:{line_no}: unknown score {name!r}", hint=f"expected {', '.join(SCORE_COLUMNS)}")
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (len(doc_ids),) or not np.isfinite(array).all():
            raise DatasetError(f"{path}:{line_no}: {name} scores must be {len(doc_ids)} finite numbers",
                               hint="make the file again")
        scores[name] = array
    return QueryCandidates(str(record["id"]), str(record["text"]), doc_ids, scores)
