"""The decision log: one JSON line per search the proxy served under an A/B test.

Lines follow the OpenSearch User Behavior Insights (UBI 1.3) *query* schema where it fits
(`application`, `query_id`, `client_id`, `timestamp`, `object_id_field`,
`query_response_id`, `query_response_hit_ids`, `user_query`); what UBI has no field for rides
in `query_attributes`: the arm (`variant`), the team of each returned hit (`teams`, parallel to
`query_response_hit_ids`), `latency_ms`, the index and the page offset (`from`). `client_id`
is a keyed hash of the assignment key, never the key. `user_query` is present only when
logging query text is enabled.

Example:
    >>> line = decision_record(query_id="q-1", client_hash="ab12", variant="rerank", hit_ids=["d1", "d2"],
    ...                        teams=["rerank", "rerank"], latency_ms=12.5, index="scifact",
    ...                        timestamp="2025-01-01T00:00:00.000Z")
    >>> line["query_attributes"]["teams"], "user_query" in line
    (['rerank', 'rerank'], False)
    >>> validate_decision(line)
    []
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import threading
from pathlib import Path
from typing import Sequence

from es_rerank.evaluation.protocol import APPLICATION, VARIANTS
from es_rerank.errors import ConfigError

REQUIRED = ("application", "query_id", "query_response_id", "client_id", "timestamp", "object_id_field",
            "query_response_hit_ids", "query_attributes")
REQUIRED_ATTRIBUTES = ("variant", "teams", "latency_ms", "index", "from")


def utc_now() -> str:
    """ISO 8601 UTC time with milliseconds and a trailing Z (OpenSearch needs the zone)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_record(*, query_id: str, client_hash: str, variant: str, hit_ids: Sequence[str],
                    teams: Sequence[str], latency_ms: float, index: str, offset: int = 0,
                    query_text: str | None = None, fallback: bool = False, timestamp: str | None = None) -> dict:
    """Build one decision-log line; `query_text` is included only when given (logging enabled)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if len(teams) != len(hit_ids):
        raise ValueError(f"teams ({len(teams)}) must be parallel to hit ids ({len(hit_ids)})")
    record = {
        "application": APPLICATION,
        "query_id": query_id,
        "query_response_id": query_id,
        "client_id": client_hash,
        "timestamp": timestamp or utc_now(),
        "object_id_field": "_id",
        "query_response_hit_ids": [str(doc_id) for doc_id in hit_ids],
        "query_attributes": {
            "variant": variant,
            "teams": list(teams),
            "latency_ms": round(float(latency_ms), 3),
            "index": index,
            "from": int(offset),
            "fallback": bool(fallback),
        },
    }
    if query_text is not None:
        record["user_query"] = query_text
    return record


def validate_decision(record: object) -> list[str]:
    """What is missing or malformed in a decision line (empty when complete).

    Example:
        >>> validate_decision({"query_id": "x"})[:2]
        ['missing application', 'missing query_response_id']
    """
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    problems = [f"missing {name}" for name in REQUIRED if name not in record]
    attributes = record.get("query_attributes")
    if isinstance(attributes, dict):
        problems += [f"missing query_attributes.{name}" for name in REQUIRED_ATTRIBUTES if name not in attributes]
        if attributes.get("variant") not in VARIANTS:
            problems.append(f"query_attributes.variant must be one of {VARIANTS}")
        hit_ids, teams = record.get("query_response_hit_ids"), attributes.get("teams")
        if not isinstance(hit_ids, list) or not isinstance(teams, list) or len(hit_ids) != len(teams):
            problems.append("query_attributes.teams must be a list parallel to query_response_hit_ids")
        if not isinstance(attributes.get("latency_ms"), (int, float)) or attributes.get("latency_ms", -1) < 0:
            problems.append("query_attributes.latency_ms must be a non-negative number")
    elif "query_attributes" in record:
        problems.append("query_attributes must be an object")
    timestamp = record.get("timestamp")
    if isinstance(timestamp, str):
        try:
            parsed = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                problems.append("timestamp has no time zone")
        except ValueError:
            problems.append(f"timestamp {timestamp!r} is not ISO 8601")
    elif "timestamp" in record:
        problems.append("timestamp must be a string")
    return problems


class JsonLinesWriter:
    """Appends JSON lines to a file from a background thread, so serving never waits on the disk.

    Each line is one `write` on a file opened in append mode, so replicas may share a file on a
    local disk. When the disk cannot keep up and `max_pending` lines wait, new lines are dropped
    and counted in `dropped` rather than slowing searches down.

    Example:
        >>> import tempfile
        >>> writer = JsonLinesWriter(Path(tempfile.mkdtemp(), "decisions.jsonl"))
        >>> writer.append({"query_id": "q-1"})   # False when the line had to be dropped
        True
        >>> writer.close()
        >>> writer.path.read_text(), writer.written
        ('{"query_id":"q-1"}\\n', 1)
    """

    def __init__(self, path: Path, max_pending: int = 100_000) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise ConfigError(f"cannot open log file {path} for appending: {exc}",
                              hint="choose a writable path for the decision/events log") from exc
        self.path = path
        self.dropped = 0   # lines lost: queue full or write failed (export as a metric)
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._drain, name=f"jsonl-{path.name}", daemon=True)
        self._thread.start()

    def append(self, record: dict) -> bool:
        """Queue one record; False when it was dropped because the queue is full."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            self._queue.put_nowait(line)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued line is on disk (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done, timeout=timeout_s)
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, stop the thread and close the file."""
        if self._thread.is_alive():
            self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)
        os.close(self._fd)

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                view = memoryview(item)
                while view:
                    view = view[os.write(self._fd, view):]
                self.written += 1
            except OSError:  # disk full or gone: lose the line, keep serving
                self.dropped += 1
