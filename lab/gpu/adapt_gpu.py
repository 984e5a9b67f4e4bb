"""The adapt experiment of issue 8 in one process on one GPU machine (no OpenSearch, no network).

For each variant (a recipe of `recipes/adapt/` plus overrides), in priority order until
`--max-minutes` is spent: adapt a student on the SciFact pseudo-query groups and measure it on
the SciFact train-dev candidates (the only judgments any choice may look at) and SciFact test;
then adapt one on the Cranfield groups with the same settings and measure it on Cranfield test.
The variant reported as selected is the one with the best SciFact train-dev nDCG@10 of
`adapted_fused_dense` (the system one would serve), chosen by rule, never by a test figure.

The carry folder (made here with `es-rerank adapt --prepare-only` and `score-candidates`) holds:
`base/` (the student's starting model, a float16 copy), `scifact.groups.jsonl.gz`,
`cranfield.groups.jsonl.gz`, `scifact-dev.scored.jsonl.gz`, `scifact-test.scored.jsonl.gz`,
`cranfield-test.scored.jsonl.gz` (BM25 top-100 with bm25 and dense columns) and
`qrels/{scifact-train,scifact-test,cranfield-test}.tsv`.

Written to `--out` (the device machine returns at most 8 files of 16 MiB): `adapt_results.json`,
`adapt_summary.md`, and `adapt-bundle.tar.part-*`, a tar holding the SciFact and Cranfield test
candidates scored by the first and the selected variant's students (`ce` column, for `es-rerank
bench fusion` to recompute every figure with ir_measures) and, unless `--no-checkpoint`, the
selected Cranfield student in float16 (`checkpoint/`). Rebuild: `cat adapt-bundle.tar.part-* | tar -x`.
Students are trained in `--work` (a scratch folder), not in `--out`.

Usage: `python -m lab.gpu.adapt_gpu --carry artifacts/adapt-carry --out $OUT`
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

# (variant name, recipe file in recipes/adapt, overrides of its train block), in priority order:
# the recipe itself, then one pseudo-query source at a time (each a third of the data, so cheap),
# then the loss, the teacher, and the pseudo-positive's role.
VARIANTS: list[tuple[str, str, dict[str, object]]] = [
    ("fused-kl", "fused-teacher-kl.yaml", {}),
    ("fused-kl-title", "fused-teacher-kl.yaml", {"train_sources": ["title"]}),
    ("fused-kl-first", "fused-teacher-kl.yaml", {"train_sources": ["first"]}),
    ("fused-kl-ict", "fused-teacher-kl.yaml", {"train_sources": ["ict"]}),
    ("fused-margin-mse", "fused-teacher-kl.yaml", {"loss": "margin_mse"}),
    ("dense-teacher-kl", "fused-teacher-kl.yaml", {"teacher_bm25": 0.0, "teacher_dense": 1.0}),
    ("fused-kl-positive-lce", "fused-teacher-kl.yaml", {"positive_lce_weight": 0.5}),
    ("fused-kl-no-positive", "fused-teacher-kl.yaml", {"include_positive": False}),
]
SELECT_BY = "adapted_fused_dense"
# What each collection's students are measured on: (figure label, candidates file stem).
EVALUATIONS = {"scifact": [("scifact_dev", "scifact-dev"), ("scifact_test", "scifact-test")],
               "cranfield": [("cranfield_test", "cranfield-test")]}
QRELS = {"scifact-dev": "scifact-train", "scifact-test": "scifact-test", "cranfield-test": "cranfield-test"}
RECIPES = Path("recipes") / "adapt"  # relative to the repository root the command runs in


@dataclass(frozen=True)
class Carry:
    """The files the experiment reads, all under one folder."""

    root: Path

    def groups(self, collection: str) -> Path:
        return self.root / f"{collection}.groups.jsonl.gz"

    def candidates(self, name: str) -> Path:
        return self.root / f"{name}.scored.jsonl.gz"

    def qrels(self, name: str) -> Path:
        return self.root / "qrels" / f"{name}.tsv"

    @property
    def base(self) -> Path:
        return self.root / "base"


def run_variant(carry: Carry, work: Path, name: str, recipe: str, overrides: dict, recipes: Path,
                collections: list[str], scored_dir: Path | None) -> dict[str, Any]:
    """Adapt and measure one variant on each collection; returns its figures and logs.

    With `scored_dir`, the test candidates scored by the students are written there.
    """
    from es_rerank.training.adapt_config import build_adapt_config, read_adapt_recipe
    from es_rerank.training.adapt import AdaptInputs, adapt

    _, train = read_adapt_recipe(recipes / recipe)
    config = build_adapt_config({**train, **overrides, "base_model": str(carry.base), "save_every": 0})
    result: dict[str, Any] = {"recipe": recipe, "overrides": overrides, "config": config.to_dict()}
    for collection in collections:
        run_dir = work / f"{collection}-{name}"
        started = time.monotonic()
        log = adapt(config, AdaptInputs(carry.groups(collection)), run_dir, show_progress=False)
        figures = {}
        for label, cands in EVALUATIONS[collection]:
            keep = scored_dir is not None and label.endswith("_test")
            figures[label] = measure(carry, run_dir, config.max_length, config.query_max_length, cands,
                                     f"adapt {name} on {collection}",
                                     scored_dir / f"{cands}.{name}.scored.jsonl.gz" if keep else None)
        result[collection] = {"figures": figures, "probe_loss": log["probe_loss"], "steps": log["steps_done"],
                              "pseudo_queries": log["units"]["pseudo"], "pairs_per_s": log["pairs_per_s"],
                              "train_seconds": log["train_seconds"], "wall_seconds": time.monotonic() - started,
                              "checkpoint": str(run_dir)}
    return result


def measure(carry: Carry, checkpoint: Path, max_length: int, query_max_length: int, cands: str, label: str,
            scored: Path | None) -> dict[str, float]:
    """nDCG@10 of every system on one candidates file, with `checkpoint` as the adapted model."""
    import torch

    from es_rerank.data.beir import read_qrels
    from es_rerank.training.evaluate import evaluate_student
    from es_rerank.training.adapt import EVAL_BATCH
    from es_rerank.training.model import load_cross_encoder, make_scorer, scoring_mode

    model, tokenizer = load_cross_encoder(str(checkpoint))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    scorer = make_scorer(model, tokenizer, max_length, query_max_length, device, EVAL_BATCH)
    with scoring_mode(model, device, torch.float16 if device.type == "cuda" else None):
        figures = evaluate_student(scorer, carry.candidates(cands), read_qrels(carry.qrels(QRELS[cands])), label,
                                   scored)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return figures


def render_summary(results: dict[str, Any]) -> str:
    """A markdown table: nDCG@10 of every system, per variant and evaluation set."""
    lines = [f"# adapt experiment ({results['hardware']}, {results['date']})", "",
             f"selected by SciFact train-dev {SELECT_BY}: **{results.get('selected')}**", ""]
    systems = ["bm25", "dense", "bm25_dense_fused", "adapted", "adapted_fused", "adapted_fused_dense"]
    lines.append("| variant | set | " + " | ".join(systems) + " | probe loss before -> after |")
    lines.append("|---" * (len(systems) + 3) + "|")
    for name, variant in results["variants"].items():
        for collection in ("scifact", "cranfield"):
            if collection not in variant:
                continue
            probe = variant[collection]["probe_loss"]
            for label, figures in variant[collection]["figures"].items():
                cells = " | ".join(f"{figures[s]:.4f}" if s in figures else "-" for s in systems)
                lines.append(f"| {name} | {label} | {cells} | {probe.get('before', 0):.3f} -> "
                             f"{probe.get('after', 0):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carry", type=Path, required=True, help="folder with the groups, candidates and base model")
    parser.add_argument("--out", type=Path, required=True, help="where results come back")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for the students (default: a temp dir)")
    parser.add_argument("--max-minutes", type=float, default=2.5, help="start no variant after this many minutes")
    parser.add_argument("--variants", default=None, help="comma-separated subset of variant names, in order")
    parser.add_argument("--recipes", type=Path, default=RECIPES, help="folder of the adapt recipes")
    parser.add_argument("--no-checkpoint", action="store_true", help="do not return the selected Cranfield student")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override a train setting of every variant (YAML value), e.g. --set epochs=1")
    args = parser.parse_args(argv)
    common: dict[str, object] = dict(_setting(text) for text in args.settings)
    started = time.monotonic()
    carry = Carry(args.carry)
    work = args.work or Path(tempfile.mkdtemp(prefix="adapt-"))
    bundle = work / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = VARIANTS if not args.variants else [v for n in args.variants.split(",") for v in VARIANTS if v[0] == n]
    if not chosen:
        parser.error(f"no known variant in {args.variants!r}; known: {', '.join(v[0] for v in VARIANTS)}")
    results: dict[str, Any] = {"hardware": _hardware(), "date": date.today().isoformat(), "select_by": SELECT_BY,
                               "variants": {}, "skipped": []}
    for index, (name, recipe, overrides) in enumerate(chosen):
        if (time.monotonic() - started) / 60 > args.max_minutes:
            results["skipped"].append(name)
            continue
        print(f"[{(time.monotonic() - started) / 60:.1f} min] variant {name}", flush=True)
        results["variants"][name] = run_variant(carry, work, name, recipe, {**overrides, **common}, args.recipes,
                                                ["scifact", "cranfield"], bundle if index == 0 else None)
        _select(results)
        _write(results, args.out)
    selected = results.get("selected")
    if selected and selected != chosen[0][0]:  # the first variant's test files are scored already
        variant = results["variants"][selected]
        for collection, cands in (("scifact", "scifact-test"), ("cranfield", "cranfield-test")):
            measure(carry, Path(variant[collection]["checkpoint"]), variant["config"]["max_length"],
                    variant["config"]["query_max_length"], cands, f"adapt {selected} on {collection}",
                    bundle / f"{cands}.{selected}.scored.jsonl.gz")
    if selected and not args.no_checkpoint:
        from lab.gpu.half_copy import half_copy

        half_copy(Path(results["variants"][selected]["cranfield"]["checkpoint"]), bundle / "checkpoint")
        results["returned_checkpoint"] = {"variant": selected, "collection": "cranfield", "folder": "checkpoint"}
    results["returned_parts"] = pack(bundle, args.out)
    results["minutes"] = (time.monotonic() - started) / 60
    _write(results, args.out)
    print(render_summary(results), flush=True)
    return 0


def pack(folder: Path, out: Path, part_mib: int = 15) -> list[str]:
    """Tar `folder`'s files into `out/adapt-bundle.tar.part-*`."""
    from lab.gpu.tar_parts import write_tar_parts

    return write_tar_parts(folder, out, "adapt-bundle", part_mib=part_mib)


def _select(results: dict[str, Any]) -> None:
    def dev(name: str) -> float:
        return results["variants"][name]["scifact"]["figures"]["scifact_dev"][SELECT_BY]

    results["selected"] = max(results["variants"], key=dev)


def _setting(text: str) -> tuple[str, Any]:
    """'epochs=1' -> ('epochs', 1): the value is read as YAML.

    Example:
        >>> _setting("train_sources=[title]")
        ('train_sources', ['title'])
    """
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set expects KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _write(results: dict[str, Any], out: Path) -> None:
    (out / "adapt_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "adapt_summary.md").write_text(render_summary(results), encoding="utf-8")


def _hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"1x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    import os
    import platform

    return f"{os.cpu_count()}-core {platform.machine()} CPU"


if __name__ == "__main__":
    sys.exit(main())
