"""`es-rerank export CHECKPOINT OUTDIR`: a one-logit checkpoint to fused, parity-checked ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option


@click.command(name="export")
@click.argument("checkpoint")
@click.argument("outdir", type=click.Path(path_type=Path))
@option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
        help="Where to run the parity check; auto picks cuda when PyTorch and onnxruntime-gpu both see a GPU.")
@option("--fp16/--no-fp16", default=None, help="Also write model_fp16.onnx; default: on for cuda, off for cpu.")
@option("--int8", is_flag=True, help="Also write model_int8.onnx, dynamically quantized for CPU serving.")
@option("--max-length", type=click.IntRange(8, 512), default=None,
        help="Most tokens in a (query, document) pair; default: the model's limit, at most 512.")
@option("--query-max-length", type=click.IntRange(1, 510), default=64, help="Most tokens kept of the query.")
@option("--parity-data", type=click.Path(exists=True, path_type=Path), default=None,
        help="Candidates file (bench scorer --write-candidates) or BEIR directory; default: built-in pairs.")
@option("--parity-index", default=None, help="OpenSearch index to take BM25 candidates of --parity-data queries from.")
@option("--parity-queries", type=click.IntRange(1), default=20, help="Queries in the parity check.")
@option("--parity-candidates", type=click.IntRange(1), default=20, help="Documents per query in the parity check.")
@option("--batch-size", type=click.IntRange(1), default=32, help="Pairs per batch in the parity check.")
@option("--force", is_flag=True, help="Write even if parity misses its threshold or attention was not fused.")
@option("--overwrite", is_flag=True, help="Replace a non-empty OUTDIR (only once the new export has passed parity).")
@option("--full-last-layer", is_flag=True,
        help="Keep the last layer's feed-forward for every token (by default it runs for [CLS] alone, which the "
             "head reads: the same scores, less work); for comparing speed.")
@opensearch_url
def export_command(checkpoint: str, outdir: Path, device: str, fp16: bool | None, int8: bool, max_length: int | None,
                   query_max_length: int, parity_data: Path | None, parity_index: str | None, parity_queries: int,
                   parity_candidates: int, batch_size: int, force: bool, overwrite: bool, full_last_layer: bool,
                   opensearch_url: str | None) -> None:
    """Export CHECKPOINT (a local Hugging Face directory or hub id of a one-logit
    sequence-classification model) to OUTDIR: fused ONNX model(s), tokenizer and meta.json.

    The parity check scores real pairs with PyTorch fp32 and with each exported model;
    if one misses the threshold for its dtype, nothing is written unless --force.
    """
    from transformers.utils import logging as hf_logging

    from es_rerank.export.parity_pairs import ParitySource
    from es_rerank.export.pipeline import ExportSettings, export_checkpoint

    hf_logging.disable_progress_bar()
    settings = ExportSettings(
        checkpoint=checkpoint, out_dir=outdir, device=device, fp16=fp16, int8=int8, max_length=max_length,
        query_max_length=query_max_length, batch_size=batch_size, force=force, overwrite=overwrite,
        first_token_last_layer=not full_last_layer,
        parity=ParitySource(data=parity_data, index=parity_index, opensearch_url=opensearch_url,
                            queries=parity_queries, candidates=parity_candidates))
    meta = export_checkpoint(settings, log=lambda message: click.echo(message, err=True))
    click.echo(summary_table(outdir, meta))


def summary_table(outdir: Path, meta) -> str:
    """One line per written model: file, size, fused attention, parity figures and verdict.
    """
    rows = [("variant", "file", "MB", "attention", "max|Δlogit|", "limit", "top10 same", "top10 overlap", "parity")]
    for name, variant in meta.variants.items():
        path = outdir / variant.file
        size = f"{path.stat().st_size / 1e6:.0f}" if path.is_file() else "?"
        fused = variant.fused_ops.get("Attention", variant.fused_ops.get("QAttention", 0))
        p = variant.parity
        rows.append((name, variant.file, size, str(fused), f"{p['max_abs_dlogit']:.2g}",
                     f"{p['max_abs_dlogit_limit']:.2g}", f"{p['top10_agreement']:.2f}", f"{p['top10_overlap']:.2f}",
                     "ok" if p["passed"] else "FAILED (forced)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
