"""How much could any fixed weight on the cross-encoder give, out of domain? From `loco_gpu` CE scores.

The served system fuses z-scores of the CE, BM25 and the bi-encoder at 1/3 each. Out of domain
it sits below the untrained BM25 + bi-encoder fusion, so the question for issue 17's second goal
(served at least 0.02 above that fusion, on the mean over the leave-one-collection-out rows) is
whether the weight is the problem or the CE is. This scores every row's runs with the CE at
weight w and BM25 and the bi-encoder at (1 - w) / 2 each, for w on a grid, and reports per row and
on the mean over rows the served gap to the better untrained fusion, and each row's best w (an
oracle: chosen on the test labels, so an upper bound for any fixed or label-free weight rule
that gives each collection one weight, not a system to serve).

    python -m lab.gpu.loco_ce_weight --carry UNPACKED_CARRY --dense-cache DIR --out FILE CALL/ce-scores-*.json

The dense column is embedded once on the CPU (minutes) and kept in `--dense-cache`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from lab.gpu.loco_gpu import EVALUATIONS, REFERENCES, add_dense, row_training
from lab.gpu.loco_rescore import run_of

WEIGHTS = (0.0, 0.1, 0.2, 0.25, 1 / 3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # 1/3: what serve runs


def _label(weight: float) -> str:
    """A weight's name in the figures.

    Example:
        >>> _label(1 / 3), _label(0.5)
        ('ce=0.333', 'ce=0.500')
    """
    return f"ce={weight:.3f}"


def dense_scored(carry: Path, cache: Path) -> dict[str, Path]:
    """Each evaluation set's candidates with the dense column, embedded once into `cache`."""
    import torch

    names = [n for n in EVALUATIONS if (carry / "cands" / f"{n}.jsonl").is_file()]
    cached = {n: cache / f"{n}.scored.jsonl.gz" for n in names}
    if all(path.is_file() for path in cached.values()):
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    return add_dense(carry, cache, torch.device("cpu"))


def weight_figures(scored: Path, qrels_file: Path, ce_scores: dict[str, list[float]]) -> dict[str, float]:
    """nDCG@10 of the untrained references and of the fusion at every CE weight of `WEIGHTS`."""
    from es_rerank.data.beir import read_qrels
    from es_rerank.data.candidates import read_candidates
    from es_rerank.scoring.fusion import FusionWeights
    from es_rerank.training.evaluate import FUSED_SYSTEMS, system_figures

    cands = read_candidates(scored)
    for query in cands.queries:
        query.scores["ce"] = np.asarray(ce_scores[query.query_id], dtype=np.float32)
    fused = {_label(w): FusionWeights(ce=w, bm25=(1 - w) / 2, dense=(1 - w) / 2, norm="zscore") for w in WEIGHTS}
    fused.update({"bm25_dense_fused": FUSED_SYSTEMS["bm25_dense_fused"],
                  "bm25_dense_zscore": FusionWeights(ce=0.0, bm25=0.5, dense=0.5, norm="zscore")})
    return system_figures(cands, read_qrels(qrels_file), fused)


def analyse(scores_files: list[Path], carry: Path, cache: Path) -> dict[str, Any]:
    runs = [(path, *run_of(path)) for path in scores_files]
    scored = dense_scored(carry, cache)
    trainings = {training for _, training, _ in runs}
    rows: dict[str, Any] = {}
    for name, path in scored.items():
        training = row_training(name, trainings)
        if training is None:
            continue
        gaps: dict[float, list[float]] = {w: [] for w in WEIGHTS}
        for scores_path, run_training, _seed in runs:
            if run_training != training:
                continue
            ce = json.loads(scores_path.read_text(encoding="utf-8"))["recipe"][name]
            figures = weight_figures(path, carry / "qrels" / f"{name}.tsv", ce)
            reference = max(figures[r] for r in REFERENCES)
            for w in WEIGHTS:
                gaps[w].append(figures[_label(w)] - reference)
        means = {w: statistics.mean(values) for w, values in gaps.items()}
        best = max(means, key=lambda w: means[w])
        rows[name] = {"training": training, "seeds": len(gaps[0.0]),
                      "served_minus_best_bm25_dense_by_ce_weight": {_label(w): round(v, 4) for w, v in means.items()},
                      "best_weight": _label(best), "best_gap": round(means[best], 4)}
    mean_by_weight = {_label(w): round(statistics.mean(r["served_minus_best_bm25_dense_by_ce_weight"][_label(w)]
                                                    for r in rows.values()), 4) for w in WEIGHTS}
    return {"weights": [_label(w) for w in WEIGHTS], "rows": rows, "mean_over_rows_by_ce_weight": mean_by_weight,
            "mean_over_rows_best_weight_per_row": round(statistics.mean(r["best_gap"] for r in rows.values()), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path, nargs="+", help="ce-scores-TRAINING-sSEED.json files of loco_gpu")
    parser.add_argument("--carry", type=Path, required=True, help="the unpacked carry the runs used")
    parser.add_argument("--dense-cache", type=Path, required=True, help="where the dense-scored candidates are kept")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    figures = analyse(args.scores, args.carry, args.dense_cache)
    args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in figures.items() if k != "rows"}, indent=1))
    for name, row in figures["rows"].items():
        print(f"{name} ({row['training']}, {row['seeds']} seeds): best weight {row['best_weight']} "
              f"gap {row['best_gap']:+.4f}; at 1/3 {row['served_minus_best_bm25_dense_by_ce_weight'][_label(1 / 3)]:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
