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
@option("--dense-model", "dense_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Bi-encoder export (es-rerank export-dense): also store each document's vector, for kNN candidates.")
@opensearch_url
def index_command(dataset_dir: Path, index: str, recreate: bool, skip_bad: bool, dense_dir: Path | None,
                  opensearch_url: str | None) -> None:
    """Bulk-load DATASET_DIR/corpus.jsonl[.gz] (BEIR layout) into an index with a BM25 mapping."""
    from es_rerank.data.indexing import DocumentVectors, index_corpus
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    vectors = None
    if dense_dir is not None:
        from es_rerank.scoring.bi_encoder import DenseScorer

        scorer = DenseScorer.load(dense_dir)
        vectors = DocumentVectors(scorer.embed, scorer.meta.dim)
    report = index_corpus(client, dataset_dir, index, recreate=recreate, skip_bad=skip_bad, vectors=vectors,
                          progress=lambda docs, total: progress_bar(docs, total, desc=f"indexing {index}"))
    if report.warning:
        click.echo(f"warning: {report.warning}", err=True)
    for bad in report.bad_lines:
        click.echo(f"skipped malformed line {bad}", err=True)
    click.echo(f"indexed {report.indexed} documents into {index} "
               f"({'created' if report.created else 'existing index'}); index count {report.index_count}; analyzer {report.analyzer}")
