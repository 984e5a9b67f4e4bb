"""Soak: sample a process's memory and open file descriptors from /proc while steady load runs,
then judge whether they stayed flat.

Flat means: after the warm-up, the median RSS of the last quarter of samples is within
`rss_tolerance` (relative) or `rss_slack_mib` (absolute, whichever is larger) of the median
of the first quarter, and the median count of open fds in the last quarter exceeds the
first quarter's by at most `fd_slack` (open fds follow the number of pooled connections,
which rises and falls with latency spikes; medians show a trend, maxima show spikes).

Example:
    >>> samples = [ProcSample(t, 100.0 + 0.01 * t, 40) for t in range(0, 600, 5)]
    >>> flatness(samples, warmup_s=60)["flat"]
    True
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import numpy as np

RSS_TOLERANCE = 0.10
RSS_SLACK_MIB = 16.0
FD_SLACK = 16


@dataclass(frozen=True)
class ProcSample:
    """One reading: seconds since sampling began, resident memory in MiB, open file descriptors."""

    t: float
    rss_mib: float
    fds: int


def read_proc(pid: int) -> tuple[float, int]:
    """(RSS MiB, open fds) of `pid` from /proc.

    Example:
        >>> rss, fds = read_proc(os.getpid()); rss > 0 and fds > 0
        True
    """
    with open(f"/proc/{pid}/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss_kib / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


async def sample_until(pid: int, stop: asyncio.Event, interval_s: float, limit_s: float) -> list[ProcSample]:
    """Sample `pid` every `interval_s` until `stop` is set or `limit_s` passes.
    """
    started = time.monotonic()
    samples = []
    while not stop.is_set() and time.monotonic() - started < limit_s:
        rss, fds = read_proc(pid)
        samples.append(ProcSample(time.monotonic() - started, rss, fds))
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except asyncio.TimeoutError:
            pass
    return samples


def flatness(samples: list[ProcSample], warmup_s: float, rss_tolerance: float = RSS_TOLERANCE,
             rss_slack_mib: float = RSS_SLACK_MIB, fd_slack: int = FD_SLACK) -> dict:
    """Whether RSS and open fds stayed flat after `warmup_s`, with the figures behind the verdict.

    Example:
        >>> leak = [ProcSample(t, 100.0 + t, 40) for t in range(0, 600, 5)]
        >>> flatness(leak, warmup_s=60)["flat"]
        False
    """
    steady = [s for s in samples if s.t >= warmup_s]
    if len(steady) < 8:
        return {"flat": False, "reason": f"only {len(steady)} samples after the {warmup_s:g}s warm-up (need 8)"}
    quarter = len(steady) // 4
    first, last = steady[:quarter], steady[-quarter:]
    rss_first = float(np.median([s.rss_mib for s in first]))
    rss_last = float(np.median([s.rss_mib for s in last]))
    rss_allowed = max(rss_first * rss_tolerance, rss_slack_mib)
    fd_first, fd_last = float(np.median([s.fds for s in first])), float(np.median([s.fds for s in last]))
    slope = float(np.polyfit([s.t for s in steady], [s.rss_mib for s in steady], 1)[0]) * 60.0
    rss_ok = rss_last - rss_first <= rss_allowed
    fd_ok = fd_last - fd_first <= fd_slack
    return {
        "flat": rss_ok and fd_ok,
        "samples": len(samples), "warmup_s": warmup_s,
        "rss_mib_first_quarter": round(rss_first, 1), "rss_mib_last_quarter": round(rss_last, 1),
        "rss_growth_mib": round(rss_last - rss_first, 1), "rss_allowed_growth_mib": round(rss_allowed, 1),
        "rss_slope_mib_per_min": round(slope, 3),
        "fds_first_quarter_median": fd_first, "fds_last_quarter_median": fd_last, "fds_allowed_growth": fd_slack,
        "rss_mib_max": round(max(s.rss_mib for s in samples), 1), "fds_max": max(s.fds for s in samples),
    }
