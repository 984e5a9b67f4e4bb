"""BM25 files for training: hard-negative groups (`mine`) and candidate runs (`bm25-run`).

Both call `es_rerank.engine.bm25_query.search_bm25`, the query builder the served searches use, so the
negatives a model trains on and the candidates it is evaluated on come from the retriever it
will rerank at inference. Torch-free: it runs where OpenSearch runs; training reads the files.

A groups file has one JSON object per training query::

    {"qid": "0", "pos": ["31715818"], "neg": ["4983", "5836", ...]}

`neg` is in BM25 rank order with every judged positive removed; equal scores are ordered by
document id (`score_then_id`), so a fresh index of the same corpus gives the same file. A run
file is TREC format (`qid Q0 docid rank score tag`), gzipped when its name ends in `.gz`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence, TextIO

from es_rerank.data.beir import Qrels, relevant
from es_rerank.errors import ConfigError, DatasetError, OpenSearchUnavailable
from es_rerank.data.textfiles import open_text, read_bytes
from es_rerank.engine.bm25_query import DEFAULT_FIELDS, search_bm25
from es_rerank.types import Hit

Progress = Callable[[Iterable, int], Iterable]
SAMPLE_SALT = "es-rerank-mine"  # the default salt of `--max-queries` samples
Run = dict[str, list[Hit]]
# Extra hits fetched past `--depth`, so a tie that straddles the cut is settled by id, not by the
# engine's internal document order (which depends on how the index was bulk-loaded).
TIE_MARGIN = 20


@dataclass(frozen=True)
class Group:
    """One training query: its judged positives and its BM25-ranked negatives.

    Example:
        >>> Group.from_json('{"qid": "1", "pos": ["a"], "neg": ["b", "a", "c"]}').negatives
        ('b', 'c')
    """

    qid: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]

    def __post_init__(self) -> None:
        # A positive among the negatives would teach the model the opposite of the label.
        if set(self.positives) & set(self.negatives):
            pos = set(self.positives)
            object.__setattr__(self, "negatives", tuple(d for d in self.negatives if d not in pos))

    def to_json(self) -> str:
        """The group as one compact JSON line (no newline)."""
        return json.dumps({"qid": self.qid, "pos": list(self.positives), "neg": list(self.negatives)},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "Group":
        """Parse one groups-file line; raises ValueError/KeyError/TypeError on a malformed one."""
        record = json.loads(line)
        if not isinstance(record, dict):
            raise TypeError("expected a JSON object")
        pos, neg = record["pos"], record["neg"]
        if not isinstance(pos, list) or not isinstance(neg, list):
            raise TypeError('"pos" and "neg" must be lists')
        return cls(str(record["qid"]), tuple(str(d) for d in pos), tuple(str(d) for d in neg))


@dataclass
class MiningReport:
    """What `mine_groups` did, and which queries it could not use."""

    written: int = 0
    already_done: int = 0
    truncated_tail: bool = False
    no_positive_in_corpus: list[str] = field(default_factory=list)
    no_negatives: list[str] = field(default_factory=list)
    missing_text: list[str] = field(default_factory=list)

    def describe(self, limit: int = 10) -> list[str]:
        """Human-readable lines for the problems found (empty when there were none)."""
        def ids(values: list[str]) -> str:
            more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
            return ", ".join(values[:limit]) + more

        lines = []
        if self.truncated_tail:
            lines.append("dropped an incomplete last line left by an interrupted run")
        if self.no_positive_in_corpus:
            lines.append(f"{len(self.no_positive_in_corpus)} queries skipped, no judged positive is in the index: "
                         f"{ids(self.no_positive_in_corpus)}")
        if self.no_negatives:
            lines.append(f"{len(self.no_negatives)} queries have no BM25 negative (written with an empty list, "
                         f"training skips them): {ids(self.no_negatives)}")
        if self.missing_text:
            lines.append(f"{len(self.missing_text)} judged queries have no text in the queries file: "
                         f"{ids(self.missing_text)}")
        return lines


def sample_query_ids(query_ids: Sequence[str], limit: int | None, salt: str = SAMPLE_SALT) -> list[str]:
    """The `limit` ids with the smallest sha256(salt NUL id), in their given order; all ids without a limit.

    Membership depends only on the id, the salt and the limit, so an interrupted run resumes
    on the same sample and a larger limit keeps every query a smaller one took.

    Example:
        >>> ids = [str(i) for i in range(100)]
        >>> few = sample_query_ids(ids, 10)
        >>> len(few), few == sample_query_ids(list(reversed(ids)), 10)[::-1], set(few) < set(sample_query_ids(ids, 20))
        (10, True, True)
        >>> sample_query_ids(["b", "a"], None)
        ['b', 'a']
    """
    if limit is None or limit >= len(query_ids):
        return list(query_ids)
    if limit < 1:
        raise ConfigError(f"--max-queries must be at least 1, got {limit}")
    ranked = sorted(query_ids, key=lambda qid: hashlib.sha256(f"{salt}\0{qid}".encode("utf-8")).digest())
    chosen = set(ranked[:limit])
    return [qid for qid in query_ids if qid in chosen]


def mine_groups(client, index: str, queries: Mapping[str, str], qrels: Qrels, depth: int, out: Path,
                fields: Sequence[str] = DEFAULT_FIELDS, progress: Progress | None = None,
                max_queries: int | None = None, sample_salt: str = SAMPLE_SALT) -> MiningReport:
    """Write one group per judged query to `out`, appending to (and skipping what is in) an earlier file.

    Queries are taken in qrels order; with `max_queries`, only the hashed sample of that many
    judged queries that have text (`sample_query_ids`). A query whose judged positives are all
    absent from the index is reported, not written; one whose BM25 list holds only positives is
    written with no negatives and reported.
    """
    if depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {depth}")
    if out.suffix == ".gz":
        raise ConfigError(f"--out {out.name}: mine appends to a plain .jsonl file so it can resume",
                          hint="write groups.jsonl and gzip it afterwards if you need to")
    report = MiningReport()
    done, report.truncated_tail = _resume_point(out)
    report.already_done = len(done)
    judged = [(qid, relevant(qrels, qid)) for qid in qrels]
    judged = [(qid, pos) for qid, pos in judged if pos]
    report.missing_text = [qid for qid, _ in judged if qid not in queries]
    sampled = set(sample_query_ids([qid for qid, _ in judged if qid in queries], max_queries, sample_salt))
    todo = [(qid, pos) for qid, pos in judged if qid in sampled and qid not in done]
    indexed = existing_ids(client, index, sorted({d for _, pos in todo for d in pos}))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as handle:
        steps = progress(todo, len(todo)) if progress else todo
        for qid, positives in steps:
            present = tuple(sorted(d for d in positives if d in indexed))
            if not present:
                report.no_positive_in_corpus.append(qid)
                continue
            hits = score_then_id(_search(client, index, queries[qid], depth + TIE_MARGIN, fields))[:depth]
            group = Group(qid, present, tuple(h.doc_id for h in hits if h.doc_id not in positives))
            if not group.negatives:
                report.no_negatives.append(qid)
            handle.write(group.to_json() + "\n")
            handle.flush()  # an interruption loses at most the line being written
            report.written += 1
    return report


def read_groups(path: Path) -> list[Group]:
    """Read a groups file (`.jsonl` or `.jsonl.gz`); a malformed line raises `DatasetError`.

    An incomplete last line (an interrupted `mine`) is ignored, as `mine` itself would drop it.
    """
    groups, _ = _parse_groups(path)
    return groups


def existing_ids(client, index: str, doc_ids: Sequence[str], chunk: int = 1000) -> set[str]:
    """The subset of `doc_ids` present in `index` (one `_mget` per `chunk` ids, no `_source`).
    """
    from opensearchpy.exceptions import NotFoundError, OpenSearchException

    found: set[str] = set()
    for start in range(0, len(doc_ids), chunk):
        try:
            response = client.mget(index=index, body={"ids": list(doc_ids[start:start + chunk])}, _source=False)
        except NotFoundError as exc:
            raise OpenSearchUnavailable(f"index {index!r} does not exist",
                                        hint="index the corpus first with `es-rerank index`") from exc
        except OpenSearchException as exc:
            raise OpenSearchUnavailable(f"looking up judged documents in {index!r} failed: {exc}") from exc
        found.update(str(d["_id"]) for d in response["docs"] if d.get("found"))
    return found


def bm25_run(client, index: str, queries: Mapping[str, str], qids: Sequence[str], depth: int,
             fields: Sequence[str] = DEFAULT_FIELDS, progress: Progress | None = None) -> Run:
    """BM25 top-`depth` hits (ids and scores, no `_source`) for each of `qids`, in order.
    """
    if depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {depth}")
    missing = [qid for qid in qids if qid not in queries]
    if missing:
        raise DatasetError(f"{len(missing)} queries have no text in the queries file: {', '.join(missing[:10])}",
                           hint="pass the queries file that matches the qrels")
    steps = progress(qids, len(qids)) if progress else qids
    return {qid: _search(client, index, queries[qid], depth, fields) for qid in steps}


def write_run(run: Run, path: Path, tag: str = "bm25") -> None:
    """Write a run in TREC format (`qid Q0 docid rank score tag`); gzipped if `path` ends in `.gz`.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "run.tsv"
        >>> write_run({"q1": [Hit("d1", 3.5), Hit("d2", 1.0)]}, p)
        >>> p.read_text().splitlines()[0]
        'q1 Q0 d1 1 3.5 bm25'
    """
    from es_rerank.data.trec import write_run as write_trec

    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "w") as handle:
        write_trec(handle, {qid: [(hit.doc_id, hit.score) for hit in hits] for qid, hits in run.items()}, tag)


def read_run(path: Path) -> Run:
    """Read a TREC run into `{qid: [Hit]}`, ordered by rank (ties by score then file order).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "run.tsv"
        >>> write_run({"q1": [Hit("d1", 3.5), Hit("d2", 1.0)]}, p)
        >>> [h.doc_id for h in read_run(p)["q1"]]
        ['d1', 'd2']
    """
    rows: dict[str, list[tuple[int, float, int, str]]] = {}
    with _open_read(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 6:
                raise DatasetError(f"{path.name}:{line_no}: expected 6 columns (qid Q0 docid rank score tag), "
                                   f"got {len(cells)}")
            try:
                rank, score = int(cells[3]), float(cells[4])
            except ValueError as exc:
                raise DatasetError(f"{path.name}:{line_no}: rank and score must be numbers ({exc})") from exc
            rows.setdefault(cells[0], []).append((rank, -score, line_no, cells[2]))
    return {qid: [Hit(doc_id, -neg_score) for _, neg_score, _, doc_id in sorted(entries)]
            for qid, entries in rows.items()}


def score_then_id(hits: Sequence[Hit]) -> list[Hit]:
    """`hits` by descending score, equal scores by ascending document id.

    Example:
        >>> [h.doc_id for h in score_then_id([Hit("b", 1.0), Hit("c", 2.0), Hit("a", 1.0)])]
        ['c', 'a', 'b']
    """
    return sorted(hits, key=lambda hit: (-hit.score, hit.doc_id))


def _search(client, index: str, text: str, depth: int, fields: Sequence[str]) -> list[Hit]:
    from opensearchpy.exceptions import OpenSearchException

    try:
        return search_bm25(client, index, text, depth, fields, source=False)
    except OpenSearchException as exc:
        raise OpenSearchUnavailable(f"BM25 search on {index!r} failed: {exc}",
                                    hint="check that the index exists and the cluster is healthy") from exc


def _resume_point(out: Path) -> tuple[set[str], bool]:
    """Query ids already in `out`; cuts off an incomplete last line so appending stays valid JSONL."""
    if not out.exists():
        return set(), False
    groups, good_bytes = _parse_groups(out)
    truncated = good_bytes < out.stat().st_size
    if truncated:
        with open(out, "r+b") as handle:
            handle.truncate(good_bytes)
    return {g.qid for g in groups}, truncated


def _parse_groups(path: Path) -> tuple[list[Group], int]:
    """Groups in `path` and the byte length of its complete, valid lines.

    Only the last line may be bad (a write cut short); a bad line before it is an error.
    """
    if not path.is_file():
        raise DatasetError(f"groups file {path} does not exist", hint="write it with `es-rerank mine`")
    raw = read_bytes(path)
    lines = raw.split(b"\n")
    groups: list[Group] = []
    good = 0
    for line_no, line in enumerate(lines, start=1):
        is_tail = line_no == len(lines)
        if not line.strip():
            good += len(line) + (0 if is_tail else 1)
            continue
        try:
            if is_tail:  # no newline after it: the writer was interrupted mid-line
                raise ValueError("line has no terminating newline")
            groups.append(Group.from_json(line.decode("utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            last_content = is_tail or not any(x.strip() for x in lines[line_no:])
            if last_content:
                break
            raise DatasetError(f"{path.name}:{line_no}: malformed group line ({exc})",
                               hint="delete the file and run `es-rerank mine` again") from exc
        good += len(line) + 1
    return groups, good


def _open_read(path: Path) -> TextIO:
    if not path.is_file():
        raise DatasetError(f"run file {path} does not exist", hint="write it with `es-rerank bm25-run`")
    return open_text(path)
