"""Where a reranked search's time goes: the proxy's mean time per stage, from its `/_rerank/metrics`.

The proxy records every reranked search's stages in the `es_rerank_stage_seconds` histogram
(upstream, tokenize, queue, score, rewrite, total; with `--workers` above 1 the endpoint merges
every worker's). Read after the one-client rounds, the means say which stage the added latency
is made of, which the end-to-end percentiles alone cannot. `queue` runs from a search's arrival
at the scorer to its model call, so it includes tokenizing.

Example:
    >>> text = '''es_rerank_stage_seconds_sum{stage="score"} 0.3
    ... es_rerank_stage_seconds_count{stage="score"} 100
    ... es_rerank_stage_seconds_bucket{stage="score",le="0.005"} 100
    ... es_rerank_stage_seconds_sum{stage="total"} 1.2
    ... es_rerank_stage_seconds_count{stage="total"} 100'''
    >>> stage_means_ms(text)
    {'score': 3.0, 'total': 12.0}
"""

from __future__ import annotations

import re
import urllib.request

_LINE = re.compile(r'^es_rerank_stage_seconds_(sum|count)\{stage="([a-z_]+)"\} ([0-9.eE+-]+)$')


def stage_means_ms(metrics_text: str) -> dict[str, float]:
    """Mean milliseconds per stage, over the searches each stage saw, from Prometheus text."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            kind, stage, value = match.groups()
            (sums if kind == "sum" else counts)[stage] = float(value)
    return {stage: round(1000 * sums[stage] / counts[stage], 3) for stage in sums if counts.get(stage)}


def fetch_stage_means_ms(proxy_url: str, timeout_s: float = 30.0) -> dict[str, float]:
    """`stage_means_ms` of a running proxy."""
    with urllib.request.urlopen(f"{proxy_url}/_rerank/metrics", timeout=timeout_s) as response:
        return stage_means_ms(response.read().decode("utf-8"))
