"""Rebuild `loco_gpu` results from the CE scores its runs wrote (`--write-scores`), without a GPU.

A device call returns only a few files, so a call's `loco_results.json` can be left behind while
its `ce-scores-TRAINING-sSEED.json` files come back. This recomputes every run's figures from those
scores on the carry's candidates: the dense column is embedded again here (in float32 on the CPU,
where the GPU run used float16, so the figures that use it can differ in the fourth decimal), and
`--check` compares the rebuilt figures with a results file that holds some of the same runs.

Usage: `python -m lab.gpu.loco_rescore --carry UNPACKED_CARRY --recipe RECIPE --out DIR
CALL/ce-scores-*.json [--check CALL2/loco_results.json]`
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from lab.gpu.loco_gpu import TRAININGS, add_dense, finish_results, set_figures

SCORES_NAME = re.compile(r"ce-scores-(?P<training>[a-z-]+)-s(?P<seed>\d+)\.json")


def run_of(scores_path: Path) -> tuple[str, int]:
    """The training and seed a scores file's name gives.

    Example:
        >>> run_of(Path("out/ce-scores-squad-only-s2.json"))
        ('squad-only', 2)
        >>> run_of(Path("scores.json"))
        Traceback (most recent call last):
        ...
        SystemExit: scores.json is not named ce-scores-TRAINING-sSEED.json, as loco_gpu --write-scores names them
    """
    match = SCORES_NAME.fullmatch(scores_path.name)
    if not match or match["training"] not in TRAININGS:
        raise SystemExit(f"{scores_path.name} is not named ce-scores-TRAINING-sSEED.json, "
                         "as loco_gpu --write-scores names them")
    return match["training"], int(match["seed"])


def rescored_figures(scored: dict[str, Path], carry: Path, ce_scores: dict[str, dict[str, list[float]]]
                     ) -> dict[str, dict[str, float]]:
    """Every system's figures on each set, with `ce_scores` ({set: {qid: scores in candidate order}}) as the CE."""
    from es_rerank.data.candidates import read_candidates

    figures = {}
    for name, path in scored.items():
        cands = read_candidates(path)
        by_query = ce_scores.get(name)
        if by_query is None or set(by_query) != {q.query_id for q in cands.queries}:
            raise SystemExit(f"the scores do not cover the queries of {name}: rebuild from the carry the run used")
        for query in cands.queries:
            scores = np.asarray(by_query[query.query_id], dtype=np.float32)
            if len(scores) != len(query.doc_ids):
                raise SystemExit(f"{name} query {query.query_id}: {len(scores)} scores for {len(query.doc_ids)} "
                                 "candidates: rebuild from the carry the run used")
            query.scores["ce"] = scores
        figures[name] = set_figures(cands, carry, name)
    return figures


def largest_differences(rebuilt: list[dict], reference: dict[str, Any]) -> dict[str, float]:
    """Per system, the largest absolute difference between rebuilt and reference figures of the same runs."""
    worst: dict[str, float] = {}
    for ref in reference["runs"]:
        mine = next((r for r in rebuilt if (r["training"], r["seed"]) == (ref["training"], ref["seed"])), None)
        if mine is None:
            continue
        for name, systems in ref["figures"].items():
            for system, value in systems.items():
                if system in mine["figures"].get(name, {}):
                    worst[system] = max(worst.get(system, 0.0), abs(mine["figures"][name][system] - value))
    return worst


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path, nargs="+", help="ce-scores-TRAINING-sSEED.json files of loco_gpu")
    parser.add_argument("--carry", type=Path, required=True, help="the unpacked carry the runs used")
    parser.add_argument("--recipe", required=True, help="the recipe file name the runs trained")
    parser.add_argument("--hardware", default="CE scores from a GPU run, rebuilt on the CPU",
                        help="what the results' hardware line says")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--check", type=Path, default=None, help="a loco_results.json holding some of these runs")
    args = parser.parse_args(argv)
    runs_named = [(path, *run_of(path)) for path in args.scores]  # a misnamed file fails before the embedding
    with tempfile.TemporaryDirectory() as work:
        scored = add_dense(args.carry, Path(work), torch.device("cpu"))  # minutes on a CPU
        runs = []
        for path, training, seed in runs_named:
            ce_scores = json.loads(path.read_text(encoding="utf-8"))["recipe"]
            runs.append({"training": training, "seed": seed, "figures": rescored_figures(scored, args.carry, ce_scores),
                         "rebuilt_from": path.name})
            print(f"rebuilt {training} seed {seed}", flush=True)
    results: dict[str, Any] = {"hardware": args.hardware, "date": date.today().isoformat(),
                               "recipe": Path(args.recipe).name, "runs": runs, "skipped": []}
    if args.check:
        results["check"] = largest_differences(runs, json.loads(args.check.read_text(encoding="utf-8")))
        print("largest difference against", args.check.name, json.dumps(results["check"], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    finish_results(results, args.out)
    print((args.out / "loco_summary.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
