"""The leave-one-collection-out experiment of issue 17 on one GPU machine (no OpenSearch, no network).

Trainings (`recipes/general-minilm-l6-lce-g16-scifact-x4.yaml`, the recipe `scripts/train-general` runs),
seeds as the outer loop so a cut-short call still has each training once:

- `mix`: SciFact train + SQuAD train (the general model a user gets);
- `squad-only`: without SciFact, so SciFact test measures a collection the model never saw;
- `scifact-only`: without SQuAD, likewise for the SQuAD dev questions.

With a carry whose mixture also holds the five small collections' judged queries (`WITH_SMALL=1
scripts/loco-carry`), the trainings are `seven` (all seven collections) and `seven-but-NAME` for
each: every collection's row then comes from a model trained on the six others.

Every trained model reranks the BM25 top-100 of every evaluation set; the final checkpoint is
kept (fixed selection, no test or dev figure chooses anything). The dense column (the base
all-MiniLM-L6-v2 as a bi-encoder, mean-pooled and normalised as sentence-transformers does) is
computed here once per set, in float16. Systems (`training.evaluate`): bm25, dense, `adapted` (the
cross-encoder alone), `adapted_fused_dense` (the served system: z-scores of it, BM25 and dense,
1/3 each), `bm25_dense_fused` (the min-max fusion recipe) and `bm25_dense_zscore` (equal z-score
weights); the reference a served model must beat is the better of the last two.

The carry folder (made by `python -m lab.gpu.loco_carry`, `data.tar.xz` unpacked beside `base/` by
`scripts/gpu/loco`): `base/` (float16 all-MiniLM-L6-v2), `mix/` (`es-rerank mix` of SciFact and
SQuAD, or of one of them), `cands/NAME.jsonl` (`es-rerank fusion-candidates`, BM25 top-100) and
`qrels/NAME.tsv`. The evaluation sets are the candidates files present.

Written to `--out`: `loco_results.json` (every run and figure, rewritten after each run) and
`loco_summary.md`. `--runs` limits the call to some trainings, e.g. `--runs mix:1,mix:2`, so a
second call can finish what a first one's time budget left; without it, the call runs the
trainings the carry's table needs (`needed_trainings`).

Usage: `python -m lab.gpu.loco_gpu --carry artifacts/loco-carry --out $OUT --recipe recipes/general-minilm-l6-lce-g16-scifact-x4.yaml`
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SEVEN = ("scifact", "squad", "cranfield", "med", "adi", "time", "lisa")
TRAININGS = {"mix": ("scifact", "squad"), "squad-only": ("squad",), "scifact-only": ("scifact",), "seven": SEVEN,
             **{f"seven-but-{left_out}": tuple(c for c in SEVEN if c != left_out) for left_out in SEVEN}}
# candidates stem -> the collection it belongs to
EVALUATIONS = {"scifact-test": "scifact", "squad-dev": "squad", "cranfield-test": "cranfield",
               "med-test": "med", "adi-test": "adi", "time-test": "time", "lisa-test": "lisa"}
SEEDS = (0, 1, 2)
SERVED = "adapted_fused_dense"
REFERENCES = ("bm25_dense_fused", "bm25_dense_zscore")
EVAL_BATCH = 256


class TorchDenseScorer:
    """Cosines of the base bi-encoder, on the GPU, with the export's module (`export.bi_encoder`)."""

    def __init__(self, base: Path, device) -> None:
        import torch
        from transformers import AutoTokenizer

        from es_rerank.export.bi_encoder import build_module, read_settings

        self.settings = read_settings(base)
        self.module = build_module(self.settings).to(device)
        if device.type == "cuda":
            self.module = self.module.half()
        self.tokenizer = AutoTokenizer.from_pretrained(str(base))
        self.device = device
        self.torch = torch

    def embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        prepared = sorted({self._prepare(t) for t in texts}, key=len)
        vectors: dict[str, np.ndarray] = {}
        with self.torch.inference_mode():
            for start in range(0, len(prepared), EVAL_BATCH):
                batch = prepared[start:start + EVAL_BATCH]
                encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=self.settings.max_length,
                                         return_tensors="pt").to(self.device)
                out = self.module(encoded["input_ids"], encoded["attention_mask"], encoded.get("token_type_ids"))
                for text, row in zip(batch, out.float().cpu().numpy()):
                    vectors[text] = row
        return vectors

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        vectors = self.embed([*queries, *documents])
        return np.array([float(vectors[self._prepare(q)] @ vectors[self._prepare(d)])
                         for q, d in zip(queries, documents)], dtype=np.float32)

    def _prepare(self, text: str) -> str:
        text = text.strip()
        return text.lower() if self.settings.lowercase else text


