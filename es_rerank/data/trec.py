"""TREC run files: `query_id Q0 doc_id rank score tag`, one line per retrieved document.

Scores are the ones the system served. Should they not be non-increasing down the list (a
proxy that fell back half-way, say), `depth - rank` is written instead for that query, so that
trec_eval, which sorts by score, sees exactly the served order.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> write_run(out, {"q1": [("d1", 2.5), ("d2", 1.0)]}, tag="bm25")
    >>> print(out.getvalue(), end="")
    q1 Q0 d1 1 2.5 bm25
    q1 Q0 d2 2 1.0 bm25
    >>> validate_run(out.getvalue().splitlines())
    []
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence, TextIO

from es_rerank.errors import ConfigError

_NO_SPACE = re.compile(r"^\S+$")

RankedScores = Mapping[str, Sequence[tuple[str, float]]]


def write_run(handle: TextIO, run: RankedScores, tag: str) -> None:
    """Write `{query_id: [(doc_id, score), ...]}` (served order) as TREC lines."""
    if not _NO_SPACE.match(tag):
        raise ConfigError(f"run tag {tag!r} contains whitespace", hint="use a tag like 'bm25' or 'rerank-w50'")
    for query_id, ranked in run.items():
        _check_token("query id", query_id)
        scores = [score for _, score in ranked]
        if any(not math.isfinite(s) for s in scores) or any(b > a for a, b in zip(scores, scores[1:])):
            scores = [float(len(ranked) - rank) for rank in range(len(ranked))]
        for rank, ((doc_id, _), score) in enumerate(zip(ranked, scores), start=1):
            _check_token("document id", doc_id)
            handle.write(f"{query_id} Q0 {doc_id} {rank} {score!r} {tag}\n")


def save_run(path: Path, run: RankedScores, tag: str) -> Path:
    """Write a run file at `path` (parent folders are created).

    Example:
        >>> import tempfile
        >>> path = save_run(Path(tempfile.mkdtemp(), "runs", "bm25.trec"), {"q1": [("d1", 2.5)]}, "bm25")
        >>> path.read_text()
        'q1 Q0 d1 1 2.5 bm25\\n'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        write_run(handle, run, tag)
    return path


def validate_run(lines: Iterable[str]) -> list[str]:
    """Problems with TREC run lines (empty when valid): six columns, `Q0`, ranks 1.. in order,
    scores non-increasing, no document twice for a query, one tag.

    Example:
        >>> validate_run(["q1 Q0 d1 1 2.0 t", "q1 Q0 d1 2 1.0 t"])
        ['line 2: document d1 repeated for query q1']
    """
    problems: list[str] = []
    seen: dict[str, set[str]] = {}
    last: dict[str, tuple[int, float]] = {}
    tags: set[str] = set()
    for line_no, line in enumerate(lines, start=1):
        cells = line.split()
        if len(cells) != 6:
            problems.append(f"line {line_no}: expected 6 columns, got {len(cells)}")
            continue
        query_id, q0, doc_id, rank_text, score_text, tag = cells
        tags.add(tag)
        if q0 != "Q0":
            problems.append(f"line {line_no}: second column must be Q0, got {q0!r}")
        try:
            rank, score = int(rank_text), float(score_text)
        except ValueError:
            problems.append(f"line {line_no}: rank {rank_text!r} or score {score_text!r} is not a number")
            continue
        prev_rank, prev_score = last.get(query_id, (0, math.inf))
        if rank != prev_rank + 1:
            problems.append(f"line {line_no}: rank {rank} follows rank {prev_rank} for query {query_id}")
        if not math.isfinite(score) or score > prev_score:
            problems.append(f"line {line_no}: score {score} is above the previous {prev_score} for query {query_id}")
        if doc_id in seen.setdefault(query_id, set()):
            problems.append(f"line {line_no}: document {doc_id} repeated for query {query_id}")
        seen[query_id].add(doc_id)
        last[query_id] = (rank, score)
    if len(tags) > 1:
        problems.append(f"more than one run tag: {sorted(tags)}")
    return problems


def _check_token(what: str, value: str) -> None:
    if not _NO_SPACE.match(value):
        raise ConfigError(f"{what} {value!r} cannot be written to a TREC run file (empty or contains whitespace)",
                          hint="TREC run files are whitespace-separated; rename the id in the collection")
