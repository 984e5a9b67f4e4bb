"""`es-rerank bench scorer`: ONNX Runtime against PyTorch on synthetic and real candidates."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option


def _parse_shape(value: str) -> tuple[int, int]:
    try:
        batch, length = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected BATCHxLENGTH such as 100x256, got {value!r}") from None
    if batch < 1 or not 2 <= length <= 512:
        raise click.BadParameter(f"expected batch >= 1 and length 2..512, got {value!r}")
    return batch, length


@click.command(name="scorer")
@option("--export-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="An es-rerank export to run; PyTorch loads the checkpoint its meta.json names (or --checkpoint).")
@option("--checkpoint", default=None, help="One-logit checkpoint (dir or hub id); exported first unless --export-dir.")
@option("--random-init", type=click.Choice(["minilm-l6", "bert-base"]), default=None,
        help="Benchmark a seeded random-weight classifier of this size (no weights needed).")
@option("--tokenizer", "tokenizer_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Tokenizer dir for --random-init (BERT uncased); default: the packaged MiniLM's.")
@option("--label", default=None,
        help="Model name in figure names; default: minilm_l6 / bert_base / the checkpoint dir name.")
@option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", help="Where to run every system.")
@option("--systems", default=None,
        help="Comma-separated of ort-fp32, ort-fp16, ort-int8, torch-fp32, torch-fp16; default: per device.")
@option("--synthetic", multiple=True, default=(), metavar="BxL",
        help="Full-length synthetic batch shape, repeatable; default: 100x256 on cuda, 10x256 on cpu.")
@option("--no-synthetic", is_flag=True, help="Skip the synthetic batches.")
@option("--candidates", "candidates_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Real candidates file (es-rerank-candidates JSON lines) to score, e.g. from --write-candidates.")
@option("--dataset", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="BEIR dir whose judged queries fetch BM25 candidates from --index.")
@option("--index", default=None, help="OpenSearch index holding --dataset's corpus.")
@option("--split", default="test", help="Qrels split whose queries are used with --dataset.")
@option("--queries", type=click.IntRange(1), default=50, help="Real queries to use (first N).")
@option("--top-k", type=click.IntRange(1), default=100, help="Candidates per real query.")
@option("--write-candidates", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Write the fetched candidates to this JSON-lines file (.gz to compress); alone, just write it.")
@option("--batch-size", type=click.IntRange(1), default=None,
        help="Most pairs per batch for real candidates; default: 100 on cuda, 16 on cpu.")
@option("--merge-windows", type=click.IntRange(0), default=0,
        help="Also time the model server's batching (serve --workers): this many windows merged per call.")
@option("--batch-tokens", type=click.IntRange(64), default=65536,
        help="With --merge-windows: most padded tokens per batch.")
@option("--max-length", type=click.IntRange(8, 512), default=256, help="Pair length limit when exporting here.")
@option("--rounds", type=click.IntRange(1), default=3, help="Timed passes over each workload.")
@option("--warmup", type=click.IntRange(0), default=1,
        help="Untimed passes first (the first pass gives the parity scores).")
@option("--baseline-export", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="A second export of the same checkpoint (e.g. `export --full-last-layer`): its ONNX systems are timed "
             "on the same batches, in the same run, as base-SYSTEM.")
@option("--threads", type=click.IntRange(1), default=None,
        help="CPU threads for both runtimes; default: their own choice.")
@option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Keep the checkpoint/export made here; default: a temporary directory.")
@option("--hardware", default=None, help="Hardware description in figures; default: detected.")
@option("--figures", "figures_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Append the figures to this file as JSON lines.")
@opensearch_url
def bench_scorer(export_dir, checkpoint, random_init, tokenizer_dir, label, device, systems, synthetic, no_synthetic,
                 candidates_file, dataset, index, split, queries, top_k, write_candidates, batch_size, merge_windows,
                 batch_tokens, max_length, baseline_export,
                 rounds, warmup, threads, work_dir, hardware, figures_file, opensearch_url) -> None:
    """Pairs/s and p50/p99 per call: ONNX Runtime against PyTorch fp32/fp16 (same checkpoint,
    same token ids, same run) on full-length synthetic batches and on real candidates."""
    from es_rerank.data.candidates import write_candidates as write_file
    from lab.bench.scorer_run import BenchSettings, figures_table, run_scorer_bench

    candidates, real_label, fetched = _real_candidates(candidates_file, dataset, index, split, queries, top_k,
                                                       opensearch_url)
    if write_candidates:
        if fetched is None:
            raise click.UsageError("--write-candidates needs --dataset and --index to fetch candidates from")
        write_file(fetched, write_candidates)
        click.echo(f"wrote {len(candidates)} queries x up to {top_k} candidates to {write_candidates}", err=True)
        if not (export_dir or checkpoint or random_init):
            return
    resolved = _device(device)
    shapes = () if no_synthetic else tuple(_parse_shape(s) for s in synthetic) or (
        ((100, 256),) if resolved == "cuda" else ((10, 256),))
    settings = BenchSettings(
        export_dir=export_dir, checkpoint=checkpoint, random_init=random_init, tokenizer_dir=tokenizer_dir,
        label=label, device=resolved, systems=tuple(s.strip() for s in systems.split(",")) if systems else None,
        synthetic=shapes, candidates=tuple(candidates), real_label=real_label, batch_size=batch_size,
        merge_windows=merge_windows, batch_tokens=batch_tokens, baseline_export=baseline_export,
        max_length=max_length, rounds=rounds, warmup=warmup, threads=threads, work_dir=work_dir, hardware=hardware,
        command=command_line(click.get_current_context()))
    figures = run_scorer_bench(settings, log=lambda message: click.echo(message, err=True))
    click.echo(figures_table(figures))
    if figures_file:
        with open(figures_file, "a", encoding="utf-8") as handle:
            handle.writelines(f.to_json() + "\n" for f in figures)
        click.echo(f"appended {len(figures)} figures to {figures_file}", err=True)


def command_line(ctx: click.Context) -> str:
    """The command as given: its path plus every option not left at its default (env vars included).
    """
    from click.core import ParameterSource

    words = ctx.command_path.split()
    words[0] = "es-rerank"
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or ctx.get_parameter_source(param.name) in (
                ParameterSource.DEFAULT, None):
            continue
        value = ctx.params[param.name]
        flag = param.opts[0] if (not param.is_flag or value) else (param.secondary_opts or [param.opts[0]])[0]
        if param.is_flag:
            words.append(flag)
        else:
            for item in value if param.multiple else (value,):
                words += [flag, shlex.quote(str(item))]
    return " ".join(words)


def _device(device: str) -> str:
    from es_rerank.export.pipeline import resolve_export_device

    return resolve_export_device(device)


def _real_candidates(candidates_file, dataset, index, split, queries, top_k, opensearch_url):
    """Candidates from a file, or BM25 top-k from the index; the workload's label; the fetched set, if any."""
    from es_rerank.data.candidates import collect_candidates, read_candidates

    if candidates_file and dataset:
        raise click.UsageError("give either --candidates or --dataset/--index, not both")
    if candidates_file:
        items = [item.head(top_k) for item in read_candidates(candidates_file).windows()[:queries]]
        # "scifact_top100.jsonl.gz" cut to --top-k 20 is labelled scifact_top20
        name = re.sub(r"_top\d+$", "", candidates_file.name.split(".")[0])
        return items, f"{name}_top{max(len(item.docs) for item in items)}", None
    if not dataset:
        return [], "real", None
    if not index:
        raise click.UsageError("--dataset needs --index: the OpenSearch index holding its corpus")
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    all_queries = read_queries(dataset)
    judged = [q for q in read_qrels(dataset, split) if q in all_queries][:queries]
    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    fetched = collect_candidates(client, index, {q: all_queries[q] for q in judged}, top_k,
                                 meta={"dataset": dataset.name, "split": split})
    return fetched.windows(), f"{dataset.name}_top{top_k}", fetched
