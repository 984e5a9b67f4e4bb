"""Merge the `loco_results.json` of several `loco_gpu` calls into one table (runs are simply pooled).

A device call has a 10-minute limit, so the nine trainings may take two or three calls; each call's
file holds its own runs, and this recomputes the table, the headline figures and the scoring
variants' tables over all of them. A training and seed present twice is refused.

Usage: `python -m lab.gpu.loco_merge CALL1/loco_results.json CALL2/loco_results.json --out DIR`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from es_rerank.errors import DatasetError
from lab.gpu.loco_gpu import finish_results


def merge(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One results object holding every run of `results`, in order, refusing a repeated training and seed.

    Example:
        >>> a = {"hardware": "h", "date": "d", "recipe": "r", "runs": [{"training": "mix", "seed": 0}], "skipped": []}
        >>> b = {**a, "runs": [{"training": "mix", "seed": 1}], "skipped": ["mix:2"]}
        >>> [(r["training"], r["seed"]) for r in merge([a, b])["runs"]], merge([a, b])["skipped"]
        ([('mix', 0), ('mix', 1)], ['mix:2'])
    """
    seen: set[tuple[str, int]] = set()
    runs = []
    for result in results:
        for run in result["runs"]:
            key = (run["training"], run["seed"])
            if key in seen:
                raise DatasetError(f"training {key[0]} seed {key[1]} is in more than one results file",
                                   hint="merge files from calls that ran different --runs")
            seen.add(key)
            runs.append(run)
    done = {f"{t}:{s}" for t, s in seen}
    skipped = sorted({s for r in results for s in r.get("skipped", []) if s not in done})
    recipes = sorted({r["recipe"] for r in results})
    if len(recipes) > 1:
        raise DatasetError(f"the results come from different recipes: {recipes}", hint="merge one recipe's calls")
    return {"hardware": results[0]["hardware"], "date": max(r["date"] for r in results), "recipe": recipes[0],
            "runs": runs, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="loco_results.json files of loco_gpu calls")
    parser.add_argument("--out", type=Path, required=True, help="folder for the merged loco_results.json and summary")
    args = parser.parse_args(argv)
    merged = merge([json.loads(path.read_text(encoding="utf-8")) for path in args.results])
    args.out.mkdir(parents=True, exist_ok=True)
    finish_results(merged, args.out)
    print((args.out / "loco_summary.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
