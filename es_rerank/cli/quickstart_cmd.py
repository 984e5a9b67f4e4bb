"""`es-rerank quickstart`: the main job end to end on local defaults."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar


@click.command()
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                default="../shared/data/scifact")
@option("--index", "index", default="", help="Index name; default: the dataset directory's name.")
@option("--model", default=None,
        help="Cross-encoder: export dir, checkpoint dir or hub id; default: the GPU recipe on a GPU, else BM25 + bi-encoder.")
@option("--gpu/--no-gpu", "use_gpu", default=None, help="Train the GPU recipe (default: when torch sees a CUDA GPU).")
@option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/quickstart"),
        help="Where the exports, checkpoint and A/B reports go (reused by later runs).")
@option("--queries-shown", type=int, default=3, help="How many judged test queries to show, BM25 next to reranked.")
@option("--ab-queries", type=int, default=0, help="Judged test queries in the offline A/B (0: all).")
@option("--window", type=int, default=100, help="Rerank window (BM25 hits rescored per search).")
@option("--allow-harm", is_flag=True, help="Serve the system even when its A/B shows it significantly below BM25.")
@opensearch_url
def quickstart(dataset_dir: Path, index: str, model: str | None, use_gpu: bool | None, work_dir: Path,
               queries_shown: int, ab_queries: int, window: int, allow_harm: bool, opensearch_url: str | None) -> None:
    """Node, index, system, A/B, guard rail and proxy on DATASET_DIR: the whole pipeline on local defaults."""
    from es_rerank.quickstart import QuickstartSettings, run_quickstart

    work_dir.mkdir(parents=True, exist_ok=True)
    settings = QuickstartSettings(dataset=dataset_dir, index=index, opensearch_url=opensearch_url, model=model,
                                  work_dir=work_dir, queries_shown=queries_shown, ab_queries=ab_queries,
                                  window=window, allow_harm=allow_harm, use_gpu=use_gpu)
    run_quickstart(settings, click.echo,
                   progress=lambda docs, total: progress_bar(docs, total, desc=f"indexing {settings.index_name}"))
