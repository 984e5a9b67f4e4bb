"""`es-rerank quickstart`: the main job end to end on local defaults."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar


@click.command()
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                default="../shared/data/scifact")
@option("--index", "index", default="", help="Index name; default: the dataset directory's name.")
@option("--model", default=None, help="Export dir, checkpoint dir or hub id; default: the hub model, else a CPU fine-tune.")
@option("--no-hub", is_flag=True, help="Do not try the Hugging Face hub for a ready cross-encoder.")
@option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/quickstart"),
        help="Where the mined groups, checkpoint, export and A/B report go (reused by later runs).")
@option("--queries-shown", type=int, default=3, help="How many judged test queries to show, BM25 next to reranked.")
@option("--ab-queries", type=int, default=50, help="Judged test queries in the offline A/B (0: all; slow on CPU).")
@option("--window", type=int, default=30, help="Rerank window (BM25 hits rescored per search).")
@option("--train-steps", type=int, default=60, help="Steps of the offline CPU fine-tune.")
@opensearch_url
def quickstart(dataset_dir: Path, index: str, model: str | None, no_hub: bool, work_dir: Path, queries_shown: int,
               ab_queries: int, window: int, train_steps: int, opensearch_url: str | None) -> None:
    """Node, index, model, export, proxy and A/B on DATASET_DIR: the whole pipeline on local defaults."""
    from es_rerank.quickstart import QuickstartSettings, run_quickstart

    work_dir.mkdir(parents=True, exist_ok=True)
    settings = QuickstartSettings(dataset=dataset_dir, index=index, opensearch_url=opensearch_url, model=model,
                                  work_dir=work_dir, queries_shown=queries_shown, ab_queries=ab_queries,
                                  window=window, train_steps=train_steps, try_hub=not no_hub)
    run_quickstart(settings, click.echo,
                   progress=lambda docs, total: progress_bar(docs, total, desc=f"indexing {settings.index_name}"))
