"""Several collections' training groups as one BEIR-layout training set (`es-rerank mix`).

A cross-encoder meant for collections it never saw trains on more than one. Each source is a
name, a BEIR folder and the groups `es-rerank mine` wrote from that collection's own index.
Every id becomes `name:id`, so documents and queries of different collections never collide,
and the folder written is what `es-rerank train --groups DIR/groups.jsonl.gz --corpus DIR
--queries DIR` reads unchanged::

    corpus.jsonl.gz    the documents the groups name (positives and the kept negatives), no others
    queries.jsonl.gz   the groups' queries
    groups.jsonl.gz    every source's groups, negatives cut to `neg_depth`
    qrels/train.tsv    the groups' positives
    MIXTURE.json       the sources, what was kept and dropped of each, and each file's sha256

Files are gzipped with a zero timestamp, so the same inputs give the same bytes (and the same
sha256 in a training run's provenance). Nothing is written unless every source reads cleanly:
the folder is assembled beside `out` and renamed into place.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name, text in (("a", "gene therapy"), ("b", "solar wind")):
    ...     (root / name).mkdir()
    ...     _ = (root / name / "corpus.jsonl").write_text(
    ...         '{"_id": "1", "title": "", "text": "%s"}\\n{"_id": "2", "title": "", "text": "other"}\\n' % text)
    ...     _ = (root / name / "queries.jsonl").write_text('{"_id": "q", "text": "%s?"}\\n' % text)
    ...     _ = (root / f"{name}.groups.jsonl").write_text('{"qid": "q", "pos": ["1"], "neg": ["2"]}\\n')
    >>> record = mix_sources([MixtureSource("a", root / "a", root / "a.groups.jsonl"),
    ...                       MixtureSource("b", root / "b", root / "b.groups.jsonl")], root / "mix")
    >>> [s["groups"] for s in record["sources"]], record["documents"]
    ([1, 1], 4)
    >>> from es_rerank.data.mining import read_groups
    >>> read_groups(root / "mix" / "groups.jsonl.gz")[1]
    Group(qid='b:q', positives=('b:1',), negatives=('b:2',))
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from es_rerank.data.beir import iter_corpus_docs, read_queries
from es_rerank.data.mining import Group, read_groups
from es_rerank.data.textfiles import file_sha256
from es_rerank.errors import ConfigError, DatasetError

FORMAT = "es-rerank-mixture"
VERSION = 1
SEPARATOR = ":"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class MixtureSource:
    """One collection of a mixture: its name (the id prefix), BEIR folder and mined groups."""

    name: str
    dataset: Path
    groups: Path


def check_sources(sources: Sequence[MixtureSource]) -> None:
    """Refuse an empty list, a bad or repeated name, and missing files, before anything is read.

    Example:
        >>> check_sources([MixtureSource("sci:fact", Path("."), Path("g"))])
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: source name 'sci:fact' must be letters, digits, '.', '_' or '-' (no ':'), at most 64
    """
    if not sources:
        raise ConfigError("a mixture needs at least one source", hint="pass --source NAME BEIR_DIR GROUPS_FILE")
    seen: set[str] = set()
    for source in sources:
        if not NAME_PATTERN.match(source.name):
            raise ConfigError(f"source name {source.name!r} must be letters, digits, '.', '_' or '-' (no ':'), "
                              "at most 64")
        if source.name in seen:
            raise ConfigError(f"source name {source.name!r} is given twice", hint="give each collection its own name")
        seen.add(source.name)
        if not source.dataset.is_dir():
            raise ConfigError(f"source {source.name}: {source.dataset} is not a BEIR folder",
                              hint="pass the folder holding corpus.jsonl[.gz] and queries.jsonl[.gz]")
        if not source.groups.is_file():
            raise ConfigError(f"source {source.name}: no groups file at {source.groups}",
                              hint="make it with `es-rerank mine` against that collection's index")


def mix_sources(sources: Sequence[MixtureSource], out: Path, neg_depth: int | None = None) -> dict:
    """Write the mixture of `sources` to the new or empty folder `out`; returns the MIXTURE.json record."""
    check_sources(sources)
    if neg_depth is not None and neg_depth < 1:
        raise ConfigError(f"--neg-depth must be at least 1, got {neg_depth}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; a mixture is never written over other files",
                          hint="pass a new --out folder, or remove that one")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        record = _write_mixture(sources, staging, neg_depth)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def prefixed(name: str, local_id: str) -> str:
    """The id of a source's document or query inside the mixture.

    Example:
        >>> prefixed("scifact", "4983")
        'scifact:4983'
    """
    return f"{name}{SEPARATOR}{local_id}"


def source_of(qid: str) -> str | None:
    """The mixture source of a query id (`NAME:id`), or None for an id of one collection.

    Example:
        >>> source_of("scifact:4983"), source_of("4983")
        ('scifact', None)
    """
    name, separator, _ = qid.partition(SEPARATOR)
    return name if separator else None


def _write_mixture(sources: Sequence[MixtureSource], folder: Path, neg_depth: int | None) -> dict:
    (folder / "qrels").mkdir()
    corpus, queries, groups_out = (_ZeroTimeGzip(folder / f"{n}.jsonl.gz") for n in ("corpus", "queries", "groups"))
    qrels = open(folder / "qrels" / "train.tsv", "w", encoding="utf-8")  # TSV, plain as BEIR readers expect
    summaries = []
    with corpus, queries, groups_out, qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for source in sources:
            summaries.append(_write_source(source, neg_depth, corpus, queries, groups_out, qrels))
    files = {name: file_sha256(folder / name) for name in
             ("corpus.jsonl.gz", "queries.jsonl.gz", "groups.jsonl.gz", "qrels/train.tsv")}
    record = {"format": FORMAT, "version": VERSION, "neg_depth": neg_depth, "separator": SEPARATOR,
              "sources": summaries, "groups": sum(s["groups"] for s in summaries),
              "documents": sum(s["documents"] for s in summaries), "sha256": files}
    (folder / "MIXTURE.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _write_source(source: MixtureSource, neg_depth: int | None, corpus, queries, groups_out, qrels) -> dict:
    texts = read_queries(source.dataset)
    kept: list[Group] = []
    no_query_text = 0
    for group in read_groups(source.groups):
        if group.qid not in texts:
            no_query_text += 1
            continue
        kept.append(Group(group.qid, group.positives, group.negatives[:neg_depth]))
    wanted = {d for g in kept for d in (*g.positives, *g.negatives)}
    found: set[str] = set()
    for doc_id, doc in iter_corpus_docs(source.dataset):
        if doc_id in wanted and doc_id not in found:
            found.add(doc_id)
            corpus.write(json.dumps({"_id": prefixed(source.name, doc_id), "title": doc.title, "text": doc.text},
                                    ensure_ascii=False) + "\n")
    written = 0
    for group in kept:
        positives = tuple(d for d in group.positives if d in found)
        if not positives:
            continue
        negatives = tuple(d for d in group.negatives if d in found)
        qid = prefixed(source.name, group.qid)
        groups_out.write(Group(qid, tuple(prefixed(source.name, d) for d in positives),
                               tuple(prefixed(source.name, d) for d in negatives)).to_json() + "\n")
        queries.write(json.dumps({"_id": qid, "text": texts[group.qid]}, ensure_ascii=False) + "\n")
        qrels.write("".join(f"{qid}\t{prefixed(source.name, d)}\t1\n" for d in positives))
        written += 1
    if not written:
        raise DatasetError(f"source {source.name}: none of the groups in {source.groups.name} can be used "
                           f"({no_query_text} name a query {source.dataset.name} does not have, "
                           f"{len(kept)} have no positive in its corpus)",
                           hint="pass the BEIR folder of the collection the groups were mined from")
    return {"name": source.name, "dataset": source.dataset.name, "groups_file": source.groups.name,
            "groups_file_sha256": file_sha256(source.groups), "groups": written, "documents": len(found),
            "dropped_no_query_text": no_query_text, "dropped_no_positive_in_corpus": len(kept) - written,
            "missing_documents": len(wanted - found)}


class _ZeroTimeGzip(io.TextIOWrapper):
    """A UTF-8 text writer through gzip with mtime 0, so equal contents give equal bytes."""

    def __init__(self, path: Path) -> None:
        self._raw_file = open(path, "wb")
        super().__init__(gzip.GzipFile(filename="", mode="wb", fileobj=self._raw_file, mtime=0), encoding="utf-8")

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._raw_file.close()
