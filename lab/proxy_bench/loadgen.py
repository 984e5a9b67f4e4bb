"""A small closed-loop HTTP load generator on asyncio/aiohttp, for the proxy benchmarks.

`clients` workers each hold one keep-alive connection and send requests back to back, cycling
through the request list; requests started in the first `warmup_s` seconds are not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import aiohttp
import numpy as np


@dataclass(frozen=True)
class LoadRequest:
    """One request to replay: method, path with query, body bytes and headers."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass
class LoadResult:
    """Latencies (ms) of counted requests, errors, wall seconds, and the X-Rerank header tally."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    rerank_header: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        """Counted successful requests.

        Example:
            >>> LoadResult([1.0, 2.0]).requests
            2
        """
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        """Counted successful requests per second.

        Example:
            >>> LoadResult([1.0, 2.0], seconds=0.5).rps
            4.0
        """
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in ms (nan without data).

        Example:
            >>> LoadResult([1.0, 2.0, 3.0]).percentile(50)
            2.0
        """
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def merge(self, other: "LoadResult") -> "LoadResult":
        """Combine two runs of the same target (rounds interleaved with the baseline).

        Example:
            >>> LoadResult([1.0], seconds=1.0).merge(LoadResult([3.0], seconds=1.0)).rps
            1.0
        """
        return LoadResult(self.latencies_ms + other.latencies_ms, self.errors + other.errors,
                          self.seconds + other.seconds, self.rerank_header + other.rerank_header)

    def summary(self) -> dict:
        """rps, p50, p99, counts: the figures a benchmark prints.

        Example:
            >>> LoadResult([1.0, 3.0], seconds=2.0).summary()["p50_ms"]
            2.0
        """
        return {"requests": self.requests, "errors": self.errors, "rps": round(self.rps, 1),
                "p50_ms": round(self.percentile(50), 3), "p99_ms": round(self.percentile(99), 3),
                "x_rerank": dict(self.rerank_header)}


async def closed_loop(base_url: str, requests: Sequence[LoadRequest], clients: int, duration_s: float,
                      warmup_s: float = 0.5) -> LoadResult:
    """Run `clients` sequential workers that start requests for `warmup_s + duration_s` seconds.

    Requests started after the warm-up are counted once they finish (in-flight ones are awaited);
    the measured time runs from the end of the warm-up to the last counted answer.
    """
    if not requests:
        raise ValueError("closed_loop needs at least one request")
    if clients < 1 or duration_s <= 0:
        raise ValueError(f"need clients >= 1 and duration_s > 0, got {clients} and {duration_s}")
    result = LoadResult()
    count_from = time.perf_counter() + warmup_s
    stop_at = count_from + duration_s
    last_done = [count_from]

    async def worker(offset: int) -> None:
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=600)) as session:
            i = offset
            while (sent := time.perf_counter()) < stop_at:
                request = requests[i % len(requests)]
                i += 1
                try:
                    async with session.request(request.method, base_url + request.path, data=request.body or None,
                                               headers=dict(request.headers)) as response:
                        await response.read()
                        ok = response.status < 400
                        rerank = response.headers.get("X-Rerank", "none")
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok, rerank = False, "error"
                done = time.perf_counter()
                if sent < count_from:
                    continue
                last_done[0] = max(last_done[0], done)
                if ok:
                    result.latencies_ms.append((done - sent) * 1000.0)
                    result.rerank_header[rerank] += 1
                else:
                    result.errors += 1

    await asyncio.gather(*(worker(k * 7919) for k in range(clients)))
    result.seconds = max(last_done[0] - count_from, duration_s) if result.requests else duration_s
    return result


def run_closed_loop(base_url: str, requests: Sequence[LoadRequest], clients: int, duration_s: float,
                    warmup_s: float = 0.5) -> LoadResult:
    """Blocking wrapper around `closed_loop` (runs its own event loop).
    """
    return asyncio.run(closed_loop(base_url, requests, clients, duration_s, warmup_s))
