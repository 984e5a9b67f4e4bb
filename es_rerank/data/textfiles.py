"""One opener for the project's text files, gzip-compressed when their name ends in `.gz`.

Corpora, runs, groups, candidates and replays are UTF-8 text (JSON lines or TSV), read and
written plain or gzipped by the same call, so no reader forgets either case.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "lines.jsonl.gz"
    >>> with open_text(path, "w") as handle:
    ...     _ = handle.write("{}\\n")
    >>> path.read_bytes()[:2] == b"\\x1f\\x8b", open_text(path).read(), read_bytes(path)
    (True, '{}\\n', b'{}\\n')
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import IO, Iterator, TextIO, cast

from es_rerank.errors import DatasetError


def open_text(path: str | Path, mode: str = "r", gzipped: bool | None = None) -> TextIO:
    """`path` opened as UTF-8 text for `mode` ("r", "w" or "a"), through gzip when `gzipped`
    (default: when its name ends in `.gz`; a writer of `name.gz.tmp` says so itself)."""
    path = Path(path)
    if path.suffix == ".gz" if gzipped is None else gzipped:
        return io.TextIOWrapper(cast(IO[bytes], gzip.open(path, mode + "b")), encoding="utf-8")
    return cast(TextIO, open(path, mode, encoding="utf-8"))


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in `.gz`."""
    path = Path(path)
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def json_object(line: str, where: str, hint: str) -> dict:
    """One JSON-lines record, which must be an object; `where` ("file:line") and `hint` go into the error.

    Example:
        >>> json_object('{"id": 1}', "f.jsonl:1", "make it again")
        {'id': 1}
        >>> json_object("[1]", "f.jsonl:2", "make it again")
        Traceback (most recent call last):
        ...
        es_rerank.errors.DatasetError: f.jsonl:2: expected a JSON object (make it again)
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not JSON ({exc.msg})", hint=hint) from exc
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object", hint=hint)
    return record


def json_records(path: str | Path, hint: str) -> Iterator[tuple[int, str, dict]]:
    """(line number, line, record) of each non-blank line of a JSON-lines file, plain or gzipped.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "r.jsonl"
        >>> _ = path.write_text('{"a": 1}\\n\\n{"b": 2}\\n')
        >>> [(n, r) for n, _, r in json_records(path, "make it again")]
        [(1, {'a': 1}), (3, {'b': 2})]
    """
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                yield line_no, line, json_object(line, f"{path}:{line_no}", hint)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes: what a resumed run must train on again, and what a record names."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
