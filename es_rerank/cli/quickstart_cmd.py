"""`es-rerank quickstart`: the main job end to end on local defaults."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar


@click.command()
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                default="../shared/data/scifact")
@option("--index", "index", default="", help="Index name; default: the dataset directory's name.")
@option("--queries-shown", type=int, default=3, help="How many judged test queries to show.")
@opensearch_url
def quickstart(dataset_dir: Path, index: str, queries_shown: int, opensearch_url: str | None) -> None:
    """Start the local node, index DATASET_DIR and show BM25 results for a few of its queries."""
    from es_rerank.quickstart import QuickstartSettings, run_quickstart

    settings = QuickstartSettings(dataset=dataset_dir, index=index, opensearch_url=opensearch_url,
                                  queries_shown=queries_shown)
    run_quickstart(settings, click.echo,
                   progress=lambda docs, total: progress_bar(docs, total, desc=f"indexing {settings.index_name}"))
