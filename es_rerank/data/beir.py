"""Reading BEIR-layout collections: `corpus.jsonl[.gz]`, `queries.jsonl[.gz]`, `qrels/<split>.tsv`.

A BEIR directory looks like::

    scifact/
      corpus.jsonl.gz      {"_id": "4983", "title": "...", "text": "..."}
      queries.jsonl.gz     {"_id": "0", "text": "..."}
      qrels/test.tsv       query-id <TAB> corpus-id <TAB> score   (header line optional)

Example (a two-document collection):
    >>> import tempfile
    >>> tiny = Path(tempfile.mkdtemp())
    >>> _ = (tiny / "corpus.jsonl").write_text('{"_id": "d1", "title": "Genes", "text": "gene therapy"}\\n'
    ...                                        '{"_id": "d2", "title": "", "text": "x"}\\nnot json\\n')
    >>> _ = (tiny / "queries.jsonl").write_text('{"_id": "q1", "text": "what is gene therapy?"}\\n')
    >>> (tiny / "qrels").mkdir()
    >>> _ = (tiny / "qrels" / "test.tsv").write_text("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\n")
    >>> find_file(tiny, "corpus").name
    'corpus.jsonl'
    >>> [type(item).__name__ for item in iter_corpus(tiny)]
    ['Document', 'Document', 'BadLine']
    >>> read_queries(tiny), read_qrels(tiny, "test")
    ({'q1': 'what is gene therapy?'}, {'q1': {'d1': 1}})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from es_rerank.errors import DatasetError
from es_rerank.data.textfiles import open_text

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Document:
    """One corpus document."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class BadLine:
    """A corpus line that could not be read, with its 1-based line number."""

    path: str
    line_no: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.reason}"


@dataclass
class QrelsReport:
    """Judgments that name queries or documents the collection does not have."""

    unknown_queries: set[str] = field(default_factory=set)
    unknown_docs: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.unknown_queries and not self.unknown_docs

    def describe(self, limit: int = 5) -> str:
        parts = []
        if self.unknown_queries:
            ids = ", ".join(sorted(self.unknown_queries)[:limit])
            parts.append(f"{len(self.unknown_queries)} unknown query id(s) in qrels: {ids}")
        if self.unknown_docs:
            ids = ", ".join(sorted(self.unknown_docs)[:limit])
            parts.append(f"{len(self.unknown_docs)} unknown document id(s) in qrels: {ids}")
        return "; ".join(parts) or "all qrels name known queries and documents"


def find_file(dataset: str | Path, stem: str) -> Path:
    """Return `<dataset>/<stem>.jsonl` or `.jsonl.gz`; `dataset` may also name the file itself.
    """
    path = Path(dataset)
    if path.is_file():
        return path
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist", hint="pass a BEIR-layout directory")
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (path / name).is_file():
            return path / name
    raise DatasetError(
        f"no {stem}.jsonl or {stem}.jsonl.gz in {path}",
        hint="a BEIR-layout directory holds corpus.jsonl[.gz], queries.jsonl[.gz] and qrels/",
    )


def iter_corpus(dataset: str | Path) -> Iterator[Document | BadLine]:
    """Yield each corpus line as a `Document`, or a `BadLine` saying what is wrong with it.

    The caller decides whether a bad line stops the run; see `iter_corpus_docs` for the strict
    version.
    """
    path = find_file(dataset, "corpus")
    name = path.name
    try:
        with open_text(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                yield _parse_corpus_line(name, line_no, line)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}", hint="check that the file is complete") from exc


def iter_corpus_docs(dataset: str | Path) -> Iterator[tuple[str, Document]]:
    """Yield `(doc_id, Document)` pairs; raise `DatasetError` at the first malformed line."""
    for item in iter_corpus(dataset):
        if isinstance(item, BadLine):
            raise DatasetError(f"malformed corpus line {item}", hint="fix the line or skip bad lines")
        yield item.doc_id, item


