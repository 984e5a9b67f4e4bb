"""How often Python's garbage collector pauses a worker's host path, and for how long, on real responses.

The path is what an HTTP worker does around a model call: parse the upstream response keeping
its raw text, read the window's texts, tokenize the pairs (document cache warm after the first
pass), build the model server's frame, rebuild and serialise the client's page. `gc.callbacks`
times every collection. If collections were frequent or long, freezing the start-up heap
(`gc.freeze`) would be worth it for the one-client p99; this measures whether they are.

    python -m lab.bench.worker_gc --export EXPORT_DIR [--replay runs/proxy-replay/scifact-top100.jsonl.gz --passes 4]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np

from es_rerank.proxy.model_server.frames import request_frame
from es_rerank.proxy.plan import RerankSpec
from es_rerank.proxy.rawjson import dump_keeping_raw, parse_keeping_raw
from es_rerank.proxy.rewrite import reranked_page, window_texts
from es_rerank.scoring.cross_encoder import load_encoder
from lab.bench.scorer_host import leaf_strings
from lab.proxy_bench.replay import load_replay

DEFAULT_REPLAY = Path("runs/proxy-replay/scifact-top100.jsonl.gz")


class CollectionTimer:
    """Records (generation, ms) of every collection while installed."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1000))


def one_search(encoder, response: bytes, query: str) -> None:
    """The worker's host work for one search around its model call."""
    value, raw = parse_keeping_raw(response)
    if not isinstance(value, dict):
        raise SystemExit("a replayed response is not a JSON object: record the replay again")
    spec = RerankSpec(query, ("title", "text"), 100, 0, 10, 60.0)
    texts = window_texts(value, spec)
    request_frame(1, encoder.encode([query] * len(texts), texts))
    dump_keeping_raw(reranked_page(value, spec, np.linspace(1, 0, len(texts), dtype=np.float32)), raw)


def measure(export_dir: Path, replay: Path, passes: int) -> dict:
    """Collections per generation over `passes` passes of the replay; pauses per search after the first pass."""
    encoder = load_encoder(export_dir)
    searches = [(entry.response.encode(), " ".join(leaf_strings(json.loads(entry.client_body).get("query", {}))))
                for entry in load_replay(replay).searches]
    timer = CollectionTimer()
    gc.callbacks.append(timer)
    per_search = []
    try:
        for n in range(passes):
            for response, query in searches:
                before = len(timer.pauses)
                one_search(encoder, response, query)
                if n > 0:  # the first pass fills the document cache
                    per_search.append(sum(ms for _, ms in timer.pauses[before:]))
    finally:
        gc.callbacks.remove(timer)
    by_generation: dict[str, dict] = {}
    for generation, ms in timer.pauses:
        entry = by_generation.setdefault(str(generation), {"collections": 0, "max_ms": 0.0, "total_ms": 0.0})
        entry["collections"] += 1
        entry["max_ms"] = round(max(entry["max_ms"], ms), 3)
        entry["total_ms"] = round(entry["total_ms"] + ms, 3)
    paused = sorted(per_search)
    return {"searches_timed": len(paused), "by_generation": by_generation,
            "searches_with_a_pause": sum(1 for ms in paused if ms > 0),
            "pause_ms_p99": round(paused[int(0.99 * (len(paused) - 1))], 3) if paused else 0.0,
            "pause_ms_max": round(paused[-1], 3) if paused else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="an `es-rerank export` folder (its tokenizer)")
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY)
    parser.add_argument("--passes", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(measure(args.export, args.replay, args.passes), indent=2))


if __name__ == "__main__":
    main()
