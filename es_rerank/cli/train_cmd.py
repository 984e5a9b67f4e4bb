"""`es-rerank train`: fine-tune a cross-encoder on groups mined by `es-rerank mine`.

Settings come from a recipe (`--config recipe.yaml`); options given on the command line (or
through their environment variables) override it. Data paths are options only. Multi-process:
`torchrun --nproc_per_node N -m es_rerank train ...` (NCCL on GPUs, gloo on the CPU).
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from es_rerank.cli.fine_tuning_options import FINE_TUNING_SETTINGS
from es_rerank.cli.options import option

# Every training setting as a command-line option: (name, click type, help). Defaults are the
# TrainConfig defaults; the recipe overrides defaults, an explicit option overrides the recipe.
SETTINGS = [
    ("base_model", str, "Base model: a local Hugging Face directory or a hub id (a plain encoder gets a fresh head)."),
    ("loss", click.Choice(["bce", "lce"]), "lce: softmax over each group (Gao 2021); bce: pointwise (Nogueira & Cho)."),
    ("group_size", click.IntRange(min=2), "Documents per query per step: 1 positive + group_size-1 BM25 negatives."),
    ("bce_balanced", bool, "BCE only: weigh the positive and the negatives of a group half each."),
    ("neg_depth", click.IntRange(min=1), "Sample negatives from this BM25 top-k of each query."),
    ("queries_per_step", click.IntRange(min=1), "Queries per optimizer step, over all processes and micro-batches."),
    ("grad_accum", click.IntRange(min=1), "Micro-batches per step on each process (gradient accumulation)."),
    ("steps", click.IntRange(min=1), "Optimizer steps."),
    ("optimizer", click.Choice(["adamw", "sgd"]), "adamw (default) or plain SGD without momentum (for exact checks)."),
    *FINE_TUNING_SETTINGS,
    ("dev_fraction", float, "Fraction of training queries held out as the dev split (needs --dev-run)."),
    ("split_seed", click.IntRange(min=0), "Seed of the dev hold-out (independent of --seed)."),
    ("eval_every", click.IntRange(min=0), "Evaluate on the dev split every this many steps (and at the end)."),
    ("eval_depth", click.IntRange(min=1), "BM25 candidates reranked per dev query."),
    ("eval_batch_size", click.IntRange(min=1), "Pairs per forward pass during evaluation."),
    ("log_every", click.IntRange(min=1), "Log loss and pairs/s every this many steps."),
    ("save_every", click.IntRange(min=0), "Save resumable state every this many steps (and at the end)."),
    ("num_workers", click.IntRange(min=0), "DataLoader worker processes building batches."),
    ("compile", bool, "Run the model through torch.compile."),
]


def setting_options(function):
    """Attach one option per training setting."""
    from es_rerank.training.config import TrainConfig

    defaults = TrainConfig(base_model="-")
    for name, kind, help_text in reversed(SETTINGS):
        flag = "--" + name.replace("_", "-")
        default = None if name == "base_model" else getattr(defaults, name)
        if kind is bool:
            decl = f"{flag}/--no-{name.replace('_', '-')}"
            function = option(decl, name, default=default, help=help_text)(function)
        else:
            function = option(flag, name, type=kind, default=default, help=help_text)(function)
    return function


@click.command(name="train")
@option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="YAML recipe of settings; command-line options override it.")
@option("--groups", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Groups JSONL[.gz] written by `es-rerank mine`.")
@option("--corpus", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or corpus.jsonl[.gz] the groups' documents come from.")
@option("--queries", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or queries.jsonl[.gz].")
@option("--dev-run", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="BM25 run of the training queries (`es-rerank bm25-run --split train`) for dev evaluation.")
@option("--qrels", type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or qrels TSV judging the dev queries (the training split).")
@option("--split", "qrels_split", default="train", help="Qrels split when --qrels is a BEIR directory.")
@option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
        help="Output folder: HF checkpoint, train_log.json, recipe.yaml, state/.")
@option("--resume", is_flag=True, help="Continue from OUT/state if an earlier run left one.")
@option("--stop-after", type=click.IntRange(min=1), default=None,
        help="Stop after this many steps, leaving OUT/state to --resume from (time-limited machines).")
@setting_options
@click.pass_context
def train_command(ctx: click.Context, config_path: Path | None, groups: Path, corpus: Path, queries: Path,
                  dev_run: Path | None, qrels: Path | None, qrels_split: str, out: Path, resume: bool,
                  stop_after: int | None, **settings) -> None:
    """Fine-tune a cross-encoder with LCE or BCE on BM25 hard negatives; keep the best dev checkpoint."""
    import os

    # Batches are built from ids in forked DataLoader workers, which never tokenize: keep the
    # tokenizer's own thread pool on in this process without its fork warning.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from es_rerank.training.config import build_config, merge_settings, read_recipe
    from es_rerank.training.supervised import TrainInputs, train

    explicit = {name: value for name, value in settings.items()
                if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    defaults = {name: value for name, value in settings.items() if value is not None and name not in explicit}
    recipe = read_recipe(config_path) if config_path else {}
    config = build_config(merge_settings({**defaults, **recipe}, explicit))
    log = train(config, TrainInputs(groups, corpus, queries, dev_run, qrels, qrels_split), out, resume=resume,
                stop_after=stop_after)
    if os.environ.get("RANK", "0") != "0":
        return  # one summary line per job, from rank 0
    best = log.get("best")
    rate = log.get("pairs_per_s")
    click.echo(f"trained {log['steps_done']} steps on {log['train_queries']} queries"
               + (f", {rate:,.0f} pairs/s" if rate else "")
               + (f"; best dev nDCG@10 {best['ndcg@10']:.4f} at step {best['step']}"
                  f" (BM25 {log['dev_bm25']['ndcg@10']:.4f})" if best else "")
               + (f"; checkpoint in {out}" if log["finished"] or best else "")
               + ("" if log["finished"] else f"; stopped early, continue with --resume --out {out}"))

