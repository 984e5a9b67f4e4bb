"""The proxy's parse of an upstream search response, against json.loads of the same bytes, in one run.

`parse_keeping_raw` keeps the text of every value below the hits so that what the proxy does not
change goes back byte for byte; json.loads keeps nothing and is the floor for any parse in
Python. The rounds alternate the two (ABBA) over the replayed real responses, so a shared
machine's load falls on both alike; the figure to keep is the ratio. Run from a checkout:

    python -m lab.bench.response_parse [--replay runs/proxy-replay/scifact-top100.jsonl.gz --rounds 8]
        [--against OLD_RAWJSON.py]

The replay is `es-rerank bench proxy record`'s file (real SciFact top-100 responses, `_source` in full).
`--against` also times another version of es_rerank/proxy/rawjson.py (e.g. `git show REV:es_rerank/proxy/rawjson.py`)
in the same rounds, after checking that it parses every response to the same values and texts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

from es_rerank.proxy.rawjson import parse_keeping_raw
from lab.bench.other_version import load_module
from lab.proxy_bench.replay import load_replay

DEFAULT_REPLAY = Path("runs/proxy-replay/scifact-top100.jsonl.gz")


def ms_per_response(parse: Callable[[bytes], object], bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for body in bodies:
        parse(body)
    return (time.perf_counter() - started) / len(bodies) * 1000


def compare(bodies: list[bytes], rounds: int, against: Callable[[bytes], tuple] | None = None) -> dict:
    """Median ms a response of each parse over `rounds` rounds (the order reversed every other round), and ratios."""
    sides: dict[str, Callable[[bytes], object]] = {"keeping_raw": parse_keeping_raw, "json_loads": json.loads}
    if against is not None:
        sides["against"] = against
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            times[name].append(ms_per_response(sides[name], bodies))
    medians = {name: statistics.median(values) for name, values in times.items()}
    figures = {"responses": len(bodies), "mean_bytes": round(sum(map(len, bodies)) / len(bodies)),
               "ms_per_response": {name: round(value, 4) for name, value in medians.items()},
               "keeping_raw_over_json_loads": round(medians["keeping_raw"] / medians["json_loads"], 3)}
    if against is not None:
        figures["speedup_over_against"] = round(medians["against"] / medians["keeping_raw"], 3)
    return figures


def load_parse(path: Path) -> Callable[[bytes], tuple]:
    """`parse_keeping_raw` of another rawjson.py file."""
    return load_module(path, "rawjson_against").parse_keeping_raw


def same_parse(parse: Callable[[bytes], tuple], other: Callable[[bytes], tuple], bodies: list[bytes]) -> None:
    for body in bodies:
        (value, raw), (other_value, other_raw) = parse(body), other(body)
        if value != other_value or sorted(t for _, t in raw.values()) != sorted(t for _, t in other_raw.values()):
            raise SystemExit("the two versions parse a response differently: their times do not compare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--against", type=Path, default=None, help="another rawjson.py to time in the same rounds")
    args = parser.parse_args()
    bodies = [entry.response.encode() for entry in load_replay(args.replay).searches]
    against = load_parse(args.against) if args.against is not None else None
    if against is not None:
        same_parse(parse_keeping_raw, against, bodies)
    print(json.dumps(compare(bodies, args.rounds, against), indent=2))


if __name__ == "__main__":
    main()
