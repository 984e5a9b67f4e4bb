"""`es-rerank mine`: BM25 hard-negative groups for training, from the index that serves traffic."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar
from es_rerank.data.mining import SAMPLE_SALT


def fields_option(function):
    """--fields: the document fields BM25 searches (the same default the proxy serves with)."""
    return option("--fields", default="title,text", metavar="A,B",
                  help="Comma-separated document fields the BM25 query searches.")(function)


def split_fields(value: str) -> tuple[str, ...]:
    """'title, text' -> ('title', 'text'); an empty list is an error."""
    fields = tuple(f.strip() for f in value.split(",") if f.strip())
    if not fields:
        raise click.BadParameter(f"expected field names separated by commas, got {value!r}", param_hint="--fields")
    return fields


@click.command(name="mine")
@option("--index", "index", required=True, help="OpenSearch index holding the corpus (the one BM25 serves from).")
@option("--queries", "queries_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or queries.jsonl[.gz] file.")
@option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or qrels TSV file naming the training positives.")
@option("--split", default="train", help="Qrels split to read when --qrels is a BEIR directory.")
@option("--depth", default=1000, type=click.IntRange(min=1), help="BM25 hits per query to draw negatives from.")
@option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
        help="Groups JSONL to write; an existing file is resumed (queries in it are skipped).")
@option("--max-queries", type=click.IntRange(min=1), default=None,
        help="Mine only this many judged queries, a sample fixed by a hash of each query id (large training sets).")
@option("--sample-salt", default=SAMPLE_SALT, show_default=True,
        help="Salt of the --max-queries hash; another salt draws another sample.")
@fields_option
@opensearch_url
def mine_command(index: str, queries_path: Path, qrels_path: Path, split: str, depth: int, out: Path,
                 max_queries: int | None, sample_salt: str, fields: str, opensearch_url: str | None) -> None:
    """Write {qid, pos, neg} groups: judged positives and BM25-ranked negatives (positives removed).

    Runs the same BM25 query builder as the proxy, so training negatives come from the retriever
    the model will rerank. Interrupt it at any time; run it again to continue.
    """
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.data.mining import mine_groups
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    queries, qrels = read_queries(queries_path), read_qrels(qrels_path, split)
    report = mine_groups(client, index, queries, qrels, depth, out, split_fields(fields),
                         progress=lambda items, total: progress_bar(items, total, desc=f"mining {index}", unit="query"),
                         max_queries=max_queries, sample_salt=sample_salt)
    for line in report.describe():
        click.echo(f"warning: {line}", err=True)
    click.echo(f"wrote {report.written} groups to {out} ({report.already_done} were already there)")
