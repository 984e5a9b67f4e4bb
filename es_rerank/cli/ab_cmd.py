"""`es-rerank ab`: BM25 against reranked search on judged queries; `es-rerank ab report LOG` for live traffic."""

from __future__ import annotations

import json
from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar

VARIANTS_HELP = "YAML/JSON list of variants to compare: {name, proxy URL | model DIR, rerank: {window, fields, ...}, headers}."


@click.group(name="ab", invoke_without_command=True)
@option("--queries", "queries", type=click.Path(exists=True, path_type=Path),
        help="BEIR queries: a directory with queries.jsonl[.gz] or the file itself.")
@option("--qrels", "qrels", type=click.Path(exists=True, path_type=Path),
        help="Judgments: a qrels TSV, or a BEIR directory (with --split).")
@option("--split", default="test", help="qrels split to read when --qrels is a BEIR directory.")
@option("--index", "index", help="OpenSearch index to search on every side.")
@option("--proxy", "proxy", metavar="URL", help="es-rerank proxy URL serving the reranked side.")
@option("--model", "model", type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Exported model dir: start a proxy in-process on it for the reranked side.")
@option("--dense-model", "dense_model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Bi-encoder export (export-dense): the in-process side serves BM25 fused with it (with --model: all three).")
@option("--fusion-file", "fusion_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Fusion weights for --dense-model; default without --model: recipes/fusion/bm25_dense_minilm.yaml's.")
@option("--record-verdict", is_flag=True,
        help="Record the outcome (harm or not) in the export, for `serve`'s guard rail (--model's, else --dense-model's).")
@option("--variants", "variants", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=VARIANTS_HELP)
@option("--name", default="rerank", help="Name of the --proxy/--model side in the report and run files.")
@option("--window", type=click.IntRange(min=1), default=None, help="Rerank window sent as ext.rerank.window (default: the proxy's).")
@option("--fields", default="title,text", help="Comma-separated fields of the BM25 multi_match query.")
@option("--title-field", default="title", help="_source field shown as hit title in the HTML report ('' for none).")
@option("--depth", type=click.IntRange(1, 10_000), default=100, help="Hits per query and side (Recall@100 and MAP use them).")
@option("--max-queries", type=click.IntRange(min=0), default=0, help="Evaluate only the first N judged queries (0: all).")
@option("--concurrency", type=click.IntRange(1, 64), default=4, help="Searches in flight per side.")
@option("--timeout", "timeout", type=click.FloatRange(min=0.1), default=60.0, help="Seconds to wait for one search.")
@option("--alpha", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.05,
        help="Significance level for the 'significant' flags.")
@option("--seed", type=int, default=0, help="Seed of the bootstrap and randomization tests.")
@option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("ab-report"),
        help="Directory for report.json, report.html and runs/<side>.trec.")
