"""The file `es-rerank adapt --prepare-only` writes and its training step reads. Torch-free.

Preparing needs OpenSearch (BM25 negatives) and the teacher models; training needs a GPU. The
file carries everything between the two, so they can run on different machines. JSON lines,
gzipped when the name ends in `.gz`::

    {"type": "meta", "format": "es-rerank-adapt-groups", "version": 1, "index": "cranfield", ...}
    {"type": "doc", "id": "184", "text": "the text the served reranker would see"}
    {"type": "pseudo", "qid": "ict-12-0", "source": "ict", "origin": "12", "query": "...",
     "positive": "doc 12 without the query's sentence", "doc_ids": ["184", "7", ...],
     "scores": {"bm25": [null, 21.3, 20.9, ...], "dense": [0.61, 0.55, ...]}}
    {"type": "labelled", "qid": "3", "query": "...", "pos": ["31715818"], "neg": ["4983", ...]}

A pseudo group lists its masked positive first (when it has one; `positive` is null otherwise)
and then the BM25 hits of the query, the query's own document left out. Score lists run over
the same entries; the positive has no BM25 score (the index can only score the unmasked
document), written as null. Labelled groups come from `es-rerank mine` and carry judgments.

Example:
    >>> group = PseudoGroup("ict-1-0", "ict", "1", "q", "masked", ("2", "3"),
    ...                     {"bm25": np.array([np.nan, 2.0, 1.0])})
    >>> group.size, group.has_positive
    (3, True)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from es_rerank.errors import DatasetError
from es_rerank.data.textfiles import json_records, open_text

FORMAT = "es-rerank-adapt-groups"
VERSION = 1
SCORE_NAMES = ("bm25", "dense", "ce")


@dataclass(frozen=True)
class PseudoGroup:
    """A pseudo-query, its masked positive (optional) and its BM25 hits, with raw teacher scores.

    `scores[name]` has one value per entry: the positive first when there is one, then `doc_ids`.
    NaN marks a score that cannot be had (the positive's BM25).
    """

    qid: str
    source: str
    origin: str
    query: str
    positive: str | None
    doc_ids: tuple[str, ...]
    scores: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    @property
    def has_positive(self) -> bool:
        return self.positive is not None

    @property
    def size(self) -> int:
        """Entries in the group: the positive (if any) and the hits."""
        return len(self.doc_ids) + (1 if self.has_positive else 0)

    @property
    def positive_key(self) -> str:
        """The id the masked positive's text is stored under for tokenization (never an index id)."""
        return f"positive:{self.qid}"

    def entry_keys(self) -> list[str]:
        """Text ids of the entries in score order.

        Example:
            >>> PseudoGroup("t-1-0", "title", "1", "q", "p", ("5",)).entry_keys()
            ['positive:t-1-0', '5']
        """
        return ([self.positive_key] if self.has_positive else []) + list(self.doc_ids)


@dataclass(frozen=True)
class LabelledGroup:
    """A judged query from `es-rerank mine`: positives and BM25-ranked negatives."""

    qid: str
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class AdaptGroups:
    """A whole prepared file."""

    meta: dict
    docs: dict[str, str]
    pseudo: list[PseudoGroup]
    labelled: list[LabelledGroup] = field(default_factory=list)

    def score_names(self) -> tuple[str, ...]:
        """Teacher inputs every pseudo group has, in `SCORE_NAMES` order.

        Example:
            >>> AdaptGroups({}, {}, [PseudoGroup("a", "title", "1", "q", None, ("2",), {"bm25": np.ones(1)})]).score_names()
            ('bm25',)
        """
        if not self.pseudo:
            return ()
        return tuple(n for n in SCORE_NAMES if all(n in g.scores for g in self.pseudo))


def write_adapt_groups(groups: AdaptGroups, path: str | Path) -> None:
    """Write the file atomically (a temporary file renamed into place); gzip when `path` ends in `.gz`.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "groups.jsonl.gz"
        >>> write_adapt_groups(AdaptGroups({"index": "x"}, {}, []), path)
        >>> read_adapt_groups(path).meta["index"]
        'x'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    meta = {**groups.meta, "type": "meta", "format": FORMAT, "version": VERSION,
            "counts": {"docs": len(groups.docs), "pseudo": len(groups.pseudo), "labelled": len(groups.labelled)},
            "scores": list(groups.score_names())}
    with open_text(tmp, "w", gzipped=path.suffix == ".gz") as handle:
        handle.write(json.dumps(meta) + "\n")
        for doc_id, text in groups.docs.items():
            handle.write(json.dumps({"type": "doc", "id": doc_id, "text": text}) + "\n")
        for group in groups.pseudo:
            # 7 significant digits: float32 precision, half the bytes of a float64 repr
            scores = {name: [None if math.isnan(v) else float(f"{v:.7g}") for v in values]
                      for name, values in group.scores.items()}
            handle.write(json.dumps({"type": "pseudo", "qid": group.qid, "source": group.source,
                                     "origin": group.origin, "query": group.query, "positive": group.positive,
                                     "doc_ids": list(group.doc_ids), "scores": scores}) + "\n")
        for judged in groups.labelled:
            handle.write(json.dumps({"type": "labelled", "qid": judged.qid, "query": judged.query,
                                     "pos": list(judged.positives), "neg": list(judged.negatives)}) + "\n")
    os.replace(tmp, path)


def read_adapt_groups(path: str | Path) -> AdaptGroups:
    """Read and check a prepared file (see `write_adapt_groups` for an example)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no adapt groups file at {path}",
                           hint="write one with `es-rerank adapt --prepare-only --index INDEX --out DIR`")
    meta, docs, pseudo, labelled = None, {}, [], []
    try:
        for line_no, line, record in json_records(path, "prepare the file again"):
            kind = record.get("type")
            if line_no == 1:
                if kind != "meta" or record.get("format") != FORMAT or record.get("version") != VERSION:
                    raise DatasetError(f"{path} is not an {FORMAT} v{VERSION} file (first line: {line[:80]!r})",
                                       hint="write it with `es-rerank adapt --prepare-only`")
                meta = record
            elif kind == "doc":
                docs[str(record["id"])] = str(record["text"])
            elif kind == "pseudo":
                pseudo.append(_pseudo(record, path, line_no))
            elif kind == "labelled":
                labelled.append(LabelledGroup(str(record["qid"]), str(record["query"]),
                                              tuple(str(d) for d in record["pos"]),
                                              tuple(str(d) for d in record["neg"])))
            else:
                raise DatasetError(f"{path}:{line_no}: unknown record type {kind!r}",
                                   hint="expected meta, doc, pseudo or labelled lines")
    except (OSError, EOFError, KeyError, TypeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc!r}",
                           hint="the file is truncated or was edited; prepare it again") from exc
    if meta is None:
        raise DatasetError(f"{path} is empty", hint="prepare it again with `es-rerank adapt --prepare-only`")
    missing = {d for g in pseudo for d in g.doc_ids} | {d for g in labelled for d in (*g.positives, *g.negatives)}
    missing -= docs.keys()
    if missing:
        raise DatasetError(f"{path} names {len(missing)} document(s) without text, e.g. {sorted(missing)[0]}",
                           hint="the file is incomplete; prepare it again")
    return AdaptGroups(meta, docs, pseudo, labelled)


def _pseudo(record: Mapping, path: Path, line_no: int) -> PseudoGroup:
    positive = record.get("positive")
    group = PseudoGroup(str(record["qid"]), str(record["source"]), str(record["origin"]), str(record["query"]),
                        None if positive is None else str(positive), tuple(str(d) for d in record["doc_ids"]))
    if group.origin in group.doc_ids:
        raise DatasetError(f"{path}:{line_no}: group {group.qid} lists its own document {group.origin} among its hits",
                           hint="a pseudo-query's own document is its positive, never a negative; prepare again")
    for name, values in record.get("scores", {}).items():
        if name not in SCORE_NAMES:
            raise DatasetError(f"{path}:{line_no}: unknown score {name!r}", hint=f"expected {', '.join(SCORE_NAMES)}")
        array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        if array.shape != (group.size,):
            raise DatasetError(f"{path}:{line_no}: {name} has {array.size} scores for {group.size} entries",
                               hint="prepare the file again")
        group.scores[name] = array
    return group
