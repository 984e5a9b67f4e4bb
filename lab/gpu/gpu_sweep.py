"""The SciFact training sweep of issue 5, in one process on one GPU machine (no OpenSearch, no network).

Phases, in order, each writing its results as it goes (`sweep_results.json`, `sweep_summary.md`):

1. lr: for each loss family, its search recipe (LCE group 8, BCE group 2) with seed 0 at each
   of `--lrs`; the best dev nDCG@10 picks the family's learning rate. Dev only: the test split
   is never used to choose anything.
2. main: every config x seed at its family's learning rate, the same steps and queries per step;
   each run's best-dev checkpoint then reranks the SciFact test BM25 top-100 (nDCG@10, MRR@10).
   Seeds are the outer loop, so a run cut short by the time budget still has every config once.
3. throughput: training pairs/s of the LCE-32 recipe at its length (256) and precision (bf16)
   over `--throughput-steps` steps, eager and (unless `--no-compile-throughput`) with
   torch.compile, whose compile time is excluded by the warm-up steps.

The carry folder (made by `scripts/prepare_train_carry`) holds `scifact/` (BEIR), `groups.jsonl.gz`
(`es-rerank mine`), `train-run.tsv.gz` and `test-run.tsv.gz` (`es-rerank bm25-run`) and `minilm/`
(the base model). `--max-minutes` stops starting new runs once the budget is spent. The checkpoint
chosen on dev comes back in `--out` as `selected-checkpoint.tar.part-*` (fp16 weights; the device
machine returns at most 8 files of 16 MiB): `cat selected-checkpoint.tar.part-* | tar -x`.

Usage: `python -m lab.gpu.gpu_sweep --carry artifacts/train-carry --out $OUT`
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

CONFIGS = ("lce-g2", "lce-g4", "lce-g8", "lce-g16", "lce-g32", "bce-g2")
# Run after every seed of CONFIGS, so the time budget drops them first: unweighted BCE with 7
# negatives per positive, the suspected cause of the collapsed BCE probe of issue 5.
EXTRA_CONFIGS = ("bce-g8-unbalanced",)
LR_SEARCH = {"lce": "lce-g8", "bce": "bce-g2"}
RECIPE_PREFIX = "scifact-minilm-l6-"
TEST_DEPTH = 100
COMPILE_MINUTES = 1.5  # what a compiled throughput run may take, compilation included


@dataclass(frozen=True)
class Carry:
    """The files the sweep reads, all under one folder."""

    root: Path

    @property
    def beir(self) -> Path:
        return self.root / "scifact"

    @property
    def groups(self) -> Path:
        return _first(self.root, "groups.jsonl.gz", "groups.jsonl")

    @property
    def train_run(self) -> Path:
        return _first(self.root, "train-run.tsv.gz", "train-run.tsv")

    @property
    def test_run(self) -> Path:
        return _first(self.root, "test-run.tsv.gz", "test-run.tsv")

    @property
    def model(self) -> Path:
        return self.root / "minilm"


def run_order(configs: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Main-phase order: the comparison's configs seed by seed, then the extra configs.

    Example:
        >>> run_order(["lce-g2", "bce-g8-unbalanced", "bce-g2"], [0, 1])
        [('lce-g2', 0), ('bce-g2', 0), ('lce-g2', 1), ('bce-g2', 1), ('bce-g8-unbalanced', 0), ('bce-g8-unbalanced', 1)]
    """
    core = [c for c in configs if c in CONFIGS]
    extra = [c for c in configs if c not in CONFIGS]
    return [(c, s) for s in seeds for c in core] + [(c, s) for c in extra for s in seeds]


def family(config_name: str) -> str:
    """'lce-g8' -> 'lce'; 'bce-g8-unbalanced' -> 'bce'.

    Example:
        >>> family("bce-g8-unbalanced")
        'bce'
    """
    return config_name.split("-", 1)[0]


