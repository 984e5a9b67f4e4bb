"""`es-rerank index DATASET_DIR --index NAME`: bulk-load a BEIR corpus."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar


@click.command(name="index")
@click.argument("dataset_dir", type=click.Path(exists=True, path_type=Path))
@option("--index", "index", required=True, help="Name of the OpenSearch index to load into.")
@option("--recreate", is_flag=True, help="Delete and rebuild the index if it exists with a different mapping.")
@option("--skip-bad", is_flag=True, help="Skip malformed corpus lines (reported with their numbers) instead of stopping.")
@opensearch_url
def index_command(dataset_dir: Path, index: str, recreate: bool, skip_bad: bool, opensearch_url: str | None) -> None:
    """Bulk-load DATASET_DIR/corpus.jsonl[.gz] (BEIR layout) into an index with a BM25 mapping."""
    from es_rerank.data.indexing import index_corpus
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    report = index_corpus(client, dataset_dir, index, recreate=recreate, skip_bad=skip_bad,
                          progress=lambda docs, total: progress_bar(docs, total, desc=f"indexing {index}"))
    if report.warning:
        click.echo(f"warning: {report.warning}", err=True)
    for bad in report.bad_lines:
        click.echo(f"skipped malformed line {bad}", err=True)
    click.echo(f"indexed {report.indexed} documents into {index} "
               f"({'created' if report.created else 'existing index'}); index count {report.index_count}; analyzer {report.analyzer}")
