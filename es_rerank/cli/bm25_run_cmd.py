"""`es-rerank bm25-run`: the BM25 candidate list of judged queries, as a TREC run file.

Training evaluates on such a file where no OpenSearch runs (the GPU machine): its dev split
reranks the BM25 top-100 written here, and the final test does the same with the test split.
"""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.mine_cmd import fields_option, split_fields
from es_rerank.cli.options import opensearch_url, option, progress_bar


@click.command(name="bm25-run")
@option("--index", "index", required=True, help="OpenSearch index holding the corpus.")
@option("--queries", "queries_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or queries.jsonl[.gz] file.")
@option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory or qrels TSV; its judged queries are the ones searched.")
@option("--split", default="test", help="Qrels split to read when --qrels is a BEIR directory.")
@option("--depth", default=100, type=click.IntRange(min=1), help="Hits per query to keep.")
@option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
        help="TREC run file to write (qid Q0 docid rank score tag); gzipped when it ends in .gz.")
@fields_option
@opensearch_url
def bm25_run_command(index: str, queries_path: Path, qrels_path: Path, split: str, depth: int, out: Path,
                     fields: str, opensearch_url: str | None) -> None:
    """Search every judged query of a split with the served BM25 query and save the ranked hits."""
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.data.mining import bm25_run, write_run
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    queries, qrels = read_queries(queries_path), read_qrels(qrels_path, split)
    run = bm25_run(client, index, queries, list(qrels), depth, split_fields(fields),
                   progress=lambda items, total: progress_bar(items, total, desc=f"bm25 {index}", unit="query"))
    write_run(run, out)
    empty = [qid for qid, hits in run.items() if not hits]
    if empty:
        click.echo(f"warning: {len(empty)} queries have no hits: {', '.join(empty[:10])}", err=True)
    click.echo(f"wrote {sum(len(h) for h in run.values())} hits for {len(run)} queries to {out}")