@option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of the table.")
@opensearch_url
@click.pass_context
def ab(ctx: click.Context, queries: Path | None, qrels: Path | None, split: str, index: str | None,
       proxy: str | None, model: Path | None, dense_model: Path | None, fusion_file: Path | None,
       record_verdict: bool, variants: Path | None, name: str, window: int | None,
       fields: str, title_field: str, depth: int, max_queries: int, concurrency: int, timeout: float,
       alpha: float, seed: int, out: Path, as_json: bool, opensearch_url: str | None) -> None:
    """Run every judged query against OpenSearch (BM25) and through the reranker; compare them.

    Writes a terminal table, report.json, a self-contained report.html with plots and a TREC run
    file per side. Queries without judgments are skipped and counted. See `ab report` for the
    online A/B log.
    """
    if ctx.invoked_subcommand is not None:
        return
    from contextlib import ExitStack

    from es_rerank.evaluation.compare import compare_sides, write_outputs
    from es_rerank.proxy.inprocess import serve_model
    from es_rerank.evaluation.offline import OfflineSettings, Side, select_judged
    from es_rerank.evaluation.protocol import BM25
    from es_rerank.evaluation.report import render_table
    from es_rerank.evaluation.variants import RerankKnobs, Variant, load_variants
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.errors import ConfigError
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    missing = [flag for flag, value in (("--queries", queries), ("--qrels", qrels), ("--index", index))
               if not value]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}",
                          hint="es-rerank ab --queries Q --qrels R --index I (--proxy URL | --model DIR | --variants FILE)")
    if proxy and (model or dense_model):
        raise ConfigError("give --proxy or --model/--dense-model, not both", hint="use --variants FILE to compare several")
    weights = in_process_fusion(model, dense_model, fusion_file)
    compared = load_variants(variants) if variants else []
    if proxy or (model and not dense_model):
        compared.insert(0, Variant(name=name, proxy=proxy, model=model, rerank=RerankKnobs(window=window)))
    if not compared and not dense_model:
        raise ConfigError("nothing to compare BM25 with",
                          hint="pass --proxy URL, --model EXPORT_DIR, --dense-model EXPORT_DIR or --variants FILE")
    if record_verdict and not (model or dense_model):
        raise ConfigError("--record-verdict records into an export, and none is served in-process here",
                          hint="pass --model EXPORT_DIR and/or --dense-model EXPORT_DIR")

    url = resolve_url(opensearch_url)
    check_reachable(make_client(url), url)
    settings = OfflineSettings(index=index, depth=depth, fields=_split_fields(fields), title_field=title_field,
                               concurrency=concurrency, timeout_s=timeout)
    judged = select_judged(read_queries(queries), read_qrels(qrels, split), limit=max_queries)

    with ExitStack() as stack:
        sides = [Side(BM25, url)]
        if dense_model is not None:  # the fused side, first, so that its comparison is the verdict's
            fused_url = stack.enter_context(serve_model(model, url, index, timeout, dense_model, weights))
            sides.append(Side(name, fused_url, RerankKnobs(window=window)))
        for variant in compared:
            base_url = variant.proxy or stack.enter_context(serve_model(variant.model, url, index, timeout))
            sides.append(Side(variant.name, base_url, variant.rerank, variant.headers))
        comparison = compare_sides(
            sides, judged, settings, alpha=alpha, seed=seed,
            progress=lambda items, total, side: progress_bar(items, total, desc=f"searching {side}", unit="query"))
    paths = write_outputs(comparison, out)
    if record_verdict:
        from es_rerank.proxy.guard_rail import Verdict, record_verdict as record

        verdict = Verdict.from_report(comparison.report, split)
        where = record(model or dense_model, verdict)
        click.echo(f"recorded in {where}: {'HARM, ' if verdict.harm else ''}{verdict.describe()}", err=True)
    if as_json:
        click.echo(json.dumps(comparison.report, indent=2))
    else:
        click.echo(render_table(comparison.report))
        click.echo("")
        click.echo(f"report: {paths['html']}  (JSON: {paths['json']}; run files in {out / 'runs'})")


@ab.command(name="report")
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--events", "events", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Click-event log(s) written by POST /_rerank/events, if not in LOG itself.")
@option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@option("--seed", type=int, default=0, help="Seed of the bootstrap intervals.")
def report_command(logs: tuple[Path, ...], events: tuple[Path, ...], as_json: bool, seed: int) -> None:
    """Summarise the proxy's decision LOG(s): CTR and MRR of clicks per variant, interleaving wins."""
    from es_rerank.proxy.online_ab.report import read_logs, render_online_table, summarise

    contents = read_logs([*logs, *events])
    for problem in contents.bad_lines[:10]:
        click.echo(f"skipped {problem}", err=True)
    if len(contents.bad_lines) > 10:
        click.echo(f"... and {len(contents.bad_lines) - 10} more unusable lines", err=True)
    summary = summarise(contents, seed=seed)
    click.echo(json.dumps(summary, indent=2) if as_json else render_online_table(summary))


def in_process_fusion(model: Path | None, dense_model: Path | None, fusion_file: Path | None):
    """The fusion weights of the in-process side: --fusion-file's, or BM25 + bi-encoder's without a model.

    Example:
        >>> in_process_fusion(None, Path("dense"), None).as_dict()
        {'ce': 0.0, 'bm25': 0.5, 'dense': 0.5, 'norm': 'minmax'}
    """
    from es_rerank.errors import ConfigError
    from es_rerank.scoring.fusion import load_weights
    from es_rerank.proxy.guard_rail import SAFE_FUSION

    if dense_model is None:
        if fusion_file is not None:
            raise ConfigError("--fusion-file needs --dense-model", hint="pass the bi-encoder export the weights mix in")
        return None
    if fusion_file is not None:
        return load_weights(fusion_file)
    if model is not None:
        raise ConfigError("--model with --dense-model needs --fusion-file",
                          hint="e.g. --fusion-file recipes/fusion/ce_bm25_dense_minilm.yaml")
    return SAFE_FUSION


def _split_fields(text: str) -> tuple[str, ...]:
    from es_rerank.errors import ConfigError

    fields = tuple(part.strip() for part in text.split(",") if part.strip())
    if not fields:
        raise ConfigError(f"--fields needs at least one field name, got {text!r}", hint="e.g. --fields title,text")
    return fields