class Sweep:
    """Runs the phases and keeps the results file current after every run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.carry = Carry(Path(args.carry))
        self.out = Path(args.out)
        self.work = Path(args.work)
        self.started = time.monotonic()
        self.results: dict[str, Any] = {
            "date": date.today().isoformat(), "argv": sys.argv[1:], "hardware": _hardware(),
            "steps_note": "a step = one AdamW update over queries_per_step queries (all processes and "
                          "micro-batches); pairs per step = queries_per_step x group_size",
            "throughput": [], "lr_search": [], "runs": [], "skipped": []}
        self.chosen_lr: dict[str, float] = {}

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.results["bm25_test"] = self._bm25_test()
        self._lr_search()
        for name, seed in run_order(self.args.configs, self.args.seeds):
            record = self._train(name, seed, self.chosen_lr.get(family(name)), phase="main")
            if record is not None:
                record["test"] = self._test(Path(record["checkpoint"]))
                self._save()
        self._summarise()
        self._save()
        if self.args.return_selected and self.results.get("selected"):
            self.results["selected"]["returned_parts"] = return_checkpoint(
                Path(self.results["selected"]["checkpoint"]), self.out)
            self._save()
        if self.args.throughput_steps:
            self._throughput()
        return self.results

    # phases -----------------------------------------------------------------------------------

    def _throughput(self) -> None:
        for compile_model in ([False, True] if self.args.compile_throughput else [False]):
            if compile_model and self._minutes() > self.args.max_minutes - COMPILE_MINUTES:
                self.results["skipped"].append({"run": "throughput-compiled",
                                                "reason": f"less than {COMPILE_MINUTES} min of the budget left"})
                continue
            name = "lce-g32"
            overrides = {"steps": self.args.throughput_steps, "compile": compile_model, "eval_every": 0,
                         "log_every": max(1, self.args.throughput_steps // 4)}
            tag = f"throughput-{'compiled' if compile_model else 'eager'}"
            log = self._train_raw(name, 0, None, overrides, dev=False, tag=tag)
            if log is None:
                continue
            cfg = log["config"]
            self.results["throughput"].append({
                "config": name, "compiled": compile_model, "steps": log["steps_done"],
                "pairs_per_s": log["pairs_per_s"], "pairs_per_step": log["pairs_per_step"],
                "max_length": cfg["max_length"], "precision": cfg["precision"],
                "mean_tokens_per_pair": log["mean_tokens_per_pair"], "train_seconds": log["train_seconds"],
                "error": log.get("error")})
            self._save()

    def _lr_search(self) -> None:
        families = {family(n) for n in self.args.configs}
        for fam, name in LR_SEARCH.items():
            if fam not in families:
                continue
            if fam in self.args.chosen_lr:
                self.chosen_lr[fam] = self.args.chosen_lr[fam]
                continue
            if len(self.args.lrs) == 1:
                self.chosen_lr[fam] = self.args.lrs[0]
                continue
            best = None
            for lr in self.args.lrs:
                record = self._train(name, 0, lr, phase="lr")
                dev = record["best_dev"]["ndcg@10"] if record is not None and record.get("best_dev") else None
                self.results["lr_search"].append({"family": fam, "config": name, "lr": lr, "best_dev_ndcg10": dev})
                if dev is not None and (best is None or dev > best[1]):
                    best = (lr, dev)
            if best is not None:
                self.chosen_lr[fam] = best[0]
        self.results["chosen_lr"] = dict(self.chosen_lr)

    def _train(self, name: str, seed: int, lr: float | None, phase: str) -> dict | None:
        """One dev-evaluated run; reuses an identical earlier run (the lr search's seed-0 run)."""
        for record in self.results["runs"]:
            if (record["config"], record["seed"], record["lr"]) == (name, seed, lr) and "error" not in record:
                if phase == "main" and record["phase"] != "main":
                    record["phase"] = "main"
                return record
        overrides = {} if lr is None else {"lr": lr}
        if self.args.steps:
            overrides["steps"] = self.args.steps
        tag = f"{name}-s{seed}" + ("" if lr is None else f"-lr{lr:g}")
        log = self._train_raw(name, seed, lr, overrides, dev=True, tag=tag)
        if log is None:
            return None
        record = {"phase": phase, "config": name, "seed": seed, "lr": lr if lr is not None else log["config"]["lr"],
                  "loss": log["config"]["loss"], "group_size": log["config"]["group_size"],
                  "bce_balanced": log["config"]["bce_balanced"], "steps": log.get("steps_done"),
                  "queries_per_step": log["config"]["queries_per_step"], "pairs_per_step": log.get("pairs_per_step"),
                  "train_seconds": log.get("train_seconds"), "pairs_per_s": log.get("pairs_per_s"),
                  "best_dev": log.get("best"), "dev_bm25": log.get("dev_bm25"), "dev_curve": log.get("dev"),
                  "loss_curve": [(e["step"], e["loss"]) for e in log.get("loss_log", [])],
                  "checkpoint": str(self.work / tag), "wall_seconds": log.get("wall_seconds"),
                  "recipe": log["config"]}
        if "error" in log:
            record["error"] = log["error"]
        self.results["runs"].append(record)
        self._save()
        return record if "error" not in log else None

    def _train_raw(self, name: str, seed: int, lr: float | None, overrides: dict, dev: bool, tag: str) -> dict | None:
        if self._minutes() > self.args.max_minutes:
            self.results["skipped"].append({"run": tag, "reason": f"time budget of {self.args.max_minutes} min spent"})
            self._save()
            return None
        import torch

        from es_rerank.training.config import build_config, read_recipe
        from es_rerank.training.supervised import TrainInputs, train

        settings = {**read_recipe(Path(self.args.recipes) / f"{RECIPE_PREFIX}{name}.yaml"),
                    "base_model": str(self.carry.model), **dict(self.args.settings), "seed": seed, **overrides}
        config = build_config(settings)
        inputs = TrainInputs(self.carry.groups, self.carry.beir, self.carry.beir,
                             self.carry.train_run if dev else None, self.carry.beir if dev else None, "train")
        started = time.monotonic()
        print(f"[{self._minutes():5.1f} min] training {tag}", flush=True)
        try:
            log = train(config, inputs, self.work / tag, show_progress=False, write_state=False)
        except Exception as exc:  # one failed run (e.g. compile) must not lose the sweep
            log = {"config": config.to_dict(), "error": f"{type(exc).__name__}: {exc}"}
            print(f"  failed: {log['error']}", flush=True)
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        log["wall_seconds"] = time.monotonic() - started
        best = log.get("best")
        print(f"  {log.get('pairs_per_s') or 0:,.0f} pairs/s, {log['wall_seconds']:.1f} s"
              + (f", best dev nDCG@10 {best['ndcg@10']:.4f} at step {best['step']}" if best else ""), flush=True)
        return log

    def _test(self, checkpoint: Path) -> dict[str, float]:
        """nDCG@10 / MRR@10 of `checkpoint` reranking the test BM25 top-100 (fp16 autocast on GPU)."""
        import torch

        from es_rerank.training.evaluate import evaluate_scorer
        from es_rerank.training.model import load_cross_encoder, make_scorer, scoring_mode

        queries, sources, run, qrels = self._test_data()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        recipe = _read_yaml(checkpoint / "recipe.yaml")
        model, tokenizer = load_cross_encoder(str(checkpoint))
        model.to(device)
        scorer = make_scorer(model, tokenizer, recipe["max_length"], recipe["query_max_length"], device, 128)
        with scoring_mode(model, device, torch.float16):
            figures = evaluate_scorer(scorer, run, queries, sources, qrels, TEST_DEPTH)
        del model
        return figures

    def _bm25_test(self) -> dict[str, float]:
        from es_rerank.training.evaluate import bm25_rankings
        from es_rerank.evaluation.ir_metrics import summary

        _, _, run, qrels = self._test_data()
        return summary(bm25_rankings(run, TEST_DEPTH), qrels)

    def _test_data(self):
        if not hasattr(self, "_test_cache"):
            from es_rerank.data.beir import read_qrels, read_queries
            from es_rerank.data.mining import read_run
            from es_rerank.training.data import check_run_documents, read_corpus_sources

            run = read_run(self.carry.test_run)
            qrels = read_qrels(self.carry.beir, "test")
            run = {qid: run.get(qid, [])[:TEST_DEPTH] for qid in qrels}
            sources = read_corpus_sources(self.carry.beir, {h.doc_id for hits in run.values() for h in hits})
            check_run_documents(run, sources, "test")
            self._test_cache = (read_queries(self.carry.beir), sources, run, qrels)
        return self._test_cache

    # results ----------------------------------------------------------------------------------

    def _summarise(self) -> None:
        by_config: dict[str, dict] = {}
        for name in self.args.configs:
            runs = [r for r in self.results["runs"] if r["config"] == name and r["phase"] == "main" and "test" in r]
            if not runs:
                continue
            test_ndcg = [r["test"]["ndcg@10"] for r in runs]
            test_mrr = [r["test"]["mrr@10"] for r in runs]
            dev_ndcg = [r["best_dev"]["ndcg@10"] for r in runs if r.get("best_dev")]
            by_config[name] = {
                "seeds": [r["seed"] for r in runs], "lr": runs[0]["lr"],
                "test_ndcg10_mean": statistics.fmean(test_ndcg), "test_ndcg10_sd": _sd(test_ndcg),
                "test_mrr10_mean": statistics.fmean(test_mrr), "test_mrr10_sd": _sd(test_mrr),
                "dev_ndcg10_mean": statistics.fmean(dev_ndcg) if dev_ndcg else None,
                "pairs_per_step": runs[0]["pairs_per_step"], "steps": runs[0]["steps"],
                "pairs_per_s_mean": statistics.fmean([r["pairs_per_s"] or 0 for r in runs])}
        self.results["summary"] = by_config
        if by_config:
            pick = max(by_config, key=lambda n: by_config[n]["dev_ndcg10_mean"] or -1)
            runs = [r for r in self.results["runs"] if r["config"] == pick and r["phase"] == "main" and "test" in r]
            best_run = max(runs, key=lambda r: r["best_dev"]["ndcg@10"])
            self.results["selected"] = {"config": pick, "seed": best_run["seed"], "checkpoint": best_run["checkpoint"],
                                        "rule": "highest mean dev nDCG@10 over seeds, then its best-dev seed",
                                        "test": best_run["test"]}
            link = self.work / "selected"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(best_run["checkpoint"]).resolve())

    def _save(self) -> None:
        self.results["elapsed_minutes"] = self._minutes()
        (self.out / "sweep_results.json").write_text(json.dumps(self.results, indent=1), encoding="utf-8")
        (self.out / "sweep_summary.md").write_text(render_summary(self.results), encoding="utf-8")

    def _minutes(self) -> float:
        return (time.monotonic() - self.started) / 60


