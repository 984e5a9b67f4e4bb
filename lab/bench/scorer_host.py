"""The host side of one CUDA model call, against another version of the scorer, in one run.

`OnnxScorer.score_encoded` on the CUDA path plans the batches, pads them and keeps a helper thread
one batch ahead. Here its session answers at once, so what is timed is only that host work and
its thread hops: what a model call costs beyond the GPU's own time. The windows are real (the
replayed SciFact top-100 texts through the export's tokenizer), one window a call, as at one client.
The rounds alternate the sides (ABBA), so a shared machine's load falls on both alike; the figure
to keep is the ratio. Run from a checkout:

    python -m lab.bench.scorer_host --export EXPORT_DIR --against OLD_CROSS_ENCODER.py
        [--replay runs/proxy-replay/scifact-top100.jsonl.gz --windows 50 --rounds 8]

`--against` is another es_rerank/scoring/cross_encoder.py (e.g. `git show REV:es_rerank/scoring/cross_encoder.py`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.scoring.cross_encoder import OnnxScorer, load_encoder
from es_rerank.scoring.export_meta import read_meta
from es_rerank.scoring.token_batches import EncodedBatch, EncodedPair
from lab.bench.other_version import load_module
from lab.proxy_bench.replay import load_replay

DEFAULT_REPLAY = Path("runs/proxy-replay/scifact-top100.jsonl.gz")
MODEL_SERVER_ROWS = 1024  # the model server runs a whole window in one batch


class InstantSession:
    """A CUDA session that answers at once, after building the inputs a real run would bind."""

    device = "cuda"

    def __init__(self, input_names: Sequence[str]) -> None:
        self.input_names = list(input_names)

    def run(self, batch: EncodedBatch) -> np.ndarray:
        batch.arrays(self.input_names)
        return np.zeros((batch.shape[0], 1), dtype=np.float32)


def scorer_of(scorer_class, export_dir: Path, batch_tokens: int = 65_536):
    """An `OnnxScorer` (of this or another cross_encoder.py) over an instant session."""
    meta = read_meta(export_dir)
    return scorer_class(InstantSession(meta.input_names), load_encoder(export_dir, meta), meta, None,
                        MODEL_SERVER_ROWS, batch_tokens)


def ms_per_window(scorer, windows: list[Sequence[EncodedPair]]) -> float:
    started = time.perf_counter()
    for pairs in windows:
        scorer.score_encoded(pairs)
    return (time.perf_counter() - started) / len(windows) * 1000


def compare(sides: dict[str, object], windows: list[Sequence[EncodedPair]], rounds: int) -> dict:
    """Median ms a window of each side over `rounds` rounds (the order reversed every other round)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            times[name].append(ms_per_window(sides[name], windows))
    medians = {name: statistics.median(values) for name, values in times.items()}
    figures: dict = {"windows": len(windows), "pairs_per_window": round(sum(map(len, windows)) / len(windows), 1),
                     "ms_per_window": {name: round(value, 4) for name, value in medians.items()}}
    if "against" in medians:
        figures["speedup_over_against"] = round(medians["against"] / medians["current"], 3)
    return figures


def load_scorer_class(path: Path):
    """`OnnxScorer` of another cross_encoder.py file."""
    return load_module(path, "cross_encoder_against").OnnxScorer


def replay_windows(replay: Path, export_dir: Path, count: int) -> list[Sequence[EncodedPair]]:
    """The first `count` replayed searches' windows, tokenized as the proxy tokenizes them."""
    from es_rerank.proxy.rawjson import parse_keeping_raw
    from es_rerank.proxy.rewrite import response_hits

    encoder = load_encoder(export_dir)
    windows: list[Sequence[EncodedPair]] = []
    for entry in load_replay(replay).searches[:count]:
        hits = response_hits(parse_keeping_raw(entry.response.encode())[0]) or []
        texts = [" ".join(str(hit["_source"].get(f, "")) for f in ("title", "text")) for hit in hits]
        query = " ".join(leaf_strings(json.loads(entry.client_body).get("query", {})))
        windows.append(encoder.encode([query] * len(texts), texts))
    return windows


def leaf_strings(value) -> list[str]:
    """The strings inside a JSON value: a search's query text, close enough for timing.

    Example:
        >>> leaf_strings({"match": {"text": {"query": "gene therapy", "boost": 2}}})
        ['gene therapy']
    """
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [s for item in items for s in leaf_strings(item)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="an `es-rerank export` folder (its tokenizer)")
    parser.add_argument("--against", type=Path, default=None, help="another cross_encoder.py to time in the same rounds")
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    windows = replay_windows(args.replay, args.export, args.windows)
    sides = {"current": scorer_of(OnnxScorer, args.export)}
    if args.against is not None:
        sides["against"] = scorer_of(load_scorer_class(args.against), args.export)
    for scorer in sides.values():  # the first calls start the helper threads
        ms_per_window(scorer, windows[:5])
    print(json.dumps(compare(sides, windows, args.rounds), indent=2))


if __name__ == "__main__":
    main()