def add_dense(carry: Path, work: Path, device) -> dict[str, Path]:
    """Each evaluation set with its dense column, written once to `work`."""
    from es_rerank.data.candidates import read_candidates, write_candidates
    from es_rerank.evaluation.fusion_fit import score_candidates

    scorer = TorchDenseScorer(carry / "base", device)
    scored = {}
    for name in (n for n in EVALUATIONS if (carry / "cands" / f"{n}.jsonl").is_file()):
        cands = read_candidates(carry / "cands" / f"{name}.jsonl")
        score_candidates(cands, "dense", scorer, "all-MiniLM-L6-v2 (torch fp16)", chunk_queries=100_000)
        scored[name] = work / f"{name}.scored.jsonl.gz"
        write_candidates(cands, scored[name])
    del scorer
    return scored


def groups_of(mix: Path, collections: Sequence[str], work: Path) -> Path:
    """The mixture's groups of `collections` only (ids are `name:id`), as a file in `work`."""
    from es_rerank.data.textfiles import open_text

    if set(collections) == {s["name"] for s in json.loads((mix / "MIXTURE.json").read_text())["sources"]}:
        return mix / "groups.jsonl"  # the mixture's own file, whose sha256 the provenance then names
    path = work / f"groups-{'+'.join(collections)}.jsonl.gz"
    if not path.is_file():
        prefixes = tuple(f"{c}:" for c in collections)
        with open_text(mix / "groups.jsonl") as source, open_text(path, "w") as out:
            for line in source:
                if json.loads(line)["qid"].startswith(prefixes):
                    out.write(line)
    with open_text(path) as written:
        if not any(line.strip() for line in written):
            path.unlink()
            raise SystemExit(f"the carried mixture has no groups of {', '.join(collections)}: "
                             "make the carry from a mixture that holds them (es-rerank mix)")
    return path


def train_one(carry: Path, recipe: Path, training: str, seed: int, work: Path) -> tuple[Path, dict]:
    from es_rerank.training.config import build_config, read_recipe
    from es_rerank.training.supervised import TrainInputs, train

    settings = trained_sources_only(read_recipe(recipe), training)
    config = build_config({**settings, "base_model": str(carry / "base"), "seed": seed})
    groups = groups_of(carry / "mix", TRAININGS[training], work)
    run_dir = work / f"{training}-s{seed}"
    log = train(config, TrainInputs(groups, carry / "mix", carry / "mix"), run_dir, show_progress=False,
                write_state=False)
    return run_dir, log


def trained_sources_only(settings: dict[str, Any], training: str) -> dict[str, Any]:
    """The recipe's settings with `source_repeats` cut to the sources `training` trains on: one
    recipe serves all three trainings, and `squad-only` has no SciFact groups to repeat.

    Example:
        >>> trained_sources_only({"source_repeats": {"scifact": 4}}, "squad-only")
        {'source_repeats': {}}
    """
    repeats = settings.get("source_repeats")
    if not isinstance(repeats, dict):
        return settings  # absent, or a bad value for build_config to refuse
    return {**settings, "source_repeats": {n: k for n, k in repeats.items() if n in TRAININGS[training]}}


