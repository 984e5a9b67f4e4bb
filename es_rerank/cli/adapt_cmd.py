"""`es-rerank adapt`: adapt a cross-encoder to an index that has no judgments.

Two halves, which may run on different machines:

1. prepare (needs OpenSearch and the teacher exports, no torch): pseudo-queries cut from the
   index's documents, their BM25 hits from the served query (the query's own document left
   out) and the teachers' raw scores, written to a groups file (`--groups`, default
   OUT/groups.jsonl.gz). `--prepare-only` stops there.
2. train (needs torch, no OpenSearch): the student starts from `--base` and learns the
   teacher's ranking of each group. An existing groups file is used as is, so on the GPU
   machine `es-rerank adapt --groups FILE --base MODEL --out DIR` trains without an index.

Settings come from a recipe (`--config recipes/adapt/NAME.yaml`, blocks `prepare` and `train`);
options given on the command line override it.
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from es_rerank.cli.fine_tuning_options import FINE_TUNING_SETTINGS
from es_rerank.cli.options import opensearch_url, option, progress_bar

# Training settings as options: (AdaptConfig field, click type, help). base_model is --base.
TRAIN_SETTINGS = [
    ("loss", click.Choice(["kl", "margin_mse"]), "kl: listwise KL to the teacher's softmax; margin_mse: match score margins."),
    ("temperature", click.FloatRange(min=0, min_open=True), "KL only: temperature of the teacher's softmax."),
    ("margin_scale", click.FloatRange(min=0, min_open=True), "Margin-MSE only: student margins target this x teacher margins."),
    ("teacher_bm25", click.FloatRange(min=0), "Teacher weight of the normalised BM25 score."),
    ("teacher_dense", click.FloatRange(min=0), "Teacher weight of the normalised bi-encoder score."),
    ("teacher_ce", click.FloatRange(min=0), "Teacher weight of the normalised score of the --ce export."),
    ("teacher_norm", click.Choice(["zscore", "minmax"]), "How teacher inputs are normalised over a group."),
    ("include_positive", bool, "Train on each pseudo-query's masked own document as well as its BM25 hits."),
    ("positive_lce_weight", click.FloatRange(min=0), "Add this x LCE with the masked own document as the target (0: off)."),
    ("train_sources", str, "Comma-separated pseudo-query sources to train on (default: all in the groups file)."),
    ("group_size", click.IntRange(min=2), "Documents per pseudo-query per step."),
    ("queries_per_step", click.IntRange(min=1), "Queries per optimizer step."),
    ("epochs", click.FloatRange(min=0, min_open=True), "Passes over the prepared groups."),
    ("labelled_weight", click.FloatRange(min=0), "Weight of the LCE loss of labelled groups (--labelled-groups)."),
    ("freeze_embeddings", bool, "Keep the word embeddings fixed (fewer weights to move on little data)."),
    *FINE_TUNING_SETTINGS,
    ("probe_queries", click.IntRange(min=0), "Pseudo groups whose distillation loss is measured before and after."),
    ("log_every", click.IntRange(min=1), "Log the loss every this many steps."),
    ("save_every", click.IntRange(min=0), "Save resumable state every this many steps."),
    ("num_workers", click.IntRange(min=0), "DataLoader worker processes building batches."),
]
# Prepare settings as options: (PrepareSettings field, option name, click type, help).
PREPARE_SETTINGS = [
    ("sources", "--sources", str, "Comma-separated pseudo-query sources: title, first (sentence), ict (inverse cloze)."),
    ("ict_per_doc", "--ict-per-doc", click.IntRange(min=1), "Inverse-cloze sentences drawn per document."),
    ("max_queries", "--max-queries", click.IntRange(min=1), "Keep at most this many pseudo-queries (a hashed subset)."),
    ("max_docs", "--max-docs", click.IntRange(min=1), "Cut pseudo-queries from at most this many documents (hashed)."),
    ("depth", "--depth", click.IntRange(min=1), "BM25 hits kept per pseudo-query (its own document left out)."),
    ("min_words", "--min-words", click.IntRange(min=1), "Drop pseudo-queries with fewer words."),
    ("max_words", "--max-words", click.IntRange(min=1), "Cut longer pseudo-queries to a window of this many words."),
    ("min_positive_words", "--min-positive-words", click.IntRange(min=1), "Drop pseudo-queries whose masked document is shorter."),
    ("seed", "--query-seed", click.IntRange(min=0), "Seed of the pseudo-query draws (ict sentences, windows, subsets)."),
    ("fields", "--fields", str, "Comma-separated document fields: the title first, then the body."),
]


def _settings_options(function):
    from es_rerank.training.adapt_config import AdaptConfig
    from es_rerank.training.adapt_prepare import PrepareSettings

    train_defaults = AdaptConfig(base_model="-")
    for name, kind, help_text in reversed(TRAIN_SETTINGS):
        flag = "--" + name.replace("_", "-")
        default = getattr(train_defaults, name)
        if kind is bool:
            function = option(f"{flag}/--no-{name.replace('_', '-')}", name, default=default, help=help_text)(function)
        else:
            function = option(flag, name, type=kind, default=default, help=help_text)(function)
    prepare_defaults = PrepareSettings()
    for name, flag, kind, help_text in reversed(PREPARE_SETTINGS):
        default = getattr(prepare_defaults, name)
        if isinstance(default, tuple):
            default = ",".join(default)
        function = option(flag, "prepare_" + name, type=kind, default=default, help=help_text)(function)
    return function


@click.command(name="adapt")
@option("--index", "index", default=None, help="OpenSearch index to adapt to (needed to prepare groups).")
@option("--base", "base", default=None, help="Student to start from: a cross-encoder checkpoint, or an encoder (fresh head).")
@option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
        help="Output folder: HF checkpoint, adapt_log.json, recipe.yaml, state/ (and groups.jsonl.gz by default).")
@option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Adapt recipe (YAML with prepare and train blocks); command-line options override it.")
@option("--groups", "groups_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Prepared groups file; trained on as is when it exists; default: OUT/groups.jsonl.gz.")
@option("--prepare-only", is_flag=True, help="Write the groups file (needs OpenSearch) and stop; train elsewhere.")
@option("--dense", "dense_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Bi-encoder export (es-rerank export-dense) whose cosines are a teacher input.")
@option("--ce", "teacher_ce_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Cross-encoder export (es-rerank export) whose scores are a teacher input.")
@option("--corpus", type=click.Path(exists=True, path_type=Path), default=None,
        help="Read documents from this BEIR corpus instead of scrolling the index (must be the index's documents).")
@option("--labelled-groups", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Judged groups from `es-rerank mine`, trained with LCE alongside the pseudo-queries.")
@option("--labelled-queries", type=click.Path(exists=True, path_type=Path), default=None,
        help="BEIR directory or queries file with the texts of --labelled-groups.")
@option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Where the teacher models run while preparing.")
@option("--threads", type=click.IntRange(min=0), default=0, help="CPU threads of the teacher models; 0 lets onnxruntime choose.")
@option("--dev-candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Scored candidates file (fusion-candidates + score-candidates) measured after training.")
@option("--dev-qrels", type=click.Path(exists=True, path_type=Path), default=None,
        help="BEIR directory or qrels TSV judging --dev-candidates.")
@option("--dev-split", default="train", help="Qrels split of --dev-qrels when it is a BEIR directory.")
@option("--resume", is_flag=True, help="Continue from OUT/state if an earlier run left one.")
@option("--stop-after", type=click.IntRange(min=1), default=None,
        help="Stop after this many steps, leaving OUT/state to --resume from.")
@_settings_options
@opensearch_url
@click.pass_context
def adapt_command(ctx: click.Context, index: str | None, base: str | None, out: Path, config_path: Path | None,
                  groups_path: Path | None, prepare_only: bool, dense_dir: Path | None, teacher_ce_dir: Path | None,
                  corpus: Path | None, labelled_groups: Path | None, labelled_queries: Path | None, device: str,
                  threads: int, dev_candidates: Path | None, dev_qrels: Path | None, dev_split: str, resume: bool,
                  stop_after: int | None, opensearch_url: str | None, **settings) -> None:
    """Adapt a cross-encoder to INDEX with pseudo-queries and a BM25 + dense teacher, no judgments needed."""
    from es_rerank.errors import ConfigError
    from es_rerank.training.adapt_config import read_adapt_recipe

    explicit = {name for name in settings if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    recipe_prepare, recipe_train = read_adapt_recipe(config_path) if config_path else ({}, {})
    prepare = _prepare_settings(settings, explicit, recipe_prepare)
    groups_path = groups_path or out / "groups.jsonl.gz"
    if prepare_only or not groups_path.exists():
        if index is None:
            raise ConfigError(f"no groups file at {groups_path} and no --index to prepare one from",
                              hint="pass --index INDEX (with OpenSearch reachable), or --groups FILE prepared earlier")
        _prepare(index, prepare, groups_path, dense_dir, teacher_ce_dir, corpus, labelled_groups, labelled_queries,
                 device, threads, opensearch_url)
        if prepare_only:
            return
    else:
        click.echo(f"using the prepared groups in {groups_path}", err=True)
    train = {name: value for name, value in settings.items() if not name.startswith("prepare_")}
    chosen = {**{k: v for k, v in train.items() if v is not None and k not in explicit}, **recipe_train,
              **{k: v for k, v in train.items() if k in explicit}}
    if base is not None:
        chosen["base_model"] = base
    if isinstance(chosen.get("train_sources"), str):
        chosen["train_sources"] = tuple(s.strip() for s in chosen["train_sources"].split(",") if s.strip())
    _train(chosen, groups_path, out, dev_candidates, dev_qrels, dev_split, resume, stop_after)


def _prepare_settings(settings: dict, explicit: set[str], recipe: dict):
    from es_rerank.training.adapt_prepare import PrepareSettings

    values = {name[len("prepare_"):]: value for name, value in settings.items() if name.startswith("prepare_")}
    merged = {**{k: v for k, v in values.items() if "prepare_" + k not in explicit}, **recipe,
              **{k: v for k, v in values.items() if "prepare_" + k in explicit}}
    for name in ("sources", "fields"):
        if isinstance(merged[name], str):
            merged[name] = tuple(part.strip() for part in merged[name].split(",") if part.strip())
    return PrepareSettings(**merged)


def _prepare(index: str, settings, out: Path, dense_dir: Path | None, teacher_ce_dir: Path | None,
             corpus: Path | None, labelled: Path | None, labelled_queries: Path | None, device: str, threads: int,
             opensearch_url: str | None) -> None:
    import json

    from es_rerank.cli.fusion_cmd import shown
    from es_rerank.engine.client import check_reachable, make_client, resolve_url
    from es_rerank.training.adapt_groups import write_adapt_groups
    from es_rerank.training.adapt_prepare import prepare_adapt_groups

    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    dense = ce = None
    labels = {}
    if dense_dir is None and teacher_ce_dir is None:
        click.echo("warning: no --dense or --ce export given; the groups carry BM25 scores only, so the teacher "
                   "can only be BM25 (train with --teacher-dense 0)", err=True)
    if dense_dir is not None:
        from es_rerank.scoring.bi_encoder import DenseScorer

        dense = DenseScorer.load(dense_dir, device=device, threads=threads, cache_size=200_000)
        source = json.loads((dense_dir / "meta.json").read_text(encoding="utf-8")).get("source") or dense_dir.name
        labels["dense"] = shown(source)
    if teacher_ce_dir is not None:
        from es_rerank.scoring.cross_encoder import OnnxScorer

        ce = OnnxScorer.load(teacher_ce_dir, device=device, threads=threads or None)
        labels["ce"] = teacher_ce_dir.name
    groups = prepare_adapt_groups(client, index, settings, dense=dense, ce=ce, corpus=corpus, labelled=labelled,
                                  labelled_queries=labelled_queries, labels=labels,
                                  progress=lambda items, total, desc: progress_bar(items, total, desc=desc,
                                                                                   unit="batch"))
    groups.meta["command"] = recorded_command()
    write_adapt_groups(groups, out)
    sources = ", ".join(f"{n} {s}" for s, n in sorted(groups.meta["sources"].items()))
    click.echo(f"wrote {len(groups.pseudo)} pseudo-query groups ({sources}) and {len(groups.labelled)} labelled "
               f"groups from {groups.meta['documents']} documents of {index} to {out}")


def recorded_command() -> str:
    """This invocation as it should appear in a record: absolute paths by their last part only.

    Example:
        >>> import sys; sys.argv = ["es-rerank", "adapt", "--dense", "/abs/minilm-dense", "--out", "runs/a"]
        >>> recorded_command()
        'es-rerank adapt --dense minilm-dense --out runs/a'
    """
    import sys

    from es_rerank.cli.fusion_cmd import shown

    return " ".join(["es-rerank", *(shown(a) if a.startswith("/") else a for a in sys.argv[1:])])


def _train(settings: dict, groups: Path, out: Path, dev_candidates: Path | None, dev_qrels: Path | None,
           dev_split: str, resume: bool, stop_after: int | None) -> None:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from es_rerank.training.adapt_config import build_adapt_config
    from es_rerank.training.adapt import AdaptInputs, adapt

    config = build_adapt_config(settings)
    log = adapt(config, AdaptInputs(groups, None, dev_candidates, dev_qrels, dev_split), out, resume=resume, stop_after=stop_after)
    probe = log.get("probe_loss", {})
    rate = log.get("pairs_per_s")
    line = f"adapted for {log['steps_done']}/{log['total_steps']} steps on {log['units']['pseudo']} pseudo-queries"
    if log["units"]["labelled"]:
        line += f" and {log['units']['labelled']} labelled queries"
    if rate:
        line += f", {rate:,.0f} pairs/s"
    if "before" in probe and "after" in probe:
        line += f"; probe {config.loss} loss {probe['before']:.4f} -> {probe['after']:.4f}"
    line += f"; checkpoint in {out}" if log["finished"] else f"; stopped early, continue with --resume --out {out}"
    click.echo(line)
    if log["finished"]:
        index = (log.get("groups_meta") or {}).get("index") or "INDEX"
        click.echo(f"before serving it: `es-rerank export {out} EXPORT`, then `es-rerank ab --model EXPORT --index "
                   f"{index} --queries ... --qrels ... --record-verdict` on judged queries of the index; "
                   "`serve` refuses it there when that A/B finds it below BM25 (the guard rail)")
    for name, value in (log.get("dev") or {}).items():
        click.echo(f"dev nDCG@10 {name:<20} {value:.4f}")


@click.command(name="adapt")
@click.argument("candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="The adapted cross-encoder: an adapt output folder (PyTorch) or its `es-rerank export` folder (ONNX).")
@option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory (or qrels TSV) judging CANDIDATES' split.")
@option("--max-length", type=click.IntRange(min=8), default=None,
        help="PyTorch model only: pair length in tokens; default: the adapt run's max_length.")
@option("--batch-size", type=click.IntRange(min=1), default=64, help="Pairs per model run.")
@option("--threads", type=click.IntRange(min=0), default=0, help="CPU threads (torch or onnxruntime); 0: their default.")
@option("--set", "set_name", default=None, help="Collection name in figure names; default: CANDIDATES' dataset name.")
@option("--scored-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Also write CANDIDATES with the adapted scores added as its ce column.")
@option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Write the figures as docs/benchmarks.json entries to this file.")
def bench_adapt_command(candidates: Path, model_dir: Path, qrels_path: Path, max_length: int | None, batch_size: int,
                        threads: int, set_name: str | None, scored_out: Path | None, json_path: Path | None) -> None:
    """nDCG@10 (ir_measures) of an adapted cross-encoder on scored CANDIDATES (BM25 top-k with a dense
    column), alone and fused with BM25 (and dense) at fixed equal weights; flags anything below BM25."""
    import json
    import os
    import platform
    from datetime import date

    from es_rerank.cli.fusion_cmd import shown
    from es_rerank.data.beir import read_qrels
    from es_rerank.data.candidates import read_candidates, write_candidates
    from es_rerank.evaluation.fusion_fit import judged_qrels, score_candidates
    from es_rerank.training.evaluate import FUSED_SYSTEMS, system_figures

    cands = read_candidates(candidates)
    split = cands.meta.get("split") or "test"
    scorer = _adapted_scorer(model_dir, max_length, batch_size, threads)
    score_candidates(cands, "ce", scorer, shown(model_dir), progress=lambda chunks: progress_bar(
        chunks, len(chunks), desc="adapted scoring", unit="chunk"))
    if scored_out is not None:
        cands.meta.setdefault("history", []).append(f"es-rerank bench adapt {shown(candidates)} --model "
                                                    f"{shown(model_dir)} --scored-out {shown(scored_out)}")
        write_candidates(cands, scored_out)
    qrels = read_qrels(qrels_path, split)
    judged = judged_qrels(cands, qrels)
    figures = system_figures(cands, qrels)
    set_name = set_name or cands.meta.get("dataset") or candidates.stem
    click.echo(f"{set_name} {split}: {len(judged)} judged queries, BM25 top-{cands.meta.get('depth')} candidates")
    click.echo(f"{'system':<20} {'nDCG@10':>8} {'vs bm25':>8}")
    for name, value in figures.items():
        delta = value - figures["bm25"]
        click.echo(f"{name:<20} {value:8.4f} {delta:+8.4f}{'  BELOW BM25' if delta < 0 else ''}")
    if json_path is not None:
        command = f"es-rerank bench adapt {shown(candidates)} --model {shown(model_dir)} --qrels {shown(qrels_path)}"
        entries = [{"name": f"quality.{set_name}_{split}.{name}.ndcg10", "value": round(value, 4), "unit": "nDCG@10",
                    "baseline": f"bm25 {figures['bm25']:.4f} on the same BM25 top-{cands.meta.get('depth')} "
                                "candidates, same run",
                    "weights": FUSED_SYSTEMS[name].as_dict() if name in FUSED_SYSTEMS else None,
                    "models": cands.meta.get("models", {}), "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU",
                    "command": command, "date": date.today().isoformat()} for name, value in figures.items()]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
        click.echo(f"wrote {len(entries)} figures to {json_path}")


def _adapted_scorer(model_dir: Path, max_length: int | None, batch_size: int, threads: int):
    """An ONNX scorer for an export folder (meta.json), else a PyTorch scorer fed by the serving PairEncoder."""
    if (model_dir / "meta.json").is_file():
        from es_rerank.scoring.cross_encoder import OnnxScorer

        return OnnxScorer.load(model_dir, device="cpu", batch_size=batch_size, threads=threads or None)
    import torch
    import yaml

    from es_rerank.training.model import load_cross_encoder, make_scorer

    if threads:
        torch.set_num_threads(threads)
    recipe = model_dir / "recipe.yaml"
    train = (yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("train", {}) if recipe.is_file() else {}
    length = max_length or train.get("max_length") or 256
    model, tokenizer = load_cross_encoder(str(model_dir))
    model.eval()  # TorchScorer runs under inference_mode; eval() turns dropout off
    return make_scorer(model, tokenizer, length, train.get("query_max_length", 48), torch.device("cpu"), batch_size)
