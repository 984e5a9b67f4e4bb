"""`es-rerank serve --opensearch URL --model EXPORT_DIR`: the drop-in rerank proxy.

Per-index rules come from `--index` (with `--fields/--window/--deadline-ms`) and/or a YAML/TOML
`--config` file; every other setting from options or ES_RERANK_SERVE_* environment variables.
`--fusion-file` and `--dense-model` (or per index `fusion`/`fusion_file`/`dense_model`) mix the
cross-encoder with BM25 and a bi-encoder; `rerank: false` in the config switches an index off.
`--ab-*` options run an online A/B test; `--opensearch-ca-file` trusts a private CA for https.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import click

from es_rerank.cli.ab_serve_options import online_ab_options
from es_rerank.cli.options import opensearch_url, option
from es_rerank.proxy.settings import (UPSTREAM_ENGINES, BatchSettings, IndexRule, LimitSettings, LoadSettings,
                                     ProxySettings, ServerSettings, UpstreamSettings)

_rule = IndexRule("*")
_up = UpstreamSettings("http://127.0.0.1:9200")
_limits = LimitSettings()
_load = LoadSettings()
_batch = BatchSettings()
_server = ServerSettings()


@click.command(name="serve")
@opensearch_url
@option("--opensearch-ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        envvar=["OPENSEARCH_CA_FILE", "ES_RERANK_SERVE_OPENSEARCH_CA_FILE"],
        help="PEM file of the CA to trust for an https OpenSearch (a private CA).")
@option("--opensearch-insecure", is_flag=True,
        help="Skip OpenSearch certificate checks (test clusters only; clients' credentials become readable).")
@option("--upstream-engine", type=click.Choice(UPSTREAM_ENGINES), default=_up.engine,
        help="Engine behind --opensearch, whose shape the proxy's own answers take; auto: told by its answers.")
@option("--model", "model", type=click.Path(path_type=Path), default=None,
        help="Exported model directory (from `es-rerank export`); without it every request passes through.")
@option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
        help="Where the model runs: auto picks CUDA when onnxruntime-gpu can use a GPU.")
@option("--model-batch-size", type=int, default=64, help="Pairs per ONNX Runtime run inside one model call.")
@option("--workers", type=click.IntRange(1, 256), default=None,
        help="HTTP worker processes sharing the port, fed by one model-server process "
             "[default: half the cores, at most 16; 1 serves everything in one process].")
@option("--batch-tokens", type=click.IntRange(64), default=65536,
        help="Most padded tokens per model run (with --workers > 1, in the model server).")
@option("--config", "config_file", type=click.Path(path_type=Path), default=None, envvar="ES_RERANK_SERVE_CONFIG",
        help="YAML/TOML per-index rules: indices: {NAME: {fields, window, deadline_ms, fusion, dense_model, rerank}}.")
@option("--index", "indices", multiple=True, envvar="ES_RERANK_SERVE_INDEX",
        help="Index, alias or pattern to rerank (repeat; env: space-separated).")
@option("--fields", default=",".join(_rule.fields),
        help="Text fields scored, comma-separated (also the config file's default).")
@option("--window", type=int, default=_rule.window, help="Hits reranked per search (also the config file's default).")
@option("--deadline-ms", type=int, default=_rule.deadline_ms,
        help="Rerank-stage deadline; past it the BM25 page is served.")
@option("--fusion-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Fusion weights (a `fit-fusion` recipe) mixing the model with BM25 and dense scores; default: model only.")
@option("--dense-model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Bi-encoder export (`es-rerank export-dense`) giving the dense scores that fusion weights may use.")
@option("--dense-threads", type=int, default=0, help="CPU threads per dense model run (0: ONNX Runtime's choice).")
@option("--max-window", type=int, default=1000, help="Largest window a request may ask for with ext.rerank.window.")
@option("--host", default=_server.host, help="Address to listen on (0.0.0.0 in containers).")
@option("--port", type=int, default=_server.port, help="Port to listen on (0 picks a free one).")
@option("--max-in-flight", type=int, default=_load.max_in_flight,
        help="Concurrent reranked searches before overload.")
@option("--overload", type=click.Choice(["shed", "degrade"]), default=_load.overload,
        help="Past --max-in-flight: shed (429/503 + Retry-After) or degrade (serve the BM25 page).")
@option("--shed-status", type=click.Choice(["429", "503"]), default=str(_load.shed_status),
        help="Status for shed requests.")
@option("--retry-after-s", type=int, default=_load.retry_after_s, help="Retry-After seconds sent with shed requests.")
@option("--batch-max-pairs", type=int, default=_batch.max_pairs, help="Most (query, doc) pairs per model call.")
@option("--cross-request-batching/--no-cross-request-batching", default=_batch.cross_request,
        help="Merge concurrent searches into shared model calls.")
@option("--encode-threads", type=int, default=_batch.encode_threads,
        help="Threads that tokenize searches before the model call (0: one per CPU, at most 8).")
@option("--connect-timeout-s", type=float, default=_up.connect_timeout_s,
        help="Timeout for connecting to OpenSearch.")
@option("--read-timeout-s", type=float, default=_up.read_timeout_s, help="Timeout between reads from OpenSearch.")
@option("--max-body-bytes", type=int, default=_limits.max_body_bytes,
        help="Largest request body accepted (413 above).")
@option("--max-json-depth", type=int, default=_limits.max_json_depth,
        help="Deepest JSON nesting accepted in search bodies.")
@option("--body-timeout-s", type=float, default=_limits.body_timeout_s,
        help="Time a client has to send its body (408 after).")
@option("--drain-delay-s", type=float, default=_server.drain_delay_s,
        help="On SIGTERM, seconds reported unready before closing the port.")
@option("--drain-timeout-s", type=float, default=_server.drain_timeout_s,
        help="On SIGTERM, seconds in-flight requests get to finish.")
@option("--header-timeout-s", type=float, default=_server.header_timeout_s,
        help="Time a client has from a request's first byte to the end of its headers (the connection is cut after).")
@option("--max-connections", type=int, default=_server.max_connections,
        help="Client connections open at once; more are closed as they arrive.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
        help="Log verbosity (stderr).")
@option("--allow-harm", is_flag=True,
        help="Serve the model even on indices where its recorded A/B (`ab --record-verdict`) shows it below BM25.")
@option("--no-window-sizing", is_flag=True,
        help="Keep default windows even when the start-up timing says they miss the deadline on this machine.")
@online_ab_options
@click.pass_context
def serve(ctx: click.Context, opensearch_url: str | None, opensearch_ca_file: Path | None, opensearch_insecure: bool,
          upstream_engine: str, model: Path | None, device: str, model_batch_size: int, workers: int | None,
          batch_tokens: int, config_file: Path | None, indices: tuple[str, ...], fields: str, window: int, deadline_ms: int,
          fusion_file: Path | None, dense_model: Path | None, dense_threads: int,
          max_window: int, host: str, port: int, max_in_flight: int,
          overload: str, shed_status: str, retry_after_s: int, batch_max_pairs: int, cross_request_batching: bool,
          encode_threads: int,
          connect_timeout_s: float, read_timeout_s: float, max_body_bytes: int, max_json_depth: int,
          body_timeout_s: float, drain_delay_s: float, drain_timeout_s: float, header_timeout_s: float,
          max_connections: int, log_level: str, allow_harm: bool, no_window_sizing: bool,
          ab_split: float | None, ab_mode: str, ab_key_header: str | None, ab_experiment: str, ab_log: Path | None,
          ab_events_log: Path | None, ab_log_query_text: bool, ab_secret: str) -> None:
    """Serve OpenSearch's API on --port; relevance searches on configured indices come back reranked.

    With --ab-split the reranked searches become an online A/B test: each user key gets an arm,
    every search appends a line to --ab-log, and clients POST clicks to /_rerank/events.
    Where an A/B test shows reranking losing to BM25 on an index, switch it off there
    (`rerank: false` for that index in --config): its searches then pass through untouched.
    A verdict recorded by `es-rerank ab --record-verdict` does that at start-up (the guard rail):
    a model significantly below BM25 is not served on that index unless --allow-harm.
    Windows left at the default are lowered to what a start-up timing says fits the deadline.
    With --workers N > 1, N processes share the port and one model-server process runs the model
    for all of them, batching their pairs by --batch-tokens.
    """
    from es_rerank.cli.ab_serve_options import online_ab_config
    from es_rerank.proxy.settings import parse_fields, read_config_file, rules_from_mapping
    from es_rerank.errors import ConfigError
    from es_rerank.scoring.fusion import load_weights
    from es_rerank.engine.client import resolve_url
    from es_rerank.proxy.server import LISTENING, run_until_signal

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    defaults = IndexRule("*", fields=parse_fields(fields), window=window, deadline_ms=deadline_ms,
                         fusion=load_weights(fusion_file) if fusion_file is not None else None,
                         dense_model=str(dense_model) if dense_model is not None else None)
    names = [n for value in indices for n in value.split()]
    rules = tuple(replace(defaults, pattern=n) for n in names)
    if config_file is not None:
        rules += rules_from_mapping(read_config_file(config_file), defaults, base_dir=config_file.parent)
    online_ab = online_ab_config(ab_split, ab_mode, ab_key_header, ab_experiment, ab_log, ab_events_log,
                                 ab_log_query_text, ab_secret)
    if online_ab is not None and (model is None or not rules):
        raise ConfigError("--ab-split needs searches to rerank: give --model and --index (or --config)",
                          hint="the A/B test compares BM25 with the model on the indices the proxy reranks")
    if online_ab is not None and not ab_secret:
        click.echo("warning: no --ab-secret: the hashed client ids in the A/B log can be reversed by hashing "
                   "candidate addresses; set ES_RERANK_SERVE_AB_SECRET", err=True)
    settings = ProxySettings(
        upstream=UpstreamSettings(resolve_url(opensearch_url), connect_timeout_s, read_timeout_s,
                                  ca_file=opensearch_ca_file, verify=not opensearch_insecure, engine=upstream_engine),
        rules=rules, max_window=max_window,
        limits=LimitSettings(max_body_bytes, max_json_depth, body_timeout_s),
        load=LoadSettings(max_in_flight, overload, int(shed_status), retry_after_s),
        batch=BatchSettings(batch_max_pairs, cross_request_batching, encode_threads),
        server=ServerSettings(host, port, drain_delay_s, drain_timeout_s, header_timeout_s, max_connections),
        online_ab=online_ab)
    from es_rerank.proxy.guard_rail import guard_rules
    from es_rerank.proxy.window_sizing import sized_rules

    from es_rerank.proxy.workers import default_workers

    workers = workers or (1 if online_ab is not None else default_workers())
    if online_ab is not None and workers > 1:
        raise ConfigError(f"--ab-split needs one process, got --workers {workers}",
                          hint="pass --workers 1: the A/B log is written by one process")
    rules, decisions = guard_rules(rules, model, allow_harm)
    for line in decisions:
        click.echo(line, err=True)
    supervisor = None
    if workers > 1:
        supervisor = _start_model_server(model, device, model_batch_size, batch_tokens, workers, rules,
                                         dense_threads, log_level)
        scorer = supervisor.remote_scorer() if model is not None else None
    else:
        scorer = load_scorer(model, device, model_batch_size, batch_tokens) if model is not None else None
    dense_names = sorted({r.dense_model for r in rules if r.rerank and r.dense_model is not None})
    dense_scorers = {name: load_dense_scorer(Path(name), device, dense_threads) for name in dense_names}
    if scorer is None and not dense_scorers:
        click.echo("no --model given: every request passes through unreranked", err=True)
    elif not rules:
        click.echo("no --index or --config rules: every request passes through unreranked", err=True)
    window_explicit = ctx.get_parameter_source("window") is not click.core.ParameterSource.DEFAULT
    rules, sizing = sized_rules(rules, scorer, dense_scorers, default_window=None if window_explicit else window,
                                resize=not no_window_sizing)
    for line in sizing:
        click.echo(line, err=True)
    settings = replace(settings, rules=rules)
    for rule in rules:
        what = "off: passes through" if not rule.rerank else (
            f"fusion {rule.fusion.as_dict()}" if rule.fusion is not None else "cross-encoder order")
        click.echo(f"index {rule.pattern}: {what}", err=True)
    if supervisor is None:
        run_until_signal(settings, scorer, on_listening=lambda url: click.echo(LISTENING + url, err=True),
                         dense_scorers=dense_scorers)
        return
    try:
        url = supervisor.start_workers(settings)
    except BaseException:
        supervisor.stop()
        raise
    click.echo(f"{workers} workers share the port; one model server batches their pairs", err=True)
    click.echo(LISTENING + url, err=True)
    supervisor.run_until_signal()


def _start_model_server(model: Path | None, device: str, batch_size: int, batch_tokens: int, workers: int,
                        rules, dense_threads: int, log_level: str):
    """The supervisor of `--workers N`, its model server started (none without --model)."""
    from es_rerank.proxy.workers import MODEL_SERVER_MAX_ROWS, DenseSpec, ModelServerSpec, Supervisor

    spec = ModelServerSpec(model, device, batch_size=max(batch_size, MODEL_SERVER_MAX_ROWS), batch_tokens=batch_tokens) \
        if model is not None else None
    dense = DenseSpec(tuple(sorted({r.dense_model for r in rules if r.rerank and r.dense_model is not None})),
                      device, dense_threads)
    supervisor = Supervisor(spec, workers, dense, log_level)
    if spec is not None:
        try:
            detail = supervisor.start_model_server()
        except BaseException:
            supervisor.stop()
            raise
        click.echo(f"model {model}: {detail}, in a model-server process", err=True)
    return supervisor


def load_scorer(model_dir: Path, device: str = "auto", batch_size: int = 64, batch_tokens: int | None = None):
    """Load the exported model the proxy scores with.
    """
    from es_rerank.scoring.serving_models import load_cross_encoder_for_serving

    scorer = load_cross_encoder_for_serving(model_dir, device, batch_size, batch_tokens)
    click.echo(f"model {model_dir}: {scorer.variant.file} on {scorer.device}", err=True)
    return scorer


def load_dense_scorer(export_dir: Path, device: str = "auto", threads: int = 0):
    """Load a bi-encoder export (from `es-rerank export-dense`) for fusion's dense scores.
    """
    from es_rerank.scoring.serving_models import load_dense_for_serving

    scorer = load_dense_for_serving(export_dir, device, threads)
    click.echo(f"dense model {export_dir}: {scorer.meta.dim}-dim embeddings on {scorer.device}", err=True)
    return scorer
