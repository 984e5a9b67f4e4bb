"""An open-loop, constant-arrival-rate load generator on asyncio and aiohttp.

Request `i` is due at `start + i / rate` whether or not earlier ones have answered, and its
latency runs from that due time: a server that slows down cannot hide it by slowing the
client down (no coordinated omission). Each answer becomes a `Record` with what the checks
need: status, client-side error, the X-Rerank headers, hit ids, acknowledged bulk uids.
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import numpy as np

from es_rerank.proxy.jsonio import loads
from lab.reliability.workload import LoadItem


class RequestSource(Protocol):
    """What the load sends: request number `i` of the run (`workload.Workload`, or a replay's searches)."""

    def request(self, i: int) -> LoadItem: ...


KEPT_HEADERS = ("x-rerank", "x-rerank-reason", "retry-after", "x-opaque-id", "content-type")


@dataclass
class Record:
    """One request's fate. Times are seconds on the run's clock; `status` is 0 without an HTTP answer."""

    seq: int
    kind: str
    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0
    client_error: str = ""
    headers: dict = field(default_factory=dict)
    error_type: str = ""
    hit_ids: tuple = ()
    acked: tuple = ()
    conflicts: tuple = ()
    skipped: bool = False

    @property
    def latency_s(self) -> float:
        """From the due time to the answer (includes any wait before the request could go out).

        Example:
            >>> Record(0, "cat", due=1.0, sent=1.2, done=1.5).latency_s
            0.5
        """
        return self.done - self.due


class RunClock:
    """Seconds since the run started, shared by the load and the fault schedule.

    Example:
        >>> clock = RunClock(); 0 <= clock.now() < 1
        True
    """

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def now(self) -> float:
        """Seconds since the clock was made.

        Example:
            >>> RunClock().now() < 1.0
            True
        """
        return time.monotonic() - self.origin


def new_session(max_connections: int, timeout_s: float) -> aiohttp.ClientSession:
    """The load's client: a keep-alive pool of `max_connections` and a hard per-request timeout.
    """
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 auto_decompress=True)


async def run_rate(session: aiohttp.ClientSession, base_url: str, workload: RequestSource, rate: float, duration_s: float,
                   clock: RunClock, first_seq: int = 0, max_outstanding: int = 1024,
                   stop: asyncio.Event | None = None) -> list[Record]:
    """Send `rate` requests per second for `duration_s` seconds (or until `stop` is set); one Record per due request.

    A request that would exceed `max_outstanding` open requests is not sent and is marked
    `skipped` (the client, not the server, is then the bottleneck; the run reports it).
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"need rate > 0 and duration_s > 0, got {rate} and {duration_s}")
    total = int(rate * duration_s)
    start = clock.now()
    records: list[Record] = []
    tasks: set[asyncio.Task] = set()
    for k in range(total):
        if stop is not None and stop.is_set():
            break
        due = start + k / rate
        delay = due - clock.now()
        if delay > 0:
            await asyncio.sleep(delay)
        item = workload.request(first_seq + k)
        record = Record(item.seq, item.kind, due)
        records.append(record)
        if len(tasks) >= max_outstanding:
            record.skipped = True
            continue
        task = asyncio.create_task(_send(session, base_url, item, record, clock))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return records


async def _send(session: aiohttp.ClientSession, base_url: str, item: LoadItem, record: Record, clock: RunClock) -> None:
    record.sent = clock.now()
    try:
        async with session.request(item.method, base_url + item.path, data=item.body or None,
                                   headers=dict(item.headers)) as response:
            body = await response.read()
            record.status = response.status
            record.headers = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
    except Exception as exc:  # every client-side failure is a finding, classified, never raised
        record.client_error = classify_client_error(exc)
        record.done = clock.now()
        return
    record.done = clock.now()
    _digest(item, record, body)


def classify_client_error(exc: BaseException) -> str:
    """A short name for what went wrong on the client side.

    Example:
        >>> classify_client_error(asyncio.TimeoutError())
        'timeout'
        >>> classify_client_error(aiohttp.ServerDisconnectedError())
        'disconnected'
    """
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_refused" if exc.os_error.errno == errno.ECONNREFUSED else f"connect_{exc.os_error.errno}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "truncated"
    code = getattr(exc, "errno", None)
    if isinstance(exc, (aiohttp.ClientOSError, ConnectionError)) and code in (errno.ECONNRESET, errno.EPIPE):
        return "reset" if code == errno.ECONNRESET else "broken_pipe"
    if isinstance(exc, aiohttp.ClientOSError) and code is None and _caused_by_reset(exc):
        # aiohttp wraps "Cannot write to closing transport" (no errno) when the server closed the
        # pooled connection before the request was written: the same event as a reset.
        return "reset"
    return type(exc).__name__ + (f"_{errno.errorcode.get(code, code)}" if code else "")


def _caused_by_reset(exc: BaseException) -> bool:
    """Whether a ConnectionResetError is in the exception's cause chain.

    Example:
        >>> wrapped = aiohttp.ClientOSError(None, "Can not write request body")
        >>> wrapped.__cause__ = ConnectionResetError("Cannot write to closing transport")
        >>> _caused_by_reset(wrapped), classify_client_error(wrapped)
        (True, 'reset')
        >>> classify_client_error(aiohttp.ClientOSError(None, "something else"))
        'ClientOSError'
    """
    seen = exc.__cause__
    while seen is not None:
        if isinstance(seen, ConnectionResetError):
            return True
        seen = seen.__cause__
    return False


def _digest(item: LoadItem, record: Record, body: bytes) -> None:
    """Keep what the checks need from the body: error type, hit ids, acknowledged and conflicting uids."""
    if "json" not in record.headers.get("content-type", ""):
        return
    try:
        value = loads(body)
    except ValueError:
        return
    if not isinstance(value, dict):
        return
    error = value.get("error")
    if isinstance(error, dict):
        record.error_type = str(error.get("type", ""))
    elif error is not None:
        record.error_type = str(error)[:80]
    if item.kind in ("rerank", "passthrough") and record.status == 200:
        record.hit_ids = tuple(h.get("_id") for h in value.get("hits", {}).get("hits", []))
    if item.kind == "bulk" and record.status == 200:
        acked, conflicts = [], []
        for uid, entry in zip(item.uids, value.get("items", [])):
            result: dict = next(iter(entry.values()), {})
            status = result.get("status", 0)
            if 200 <= status < 300:
                acked.append(uid)
            elif status == 409:
                conflicts.append(uid)
        record.acked, record.conflicts = tuple(acked), tuple(conflicts)


def summarize(records: list[Record], p: float = 99.0) -> dict:
    """Counts, achieved rate and latency percentiles (ms, from due time) of answered requests.

    Example:
        >>> summarize([Record(0, "cat", 0.0, 0.0, 0.01, 200), Record(1, "cat", 0.5, 0.5, 0.52, 200)])["p50_ms"]
        15.0
    """
    answered = [r for r in records if r.status]
    latencies = np.array([r.latency_s for r in answered]) * 1000.0
    span = (max(r.due for r in records) - min(r.due for r in records)) if len(records) > 1 else 0.0
    return {
        "due": len(records), "answered": len(answered), "ok_2xx": sum(200 <= r.status < 300 for r in records),
        "client_errors": sum(bool(r.client_error) for r in records), "skipped": sum(r.skipped for r in records),
        "offered_rps": round(len(records) / span, 2) if span else 0.0,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        f"p{p:g}_ms": round(float(np.percentile(latencies, p)), 1) if len(latencies) else None,
        "max_ms": round(float(latencies.max()), 1) if len(latencies) else None,
    }
