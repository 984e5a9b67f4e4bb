"""`es-rerank bench proxy ...`: pass-through overhead, recording a replay file, and the rerank stage."""

from __future__ import annotations

import json
from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option

DEFAULT_REPLAY = Path("runs/proxy-replay/scifact-top100.jsonl.gz")


@click.group(name="proxy")
def bench_proxy() -> None:
    """Proxy benchmarks: `passthrough` here, `record` here, `rerank` on the GPU machine."""


def _emit(figures: dict, json_out: Path | None) -> None:
    click.echo(json.dumps(figures, indent=2))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


@bench_proxy.command(name="passthrough")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("--index", "index", required=True, help="Index holding DATASET_DIR's corpus (the searches go there).")
@option("--clients", type=int, default=16, help="Concurrent closed-loop clients for the throughput figure.")
@option("--duration-s", type=float, default=5.0, help="Counted seconds per round and target.")
@option("--rounds", type=int, default=4, help="Interleaved rounds (proxy and direct alternate).")
@option("--json-out", type=click.Path(path_type=Path), default=None, help="Also write the figures to this JSON file.")
@opensearch_url
def passthrough_command(dataset_dir: Path, index: str, clients: int, duration_s: float, rounds: int,
                        json_out: Path | None, opensearch_url: str | None) -> None:
    """Req/s and p50/p99 through the proxy with reranking off, against OpenSearch directly, in one run."""
    from es_rerank.data.beir import read_queries
    from es_rerank.engine.client import resolve_url
    from lab.proxy_bench.benchmark import cli_proxy, passthrough_benchmark
    from lab.proxy_bench.loadgen import LoadRequest
    from lab.proxy_bench.replay import client_search

    url = resolve_url(opensearch_url)
    requests = []
    for text in list(read_queries(dataset_dir).values())[:300]:
        path, body = client_search(index, text, 10, ("title", "text"))
        requests.append(LoadRequest("POST", path, body))
    # No --model: the index is configured, so every search is planned, then relayed unreranked.
    figures = passthrough_benchmark(url, requests, cli_proxy(["--index", index]), clients, duration_s, rounds)
    figures["command"] = f"es-rerank bench proxy passthrough {dataset_dir} --index {index} --clients {clients}"
    _emit(figures, json_out)


@bench_proxy.command(name="record")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("--index", "index", required=True, help="Index holding DATASET_DIR's corpus.")
@option("--out", type=click.Path(path_type=Path), default=DEFAULT_REPLAY,
        help="Replay file to write (.gz compresses; runs/ is git-ignored).")
@option("--window", type=int, default=100, help="Candidates per search (the proxy's window).")
@option("--split", default="test", help="Queries of this qrels split are recorded.")
@option("--queries", "max_queries", type=click.IntRange(1), default=None,
        help="Record only the first N queries (a smaller file to carry); default: all of the split.")
@opensearch_url
def record_command(dataset_dir: Path, index: str, out: Path, window: int, split: str, max_queries: int | None,
                   opensearch_url: str | None) -> None:
    """Record real OpenSearch window responses for DATASET_DIR's queries, for `bench proxy rerank --replay`."""
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.engine.client import resolve_url
    from lab.proxy_bench.replay import record_replay

    queries = read_queries(dataset_dir)
    texts = [queries[qid] for qid in read_qrels(dataset_dir, split) if qid in queries][:max_queries]
    count = record_replay(resolve_url(opensearch_url), index, texts, out, window=window)
    click.echo(f"recorded {count} searches (top-{window}) into {out}")


@bench_proxy.command(name="rerank")
@option("--replay", "replay", type=click.Path(path_type=Path), default=DEFAULT_REPLAY,
        help="Replay file from `bench proxy record`.")
@option("--model", "model", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
        help="Exported model directory the proxy scores with.")
@option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
        help="Where the proxy runs the model.")