# Scoring variants measured on the same trained model (issue 17's open questions), besides the recipe's
# own settings: a longer query cut (LISA's queries are paragraphs; half exceed 64 tokens) and the
# best passage of a long document (TIME's median document is about 600 tokens), in windows of
# words or in windows of the tokens a pair holds (the first passage is then the plain pair's).
# `df-cut-X`: the recipe's pairs with the query's common words cut (those in more than a share X of
# the corpus's documents, `lab.gpu.query_df`; needs --query-df).
DF_CUTS = {"df-cut-0.05": 0.05, "df-cut-0.1": 0.1, "df-cut-0.2": 0.2}
VARIANTS = ("recipe", "query128", "maxp", "maxp-budget", *DF_CUTS)
MAXP_WINDOWS = {"words": 120, "stride": 90, "most": 4}
BUDGET_WINDOWS = {"overlap": 64, "most": 4}


class QueryCutScorer:
    """Scores with `scorer` after cutting each query's common words (`query_df.cut_query`)."""

    def __init__(self, scorer, share: dict[str, float], max_df: float) -> None:
        self.scorer, self.share, self.max_df = scorer, share, max_df

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        from lab.gpu.query_df import cut_query

        cut = {query: cut_query(query, self.share, self.max_df) for query in set(queries)}
        return self.scorer.score_pairs([cut[query] for query in queries], documents)


