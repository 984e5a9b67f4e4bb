"""Proxy benchmarks: pass-through overhead against direct OpenSearch, and the rerank stage against a replay upstream.

Each benchmark measures the proxy and its baseline in one run, in interleaved rounds, so drift in
a shared machine's load hits both alike. The proxy runs in its own process (`python -m es_rerank
serve`), as users run it; tests may pass an in-process launcher instead.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

from es_rerank.proxy.settings import ProxySettings
from es_rerank.errors import EsRerankError
from es_rerank.proxy.server import ProxyThread, serve_subprocess, wait_ready
from lab.proxy_bench.loadgen import LoadRequest, LoadResult, run_closed_loop
from lab.proxy_bench.open_rate import at_rate
from lab.proxy_bench.replay import load_replay, serve_replay
from lab.proxy_bench.stage_means import fetch_stage_means_ms

# A launcher starts a proxy relaying to the given upstream URL and yields the proxy's base URL.
Launcher = Callable[[str], ContextManager[str]]


def cli_proxy(args: Sequence[str], ready_timeout_s: float = 300.0) -> Launcher:
    """Launch `python -m es_rerank serve --opensearch UPSTREAM --port 0 ARGS` as a subprocess.
    """
    def launch(upstream: str) -> ContextManager[str]:
        return serve_subprocess(upstream, [*args, "--log-level", "warning"], ready_timeout_s)

    return launch


def thread_proxy(settings_for: Callable[[str], ProxySettings], scorer) -> Launcher:
    """Launch the proxy in-process on a background thread (tests; any Scorer object).
    """
    @contextlib.contextmanager
    def launch(upstream: str) -> Iterator[str]:
        with ProxyThread(settings_for(upstream), scorer) as proxy:
            wait_ready(proxy.url, 120.0)
            yield proxy.url

    return launch


def _rounds(targets: dict[str, tuple[str, list[LoadRequest]]], clients: int, duration_s: float,
            rounds: int, warmup_s: float) -> dict[str, LoadResult]:
    """Run each target `rounds` times, alternating the order each round (ABBA), merging results per target."""
    merged = {name: LoadResult() for name in targets}
    names = list(targets)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            url, requests = targets[name]
            merged[name] = merged[name].merge(run_closed_loop(url, requests, clients, duration_s, warmup_s))
    return merged


def passthrough_benchmark(opensearch_url: str, requests: list[LoadRequest], launcher: Launcher, clients: int = 16,
                          duration_s: float = 5.0, rounds: int = 4, warmup_s: float = 1.0) -> dict:
    """Req/s at `clients` and p50/p99 at one client, through the proxy (reranking off) and direct, one run.
    """
    with launcher(opensearch_url) as proxy_url:
        targets = {"direct": (opensearch_url, requests), "proxy": (proxy_url, requests)}
        latency = _rounds(targets, 1, duration_s, rounds, warmup_s)
        load = _rounds(targets, clients, duration_s, rounds, warmup_s)
    return {
        "throughput_ratio": round(load["proxy"].rps / load["direct"].rps, 3),
        "added_p50_ms": round(latency["proxy"].percentile(50) - latency["direct"].percentile(50), 3),
        "added_p99_ms": round(latency["proxy"].percentile(99) - latency["direct"].percentile(99), 3),
        "one_client": {name: result.summary() for name, result in latency.items()},
        f"{clients}_clients": {name: result.summary() for name, result in load.items()},
        "hardware": hardware(),
    }


def rerank_benchmark(replay_path: Path, launcher_for: Callable[[bool], Launcher], clients: int = 64,
                     duration_s: float = 10.0, rounds: int = 4, warmup_s: float = 2.0,
                     latency_duration_s: float = 10.0, baseline: Launcher | None = None,
                     rates: Sequence[float] = ()) -> dict:
    """Rerank stage through the proxy against a replay upstream: added p50/p99 at one client, req/s at saturation.

    `launcher_for(batching)` gives a launcher with cross-request batching on or off. The baseline for
    "added" is the same window request sent straight to the replay upstream. With `baseline` (the
    server a user would write, `st_baseline`), the proxy (batching on) and the baseline also run in
    interleaved rounds at `clients` and at one client, on the same replayed windows. The proxy's mean
    time per stage over the one-client rounds (`stage_means`) says what the added latency is made of.
    Each of `rates` (searches a second) is then offered open loop for `duration_s` (batching on):
    p50/p99 at that rate.
    """
    replay = load_replay(replay_path)
    searches = replay.searches
    if not searches:
        raise EsRerankError(f"{replay_path} holds no searches", hint="record again with more queries")
    direct_requests = [LoadRequest("POST", e.path_qs, e.body.encode()) for e in searches]
    proxy_requests = [LoadRequest("POST", e.client_path, e.client_body.encode()) for e in searches]
    with replay_upstream(replay_path) as upstream:
        with launcher_for(True)(upstream) as proxy_url:
            targets = {"direct": (upstream, direct_requests), "proxy": (proxy_url, proxy_requests)}
            latency = _rounds(targets, 1, latency_duration_s, rounds, warmup_s)
            stages = fetch_stage_means_ms(proxy_url)  # so far only one-client searches
            batched = run_closed_loop(proxy_url, proxy_requests, clients, duration_s, warmup_s)
            open_loop = {f"{rate:g}": at_rate(proxy_url, proxy_requests, rate, duration_s) for rate in rates}
            versus = _versus_baseline(baseline, upstream, proxy_url, proxy_requests, clients, duration_s,
                                      rounds, warmup_s, latency_duration_s) if baseline else {}
        with launcher_for(False)(upstream) as proxy_url:
            unbatched = run_closed_loop(proxy_url, proxy_requests, clients, duration_s, warmup_s)
    return {
        **versus,
        "candidates": replay.header.get("window"),
        "added_p50_ms_1client": round(latency["proxy"].percentile(50) - latency["direct"].percentile(50), 3),
        "added_p99_ms_1client": round(latency["proxy"].percentile(99) - latency["direct"].percentile(99), 3),
        "rps_batched": round(batched.rps, 1),
        "rps_unbatched": round(unbatched.rps, 1),
        "batching_speedup": round(batched.rps / unbatched.rps, 3) if unbatched.rps else None,
        "one_client": {name: result.summary() for name, result in latency.items()},
        "one_client_stage_means_ms": stages,
        f"{clients}_clients_batched": batched.summary(),
        f"{clients}_clients_unbatched": unbatched.summary(),
        **({"open_loop_rps": open_loop} if open_loop else {}),
        "hardware": hardware(),
    }


def _versus_baseline(baseline: Launcher, upstream: str, proxy_url: str, requests: list[LoadRequest], clients: int,
                     duration_s: float, rounds: int, warmup_s: float, latency_duration_s: float) -> dict:
    """Req/s and p99 of the proxy and the baseline, interleaved rounds at `clients` and at one client."""
    with baseline(upstream) as baseline_url:
        targets = {"proxy": (proxy_url, requests), "baseline": (baseline_url, requests)}
        load = _rounds(targets, clients, duration_s / 2, rounds, warmup_s)
        latency = _rounds(targets, 1, latency_duration_s / 2, rounds, warmup_s)
    rps = {name: result.rps for name, result in load.items()}
    return {
        "vs_sentence_transformers": round(rps["proxy"] / rps["baseline"], 3) if rps["baseline"] else None,
        "vs_sentence_transformers_p99_1client": round(latency["baseline"].percentile(99)
                                                      / max(latency["proxy"].percentile(99), 1e-9), 3),
        f"{clients}_clients_vs_baseline": {name: result.summary() for name, result in load.items()},
        "one_client_vs_baseline": {name: result.summary() for name, result in latency.items()},
    }


@contextlib.contextmanager
def replay_upstream(replay_path: Path) -> Iterator[str]:
    """Serve a replay file from a separate process (so it does not share a GIL with the load generator).
    """
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=serve_replay, args=(str(replay_path), ports), daemon=True)
    process.start()
    try:
        port = ports.get(timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(10)


def hardware() -> str:
    """CPU count, platform and GPU name (when nvidia-smi is there), for the benchmark record.

    Example:
        >>> "CPU cores" in hardware()
        True
    """
    text = f"{os.cpu_count()} CPU cores, {platform.machine()} {platform.system()}"
    if shutil.which("nvidia-smi"):
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10).stdout.strip().splitlines()
            if gpu:
                text += f", {len(gpu)}x {gpu[0]}"
        except (OSError, subprocess.SubprocessError):
            pass
    return text