@option("--clients", type=int, default=64, help="Concurrent closed-loop clients for the saturation figure.")
@option("--duration-s", type=float, default=10.0, help="Counted seconds of each saturation run.")
@option("--rounds", type=int, default=4, help="Interleaved one-client rounds (proxy and direct alternate).")
@option("--latency-duration-s", type=float, default=10.0, help="Counted seconds of each one-client round.")
@option("--batch-max-pairs", type=int, default=512, help="Most pairs per model call when batching across requests.")
@option("--model-batch-size", type=int, default=64, help="Pairs per ONNX Runtime run inside one model call.")
@option("--workers", type=click.IntRange(1, 256), default=1,
        help="The proxy's HTTP worker processes (`serve --workers`); above 1 a model server batches for all.")
@option("--batch-tokens", type=click.IntRange(64), default=65536, help="Most padded tokens per model run.")
@option("--baseline-model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Also run the server a user would write (aiohttp + sentence-transformers CrossEncoder.predict, "
             "fp16 on CUDA) with this Hugging Face checkpoint, the one --model was exported from.")
@option("--baseline-batch-size", type=int, default=32, help="CrossEncoder.predict's batch_size (its default: 32).")
@option("--rate", "rates", type=click.FloatRange(min=0, min_open=True), multiple=True,
        help="Also offer this many searches a second, open loop, for --duration-s (repeatable): p50/p99 at that rate.")
@option("--json-out", type=click.Path(path_type=Path), default=None, help="Also write the figures to this JSON file.")
def rerank_command(replay: Path, model: Path, device: str, clients: int, duration_s: float, rounds: int,
                   latency_duration_s: float, batch_max_pairs: int, model_batch_size: int, workers: int,
                   batch_tokens: int, baseline_model: Path | None, baseline_batch_size: int, rates: tuple[float, ...],
                   json_out: Path | None) -> None:
    """Rerank stage through the proxy against a replay upstream.

    Reports added p50/p99 at one client, and req/s at saturation with and without cross-request batching.
    """
    from lab.proxy_bench.benchmark import cli_proxy, rerank_benchmark
    from lab.proxy_bench.replay import load_replay

    header = load_replay(replay).header
    common = ["--model", str(model), "--device", device, "--index", header["index"],
              "--fields", ",".join(header["fields"]),
              "--window", str(header["window"]), "--deadline-ms", "60000", "--max-in-flight", str(max(clients * 2, 64)),
              "--batch-max-pairs", str(batch_max_pairs), "--model-batch-size", str(model_batch_size),
              "--workers", str(workers), "--batch-tokens", str(batch_tokens)]

    def launcher_for(batching: bool):
        return cli_proxy(common + ["--cross-request-batching" if batching else "--no-cross-request-batching"])

    baseline = None
    if baseline_model is not None:
        from es_rerank.scoring.export_meta import read_meta
        from lab.proxy_bench.st_baseline import baseline_launcher

        baseline = baseline_launcher(baseline_model, device, read_meta(model).max_length, header["window"],
                                     header["fields"], baseline_batch_size)
    figures = rerank_benchmark(replay, launcher_for, clients=clients, duration_s=duration_s, rounds=rounds,
                               latency_duration_s=latency_duration_s, baseline=baseline, rates=rates)
    figures["command"] = (f"es-rerank bench proxy rerank --replay {replay} --model {model} --device {device} "
                          f"--clients {clients} --duration-s {duration_s} --rounds {rounds} "
                          f"--latency-duration-s {latency_duration_s} --batch-max-pairs {batch_max_pairs} "
                          f"--model-batch-size {model_batch_size} --workers {workers} --batch-tokens {batch_tokens}"
                          + (f" --baseline-model {baseline_model} --baseline-batch-size {baseline_batch_size}"
                             if baseline_model else "") + "".join(f" --rate {rate:g}" for rate in rates))
    _emit(figures, json_out)