def return_checkpoint(checkpoint: Path, out: Path, part_mib: int = 15) -> list[str]:
    """Write `checkpoint` (weights cast to float16) as a tar split into `part_mib` MiB parts.

    The device machine sends back at most 8 files of 16 MiB; MiniLM's fp16 checkpoint is ~46 MiB.
    Rebuild it with `cat selected-checkpoint.tar.part-* | tar -x` (a folder `selected-checkpoint/`).
    """
    import tempfile

    from lab.gpu.half_copy import half_copy
    from lab.gpu.tar_parts import write_tar_parts

    with tempfile.TemporaryDirectory() as scratch:
        folder = half_copy(checkpoint, Path(scratch) / "selected-checkpoint")
        return write_tar_parts(folder, out, "selected-checkpoint", "selected-checkpoint/", part_mib)


def render_summary(results: dict[str, Any]) -> str:
    """A Markdown table of the sweep for docs/benchmarks.md.

    Example:
        >>> render_summary({"runs": [], "throughput": [], "bm25_test": {"ndcg@10": 0.5, "mrr@10": 0.4}}).splitlines()
        ['# SciFact training sweep', '', 'BM25 (test, top-100 candidates): nDCG@10 0.5000, MRR@10 0.4000', '']
    """
    lines = ["# SciFact training sweep", ""]
    bm25 = results.get("bm25_test")
    if bm25:
        lines += [f"BM25 (test, top-100 candidates): nDCG@10 {bm25['ndcg@10']:.4f}, MRR@10 {bm25['mrr@10']:.4f}", ""]
    for t in results.get("throughput", []):
        rate = t.get("pairs_per_s")
        lines.append(f"Throughput {t['config']} {'compiled' if t['compiled'] else 'eager'}: "
                     + (f"{rate:,.0f} pairs/s" if rate else f"failed ({t.get('error')})")
                     + f" at max_length {t['max_length']}, {t['precision']}, {t['pairs_per_step']} pairs/step, "
                       f"{t.get('mean_tokens_per_pair') or 0:.0f} real tokens/pair")
    if results.get("throughput"):
        lines.append("")
    if results.get("chosen_lr"):
        lines += ["Learning rate chosen on dev: " + ", ".join(f"{k} {v:g}" for k, v in results["chosen_lr"].items()), ""]
    summary = results.get("summary") or {}
    if summary:
        lines += ["| config | lr | pairs/step | steps | seeds | dev nDCG@10 | test nDCG@10 (mean ± sd) | "
                  "test MRR@10 (mean ± sd) | pairs/s |", "|---|---|---|---|---|---|---|---|---|"]
        for name, s in summary.items():
            lines.append(f"| {name} | {s['lr']:g} | {s['pairs_per_step']} | {s['steps']} | {len(s['seeds'])} | "
                         f"{(s['dev_ndcg10_mean'] or 0):.4f} | {s['test_ndcg10_mean']:.4f} ± {s['test_ndcg10_sd']:.4f} | "
                         f"{s['test_mrr10_mean']:.4f} ± {s['test_mrr10_sd']:.4f} | {s['pairs_per_s_mean']:,.0f} |")
        lines.append("")
    if results.get("selected"):
        sel = results["selected"]
        lines += [f"Selected by dev: {sel['config']} seed {sel['seed']} (test nDCG@10 {sel['test']['ndcg@10']:.4f})", ""]
    for run in results.get("runs", []):
        if run.get("error"):
            lines.append(f"- {run['config']} seed {run['seed']}: failed: {run['error']}")
    for skipped in results.get("skipped", []):
        lines.append(f"- skipped {skipped['run']}: {skipped['reason']}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.gpu.gpu_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--carry", required=True, help="folder with scifact/, groups, runs and minilm/")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/train-sweep-results"),
                        help="where sweep_results.json and sweep_summary.md go (default: $OUT)")
    parser.add_argument("--work", default="runs/train-sweep", help="checkpoints of every run")
    parser.add_argument("--recipes", default="recipes", help="folder of the scifact-minilm-l6-*.yaml recipes")
    parser.add_argument("--configs", type=_names, default=list(CONFIGS + EXTRA_CONFIGS),
                        help="comma-separated recipe names, e.g. lce-g8,bce-g2")
    parser.add_argument("--seeds", type=_ints, default=[0, 1], help="comma-separated seeds")
    parser.add_argument("--lrs", type=_floats, default=[3e-5, 1e-4, 2e-4],
                        help="learning rates searched on dev (one value: no search)")
    parser.add_argument("--chosen-lr", type=_family_lrs, default={}, metavar="lce=X,bce=Y",
                        help="skip the search for these families (e.g. the lr an earlier sweep chose)")
    parser.add_argument("--steps", type=int, default=0, help="override the recipes' steps (0: keep)")
    parser.add_argument("--throughput-steps", type=int, default=40, help="0 skips the throughput phase")
    parser.add_argument("--no-compile-throughput", dest="compile_throughput", action="store_false",
                        help="skip the torch.compile throughput measurement")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="start no run after this many minutes")
    parser.add_argument("--no-return-selected", dest="return_selected", action="store_false",
                        help="do not write the selected checkpoint (fp16, tar parts) into --out")
    parser.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting in every run, e.g. --set max_length=128 (YAML value)")
    return parser.parse_args(argv)


def _hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
        return f"cpu, torch {torch.__version__}"
    except ImportError:
        return "unknown"


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _first(root: Path, *names: str) -> Path:
    for name in names:
        if (root / name).is_file():
            return root / name
    return root / names[0]


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _setting(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), yaml.safe_load(value)


def _family_lrs(text: str) -> dict[str, float]:
    pairs = [item.partition("=") for item in _names(text)]
    if any(not sep for _, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"expected FAMILY=LR pairs like lce=1e-4,bce=3e-5, got {text!r}")
    return {fam.strip(): float(value) for fam, _, value in pairs}


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in _names(text)]


def _floats(text: str) -> list[float]:
    return [float(t) for t in _names(text)]


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # workers fork but never tokenize
    hf_logging.disable_progress_bar()
    results = Sweep(parse_args(argv)).run()
    print(render_summary(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