def measure(checkpoint: Path, scored: dict[str, Path], carry: Path, max_length: int, query_max_length: int,
            label: str, variants: Sequence[str] = ("recipe",),
            scores_out: dict | None = None, query_df: dict | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant, every system's nDCG@10 on every evaluation set, with `checkpoint` as the cross-encoder.

    `scores_out`, when given, receives each variant's CE scores: `{variant: {set: {qid: [scores]}}}`.
    `query_df` (`lab.gpu.query_df`'s table) is what the `df-cut-X` variants cut with.
    """
    import torch

    from es_rerank.data.candidates import read_candidates
    from es_rerank.evaluation.fusion_fit import score_candidates
    from es_rerank.training.model import load_cross_encoder, make_scorer, scoring_mode
    from tokenizers import Tokenizer

    from lab.gpu.passage_max import BudgetWindows, PassageMaxScorer, WordWindows

    model, tokenizer = load_cross_encoder(str(checkpoint))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    recipe_scorer = make_scorer(model, tokenizer, max_length, query_max_length, device, EVAL_BATCH)
    scorers = {"recipe": recipe_scorer, "maxp": PassageMaxScorer(recipe_scorer, WordWindows(**MAXP_WINDOWS))}
    if "query128" in variants:
        scorers["query128"] = make_scorer(model, tokenizer, max_length, 128, device, EVAL_BATCH)
    if "maxp-budget" in variants:
        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_truncation()
        backend.no_padding()
        scorers["maxp-budget"] = PassageMaxScorer(
            recipe_scorer, BudgetWindows(backend, max_length, query_max_length, **BUDGET_WINDOWS))
    figures: dict[str, dict[str, dict[str, float]]] = {}
    with scoring_mode(model, device, torch.float16 if device.type == "cuda" else None):
        for variant in variants:
            figures[variant] = {}
            for name, path in scored.items():
                cands = read_candidates(path)
                scorer = scorers.get(variant)
                if variant in DF_CUTS:
                    scorer = QueryCutScorer(recipe_scorer, (query_df or {})["sets"][name]["share"], DF_CUTS[variant])
                score_candidates(cands, "ce", scorer, f"{label} ({variant})")
                figures[variant][name] = set_figures(cands, carry, name)
                if scores_out is not None:
                    scores_out.setdefault(variant, {})[name] = {q.query_id: q.scores["ce"].round(5).tolist()
                                                                for q in cands.queries}
    del model
    return figures


def set_figures(cands, carry: Path, name: str) -> dict[str, float]:
    """Every system's nDCG@10 on evaluation set `name`, whose candidates carry bm25, dense and ce scores."""
    from es_rerank.data.beir import read_qrels
    from es_rerank.scoring.fusion import FusionWeights
    from es_rerank.training.evaluate import FUSED_SYSTEMS, system_figures

    fused = {**FUSED_SYSTEMS, "bm25_dense_zscore": FusionWeights(ce=0.0, bm25=0.5, dense=0.5, norm="zscore")}
    return system_figures(cands, read_qrels(carry / "qrels" / f"{name}.tsv"), fused)


def trainings_without(name: str) -> list[str]:
    """The trainings that left evaluation set `name`'s collection out, widest first: a row of the
    table comes from the first of them that has runs.

    Example:
        >>> trainings_without("squad-dev"), trainings_without("lisa-test")[:2]
        (['seven-but-squad', 'scifact-only'], ['seven-but-lisa', 'mix'])
    """
    eligible = [t for t, sources in TRAININGS.items() if EVALUATIONS[name] not in sources]
    return sorted(eligible, key=lambda t: -len(TRAININGS[t]))


def row_training(name: str, available: set[str] | list[str]) -> str | None:
    """Among `available`, the training whose runs make evaluation set `name`'s row (`trainings_without`'s first).

    Example:
        >>> row_training("lisa-test", {"mix", "squad-only"}), row_training("squad-dev", {"mix"})
        ('mix', None)
    """
    return next((t for t in trainings_without(name) if t in available), None)


def in_domain_training(trainings: set[str] | list[str]) -> str | None:
    """Among `trainings`, the widest that trains on SciFact: its model gives the in-domain SciFact figure.

    Example:
        >>> in_domain_training({"mix", "squad-only", "scifact-only"}), in_domain_training({"seven", "mix"})
        ('mix', 'seven')
    """
    with_scifact = [t for t in TRAININGS if t in trainings and "scifact" in TRAININGS[t]]
    return max(with_scifact, key=lambda t: len(TRAININGS[t]), default=None)


def needed_trainings(carried: set[str], evaluations: list[str]) -> list[str]:
    """The trainings a carry's table needs: for each evaluation set the widest training that left it
    out, and the widest that holds SciFact, among those whose collections the mixture carries.

    Example:
        >>> needed_trainings({"scifact", "squad"}, ["scifact-test", "squad-dev", "lisa-test"])
        ['squad-only', 'scifact-only', 'mix']
        >>> needed_trainings(set(SEVEN), ["lisa-test", "med-test"])
        ['seven-but-lisa', 'seven-but-med', 'seven']
    """
    possible = {t for t, sources in TRAININGS.items() if set(sources) <= carried}
    order = [row_training(name, possible) for name in evaluations]
    order.append(in_domain_training(possible))
    return [t for t in dict.fromkeys(order) if t is not None]


def loco_table(runs: list[dict]) -> dict[str, Any]:
    """Per collection: the figures (mean, sd over seeds) of the widest training that left it out.

    Example:
        >>> r = [{"training": "mix", "seed": s, "figures": {"med-test": {"bm25": 0.5, "adapted": 0.4 + s / 10,
        ...       "adapted_fused_dense": 0.6, "bm25_dense_fused": 0.55, "bm25_dense_zscore": 0.5}}} for s in (0, 1)]
        >>> t = loco_table(r)["med-test"]
        >>> t["training"], round(t["ce_minus_bm25"]["mean"], 3), round(t["served_minus_bm25_dense"]["mean"], 3)
        ('mix', -0.05, 0.05)
    """
    table: dict[str, Any] = {}
    for name in EVALUATIONS:
        for training in trainings_without(name):
            figures = [r["figures"][name] for r in runs if r["training"] == training and name in r["figures"]]
            if not figures:
                continue
            row: dict[str, Any] = {"training": training, "seeds": len(figures)}
            for system in figures[0]:
                row[system] = _mean_sd([f[system] for f in figures])
            row["ce_minus_bm25"] = _mean_sd([f["adapted"] - f["bm25"] for f in figures])
            row["served_minus_bm25_dense"] = _mean_sd([f[SERVED] - max(f[r] for r in REFERENCES) for f in figures])
            table[name] = row
            break
    return table


def headline(runs: list[dict], table: dict[str, Any]) -> dict[str, Any]:
    """The three figures issue 17 asks for, each a mean and sd over seeds."""
    seeds = sorted({r["seed"] for r in runs})
    per_seed_min, per_seed_mean = [], []
    for seed in seeds:  # over the collections, within one seed; then mean and sd over seeds
        ce, served = [], []
        for name, row in table.items():
            fig = next((r["figures"][name] for r in runs if r["training"] == row["training"] and r["seed"] == seed
                        and name in r["figures"]), None)
            if fig is not None:
                ce.append(fig["adapted"] - fig["bm25"])
                served.append(fig[SERVED] - max(fig[r] for r in REFERENCES))
        if ce and len(ce) == len(table):  # none when only in-domain trainings ran
            per_seed_min.append(min(ce))
            per_seed_mean.append(sum(served) / len(served))
    in_domain = in_domain_training({r["training"] for r in runs})
    scifact = [r["figures"]["scifact-test"][SERVED] for r in runs  # absent when the carry left SciFact out
               if r["training"] == in_domain and "scifact-test" in r["figures"]]
    return {"quality.loco.ce_minus_bm25.min": _mean_sd(per_seed_min),
            "quality.loco.served_minus_bm25_dense.mean": _mean_sd(per_seed_mean),
            "quality.scifact_test.served.ndcg10": _mean_sd(scifact)}


def render_summary(results: dict[str, Any]) -> str:
    lines = [f"# leave-one-collection-out ({results['hardware']}, {results['date']})", "",
             f"recipe `{results['recipe']}`, seeds {results['seeds_done']}", "",
             *_table_lines(results["loco"], results["headline"])]
    for variant, tables in results.get("variant_tables", {}).items():
        lines += ["", f"## scoring variant `{variant}` (same models)", "", *_table_lines(tables["loco"], tables["headline"])]
    return "\n".join(lines) + "\n"


def _table_lines(loco: dict[str, Any], figures: dict[str, Any]) -> list[str]:
    lines = ["| eval set | trained on | BM25 | bi-encoder | BM25+bi z | BM25+bi minmax | CE alone | served | "
             "CE - BM25 | served - best BM25+bi |", "|---" * 10 + "|"]
    for name, row in loco.items():
        cells = [f"{row[s]['mean']:.4f} ± {row[s]['sd']:.4f}" for s in
                 ("bm25", "dense", "bm25_dense_zscore", "bm25_dense_fused", "adapted", SERVED,
                  "ce_minus_bm25", "served_minus_bm25_dense")]
        lines.append(f"| {name} | {row['training']} ({row['seeds']} seeds) | " + " | ".join(cells) + " |")
    lines += ["", "| figure | mean | sd | seeds |", "|---|---|---|---|"]
    for key, value in figures.items():
        lines.append(f"| `{key}` | {value['mean']:.4f} | {value['sd']:.4f} | {value['n']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carry", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, required=True, help="the training recipe every run uses")
    parser.add_argument("--runs", default=None, help="TRAINING:SEED pairs to run, comma-separated (default: all)")
    parser.add_argument("--previous", type=Path, default=None, help="an earlier call's loco_results.json to extend")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="start no training after this many minutes")
    parser.add_argument("--variants", default="recipe",
                        help=f"scoring variants to measure on each model, comma-separated, from {', '.join(VARIANTS)}; "
                             "the headline figures are always the recipe's")
    parser.add_argument("--write-scores", action="store_true", help="also write each run's CE scores to --out")
    parser.add_argument("--query-df", type=Path, default=None,
                        help="the table of lab.gpu.query_df, which the df-cut-X variants need")
    args = parser.parse_args(argv)
    variants = ["recipe", *(v for v in args.variants.split(",") if v and v != "recipe")]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}: choose from {', '.join(VARIANTS)}")
    query_df = json.loads(args.query_df.read_text(encoding="utf-8")) if args.query_df else None
    if any(v in DF_CUTS for v in variants) and (query_df is None or not query_df.get("sets")):
        parser.error("the df-cut variants need --query-df QUERY_DF.json (python -m lab.gpu.query_df)")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loco-"))
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    carried = {source["name"] for source in json.loads((args.carry / "mix" / "MIXTURE.json").read_text())["sources"]}
    evaluations = [n for n in EVALUATIONS if (args.carry / "cands" / f"{n}.jsonl").is_file()]
    order = [(t, s) for s in SEEDS for t in needed_trainings(carried, evaluations)]
    if args.runs:
        wanted = [tuple(item.split(":")) for item in args.runs.split(",")]
        order = [(t, int(s)) for t, s in wanted]
    previous = json.loads(args.previous.read_text()) if args.previous else {"runs": []}
    results: dict[str, Any] = {"hardware": _hardware(), "date": date.today().isoformat(), "recipe": args.recipe.name,
                               "runs": previous["runs"], "skipped": []}
    scored = add_dense(args.carry, work, device)
    print(f"[{(time.monotonic() - started) / 60:.1f} min] dense columns done", flush=True)
    recipe = _read_yaml(args.recipe)
    for training, seed in order:
        if (time.monotonic() - started) / 60 > args.max_minutes:
            results["skipped"].append(f"{training}:{seed}")
            continue
        print(f"[{(time.monotonic() - started) / 60:.1f} min] training {training} seed {seed}", flush=True)
        checkpoint, log = train_one(args.carry, args.recipe, training, seed, work)
        scores: dict = {}
        by_variant = measure(checkpoint, scored, args.carry, recipe["max_length"], recipe["query_max_length"],
                             f"{training} seed {seed}", variants, scores if args.write_scores else None, query_df)
        figures = by_variant["recipe"]
        results["runs"].append({"training": training, "seed": seed, "figures": figures,
                                "variants": {v: f for v, f in by_variant.items() if v != "recipe"},
                                "train_seconds": log.get("train_seconds"), "pairs_per_s": log.get("pairs_per_s"),
                                "steps": log.get("steps_done"), "provenance": log.get("provenance")})
        if args.write_scores:
            (args.out / f"ce-scores-{training}-s{seed}.json").write_text(json.dumps(scores))
        for variant, per_set in by_variant.items():
            print(f"  {variant}: " + ", ".join(f"{n} {f['adapted']:.3f}/{f[SERVED]:.3f}" for n, f in per_set.items()),
                  flush=True)
        finish_results(results, args.out)
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    finish_results(results, args.out)
    print(render_summary(results), flush=True)
    return 0


def finish_results(results: dict[str, Any], out: Path) -> None:
    results["loco"] = loco_table(results["runs"])
    results["headline"] = headline(results["runs"], results["loco"])
    results["seeds_done"] = sorted({r["seed"] for r in results["runs"]})
    variants = sorted({v for r in results["runs"] for v in r.get("variants", {})})
    results["variant_tables"] = {}
    for variant in variants:  # the same table and headline, with this variant's CE in place of the recipe's
        runs = [{**r, "figures": r["variants"][variant]} for r in results["runs"] if variant in r.get("variants", {})]
        table = loco_table(runs)
        results["variant_tables"][variant] = {"loco": table, "headline": headline(runs, table)}
    (out / "loco_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "loco_summary.md").write_text(render_summary(results))


def _mean_sd(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": float("nan"), "sd": float("nan"), "n": 0}
    return {"mean": sum(values) / len(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"cpu, torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