def _parse_corpus_line(name: str, line_no: int, line: str) -> Document | BadLine:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return BadLine(name, line_no, f"not valid JSON ({exc.msg})")
    if not isinstance(record, dict):
        return BadLine(name, line_no, "expected a JSON object")
    doc_id = record.get("_id")
    if not isinstance(doc_id, (str, int)) or str(doc_id) == "":
        return BadLine(name, line_no, 'missing or empty "_id"')
    title, text = record.get("title", ""), record.get("text", "")
    if title is None:
        title = ""
    if text is None:
        text = ""
    if not isinstance(title, str) or not isinstance(text, str):
        return BadLine(name, line_no, '"title" and "text" must be strings')
    return Document(str(doc_id), title, text)


def read_queries(dataset: str | Path) -> dict[str, str]:
    """Read `queries.jsonl[.gz]` into `{query_id: text}`; a malformed line raises `DatasetError`.
    """
    path = find_file(dataset, "queries")
    queries: dict[str, str] = {}
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                query_id, text = str(record["_id"]), record["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(
                    f"{path.name}:{line_no}: malformed query line ({exc})",
                    hint='each line must be a JSON object with "_id" and "text"',
                ) from exc
            if not isinstance(text, str):
                raise DatasetError(f"{path.name}:{line_no}: query text must be a string")
            queries[query_id] = text
    return queries


def qrels_path(dataset: str | Path, split: str) -> Path:
    """Return `<dataset>/qrels/<split>.tsv`, or `dataset` itself when it names a file."""
    path = Path(dataset)
    if path.is_file():
        return path
    candidate = path / "qrels" / f"{split}.tsv"
    if not candidate.is_file():
        available = sorted(p.stem for p in (path / "qrels").glob("*.tsv")) if (path / "qrels").is_dir() else []
        raise DatasetError(
            f"no qrels for split {split!r} at {candidate}",
            hint=f"available splits: {', '.join(available) or 'none'}",
        )
    return candidate


def read_qrels(dataset: str | Path, split: str = "test") -> Qrels:
    """Read a BEIR qrels TSV into `{query_id: {doc_id: grade}}`.

    A header line (`query-id  corpus-id  score`) is skipped; CRLF line ends are accepted.
    """
    path = qrels_path(dataset, split)
    qrels: Qrels = {}
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            cells = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if line_no == 1 and cells[0] in ("query-id", "query_id", "qid"):
                continue
            if len(cells) == 4:  # TREC layout: qid Q0 docid grade
                cells = [cells[0], cells[2], cells[3]]
            if len(cells) != 3:
                raise DatasetError(
                    f"{path.name}:{line_no}: expected 3 tab-separated columns, got {len(cells)}",
                    hint="qrels lines are: query-id <TAB> corpus-id <TAB> score",
                )
            query_id, doc_id, grade = cells
            try:
                qrels.setdefault(query_id, {})[doc_id] = int(grade)
            except ValueError as exc:
                raise DatasetError(f"{path.name}:{line_no}: score {grade!r} is not an integer") from exc
    return qrels


def check_qrels(qrels: Qrels, query_ids: Mapping[str, object] | set[str], doc_ids: set[str]) -> QrelsReport:
    """Report judgments naming queries or documents that are not in the collection.

    Example:
        >>> check_qrels({"q1": {"d1": 1, "dX": 1}}, {"q1"}, {"d1"}).unknown_docs
        {'dX'}
    """
    report = QrelsReport()
    for query_id, judged in qrels.items():
        if query_id not in query_ids:
            report.unknown_queries.add(query_id)
        report.unknown_docs.update(doc_id for doc_id in judged if doc_id not in doc_ids)
    return report


def relevant(qrels: Qrels, query_id: str) -> set[str]:
    """Documents judged relevant (grade > 0) for a query."""
    return {doc_id for doc_id, grade in qrels.get(query_id, {}).items() if grade > 0}
