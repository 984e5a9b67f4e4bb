"""The rerank stage at a fixed arrival rate: latency of the answers when R searches a second arrive.

Closed-loop clients slow down with the server, so their p99 at some throughput is not what a user
sending that many searches a second sees. Here search `i` is due at `i / R` whatever has come back
(`lab.reliability.openloop`), and its latency runs from that due time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from lab.proxy_bench.loadgen import LoadRequest
from lab.reliability.openloop import RunClock, new_session, run_rate, summarize
from lab.reliability.workload import LoadItem


@dataclass(frozen=True)
class ReplaySearches:
    """The replay's client searches, in turn, as the open-loop generator's requests.

    Example:
        >>> ReplaySearches((LoadRequest("POST", "/i/_search", b"{}"),)).request(3).path
        '/i/_search'
    """

    requests: tuple[LoadRequest, ...]

    def request(self, i: int) -> LoadItem:
        chosen = self.requests[i % len(self.requests)]
        return LoadItem(i, "rerank", chosen.method, chosen.path, chosen.body, chosen.headers, f"open-loop-{i}")


def at_rate(base_url: str, requests: Sequence[LoadRequest], rate: float, duration_s: float,
            timeout_s: float = 60.0) -> dict:
    """Send `rate` searches a second for `duration_s`; counts, offered rate, p50/p99/max (ms) and
    each answer's X-Rerank outcome (a fallback to BM25 order is no reranked answer) and HTTP status
    (a search past the proxy's in-flight limit is shed with 429 or 503)."""
    if not requests:
        raise ValueError("at_rate needs at least one request")

    async def run():
        async with new_session(max_connections=1024, timeout_s=timeout_s) as session:
            return await run_rate(session, base_url, ReplaySearches(tuple(requests)), rate, duration_s, RunClock())

    records = asyncio.run(run())
    summary = summarize(records)
    summary["x_rerank"] = dict(Counter(r.headers.get("x-rerank", "") for r in records if r.status))
    summary["statuses"] = dict(Counter(str(r.status) for r in records if r.status))
    return summary
