"""One scrape for a multi-process proxy: the Prometheus texts of every worker, summed sample by sample.

Under `serve --workers N` a scrape of `/_rerank/metrics` lands on whichever worker the kernel
picks, so that worker reads the others' metrics over their Unix sockets and answers the sum.
Counters and histogram buckets add up across processes, and so do the gauges the proxy keeps
(in flight, connections). `es_rerank_ready` becomes the number of ready workers, and
`es_rerank_workers_reporting` says how many processes the sum covers.

Example:
    >>> a = "# HELP x_total X.\\n# TYPE x_total counter\\nx_total{kind=\\"a\\"} 1\\nx_total{kind=\\"b\\"} 2\\n"
    >>> b = "# HELP x_total X.\\n# TYPE x_total counter\\nx_total{kind=\\"a\\"} 3\\n"
    >>> print(merge_texts([a, b]), end="")
    # HELP x_total X.
    # TYPE x_total counter
    x_total{kind="a"} 4
    x_total{kind="b"} 2
    # HELP es_rerank_workers_reporting Proxy processes whose metrics this scrape sums.
    # TYPE es_rerank_workers_reporting gauge
    es_rerank_workers_reporting 2
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import aiohttp

from es_rerank.proxy.metrics import format_number

WORKER_SCOPE = "worker"  # `/_rerank/metrics?scope=worker`: this process's metrics only
_PEER_TIMEOUT_S = 2.0


def merge_texts(texts: Sequence[str]) -> str:
    """The sum of Prometheus text expositions with the same metric families, in first-seen order."""
    comments: dict[str, list[str]] = {}
    samples: dict[str, dict[str, float]] = {}
    for text in texts:
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                family = parts[2] if len(parts) > 2 else ""
                known = comments.setdefault(family, [])
                if line not in known:
                    known.append(line)
                samples.setdefault(family, {})
                continue
            key, _, value = line.rpartition(" ")
            family = _family_of(key, samples)
            series = samples.setdefault(family, {})
            series[key] = series.get(key, 0.0) + float(value)
    lines = []
    for family, series in samples.items():
        lines += comments.get(family, [])
        lines += [f"{key} {format_number(value)}" for key, value in series.items()]
    lines += ["# HELP es_rerank_workers_reporting Proxy processes whose metrics this scrape sums.",
              "# TYPE es_rerank_workers_reporting gauge", f"es_rerank_workers_reporting {len(texts)}"]
    return "\n".join(lines) + "\n"


async def peer_texts(sockets: Sequence[str], path: str) -> list[str]:
    """The metrics text of each peer worker that answers on its Unix socket; a peer being
    restarted is left out (the `es_rerank_workers_reporting` gauge shows it)."""
    async def one(socket_path: str) -> str | None:
        try:
            connector = aiohttp.UnixConnector(path=socket_path)
            timeout = aiohttp.ClientTimeout(total=_PEER_TIMEOUT_S)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.get(f"http://worker{path}", params={"scope": WORKER_SCOPE}) as response:
                    return await response.text() if response.status == 200 else None
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError):
            return None

    found = await asyncio.gather(*(one(s) for s in sockets))
    return [text for text in found if text is not None]


def _family_of(key: str, known: dict[str, dict[str, float]]) -> str:
    """The family a sample belongs to: its name, less a histogram suffix when the base is a known family."""
    name = key.split("{", 1)[0]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return name
