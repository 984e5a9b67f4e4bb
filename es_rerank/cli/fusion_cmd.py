"""Score fusion commands: export the dense bi-encoder, make and score candidate files, fit the
fusion weights on a dev split, and measure every system on a test split (`bench fusion`).

The usual sequence (BM25 needs OpenSearch; scoring runs wherever the models are)::

    es-rerank export-dense sentence-transformers/all-MiniLM-L6-v2 exports/minilm-dense
    es-rerank fusion-candidates DATA/scifact --index scifact --split train --dev-fraction 0.25 --out dev.jsonl.gz
    es-rerank score-candidates dev.jsonl.gz --dense exports/minilm-dense --out dev.scored.jsonl.gz
    es-rerank fit-fusion dev.scored.jsonl.gz --qrels DATA/scifact --out recipes/fusion/bm25_dense.yaml
    es-rerank bench fusion test.scored.jsonl.gz --qrels DATA/scifact --weights recipes/fusion/bm25_dense.yaml
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from es_rerank.cli.options import opensearch_url, option, progress_bar


def shown(path: Path | str) -> str:
    """How a path appears in recorded commands: relative paths as typed, absolute ones by name only.

    Example:
        >>> shown("recipes/fusion/x.yaml"), shown("/data/beir/scifact")
        ('recipes/fusion/x.yaml', 'scifact')
    """
    path = Path(path)
    return path.name if path.is_absolute() else str(path)


def split_names(value: str, allowed: tuple[str, ...], option_name: str) -> tuple[str, ...]:
    """'bm25, dense' -> ('bm25', 'dense'), refusing names outside `allowed`.

    Example:
        >>> split_names("bm25,dense", ("bm25", "ce", "dense"), "--inputs")
        ('bm25', 'dense')
    """
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise click.BadParameter(f"expected names among {', '.join(allowed)} separated by commas, got {value!r}",
                                 param_hint=option_name)
    return names


@click.command(name="export-dense")
@click.argument("checkpoint")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@option("--optimize/--no-optimize", default=True,
        help="Apply onnxruntime transformer fusions (attention, layer norm, GELU); parity is checked either way.")
@option("--max-length", type=click.IntRange(min=2, max=512), default=None,
        help="Token limit per text; default: the model's sentence-transformers setting, else its position limit.")
@option("--atol", type=click.FloatRange(min=0, min_open=True), default=1e-4,
        help="Largest accepted |ONNX - torch| embedding difference on the parity texts.")
@option("--int8", is_flag=True, default=False,
        help="Also quantize the checked graph to dynamic int8 (about 2x faster on CPU) and serve that one.")
def export_dense_command(checkpoint: str, outdir: Path, optimize: bool, max_length: int | None, atol: float,
                         int8: bool) -> None:
    """Export the bi-encoder CHECKPOINT (a sentence-transformers / HF directory or hub id) to OUTDIR.

    OUTDIR gets model.onnx (pooled, L2-normalised embeddings), tokenizer.json and meta.json
    (kind bi-encoder), which `score-candidates --dense` and the proxy load without torch.
    """
    import torch

    from es_rerank.export.bi_encoder import export_bi_encoder

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    report = export_bi_encoder(checkpoint, outdir, optimize=optimize, max_length=max_length, atol=atol, int8=int8)
    click.echo(f"exported {checkpoint} to {outdir} (optimized: {report.optimized}, {report.dtype}); parity on "
               f"{report.parity_texts} texts: max |d embedding| {report.max_abs_diff:.2e}, "
               f"max |d cosine| {report.max_abs_dcos:.2e}, lowest cosine to torch {report.min_cosine:.4f}")


@click.command(name="fusion-candidates")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("--index", "index", required=True, help="OpenSearch index holding DATASET_DIR's corpus.")
@option("--split", required=True, help="Qrels split whose queries to take (e.g. train for fitting, test for reporting).")
@option("--dev-fraction", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
        help="Keep only this hashed, deterministic fraction of the split's queries (the fusion dev set).")
@option("--dev-salt", default="es-rerank-fusion-dev", help="Salt of the dev hash; another salt draws another subset.")
@option("--query-ids", "query_ids", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Keep only these query ids: one per line, a JSON list, or a training log's dev_qids.")
@option("--depth", default=100, type=click.IntRange(min=1), help="BM25 hits per query (the rerank window).")
@option("--fields", default="title,text", metavar="A,B", help="Comma-separated document fields BM25 searches and scorers read.")
@option("--knn-model", "knn_model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Add the engine's kNN top-DEPTH to BM25's (the union pool): the bi-encoder export the index's "
             "vectors came from (`es-rerank index --dense-model`), which embeds the queries.")
@option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
        help="Candidates file to write (JSON lines; gzipped when it ends in .gz).")
@opensearch_url
def fusion_candidates_command(dataset_dir: Path, index: str, split: str, dev_fraction: float | None, dev_salt: str,
                              query_ids: Path | None, depth: int, fields: str, knn_model: Path | None, out: Path,
                              opensearch_url: str | None) -> None:
    """Write the BM25 top-DEPTH candidates (ids, scores, texts) of DATASET_DIR's judged queries.

    With --knn-model, the pool is BM25's top DEPTH together with the kNN top DEPTH over the vectors
    stored in the index, each document with its BM25 score (0 when no query term matches).
    To fit a cross-encoder weight, take the queries its training held out (--query-ids with the
    training log) so the weight is not fitted on queries the model has learnt.
    """
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.errors import DatasetError
    from es_rerank.data.candidates import collect_candidates, write_candidates
    from es_rerank.evaluation.fusion_fit import dev_query_ids
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    field_names = tuple(f.strip() for f in fields.split(",") if f.strip())
    if not field_names:
        raise click.BadParameter(f"expected field names separated by commas, got {fields!r}", param_hint="--fields")
    queries, qrels = read_queries(dataset_dir), read_qrels(dataset_dir, split)
    judged = [qid for qid in qrels if qid in queries]
    if not judged:
        raise DatasetError(f"no query of split {split!r} in {dataset_dir} has text in queries.jsonl",
                           hint="check that queries and qrels come from the same collection")
    subset = None
    if query_ids is not None:
        wanted = read_query_ids(query_ids)
        judged = [qid for qid in judged if qid in wanted]
        if not judged:
            raise DatasetError(f"none of the {len(wanted)} ids in {query_ids} is a judged query of split {split!r}",
                               hint="pass ids of this collection and split")
        subset = {"kind": "ids", "file": query_ids.name, "count": len(judged)}
    if dev_fraction is not None:
        judged = dev_query_ids(judged, dev_fraction, dev_salt)
        if not judged:
            raise DatasetError(f"--dev-fraction {dev_fraction} keeps none of the split's queries",
                               hint="raise --dev-fraction, or try another --dev-salt")
        subset = {"kind": "dev", "fraction": dev_fraction, "salt": dev_salt, "rule": "sha256(salt NUL id) < fraction",
                  **({"within": subset} if subset else {})}
    url = resolve_url(opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    command = (f"es-rerank fusion-candidates {shown(dataset_dir)} --index {index} --split {split} --depth {depth}"
               + (f" --query-ids {shown(query_ids)}" if query_ids else "")
               + (f" --dev-fraction {dev_fraction} --dev-salt {dev_salt}" if dev_fraction else "")
               + (f" --fields {','.join(field_names)}" if field_names != ("title", "text") else "")
               + (f" --knn-model {shown(knn_model)}" if knn_model else "")
               + f" --out {shown(out)}")
    meta = {"dataset": dataset_dir.name, "split": split, "subset": subset, "history": [command]}
    texts = {qid: queries[qid] for qid in judged}
    if knn_model is None:
        cands = collect_candidates(client, index, texts, depth, field_names, meta,
                                   progress=lambda items: progress_bar(items, len(items), desc="BM25", unit="query"))
        pool = f"BM25 top-{depth}"
    else:
        cands = _union_candidates(client, index, texts, depth, field_names, meta, knn_model)
        pool = f"BM25 top-{depth} ∪ kNN top-{depth}"
    write_candidates(cands, out)
    click.echo(f"wrote {pool} of {len(cands.queries)} queries ({len(cands.docs)} distinct documents) to {out}")


def _union_candidates(client, index: str, texts: dict[str, str], depth: int, fields: tuple[str, ...], meta: dict,
                      knn_model: Path):
    from es_rerank.data.pools import collect_union_candidates
    from es_rerank.engine.engine_profile import detect
    from es_rerank.engine.knn_query import check_vector_field
    from es_rerank.scoring.bi_encoder import DenseScorer

    scorer = DenseScorer.load(knn_model)
    check_vector_field(client, index, scorer.meta.dim)
    ids = list(texts)
    vectors = dict(zip(ids, scorer.embed([texts[q] for q in ids])))
    meta["knn_model"] = knn_model.name
    return collect_union_candidates(client, index, detect(client).engine, texts, vectors, depth, fields, meta,
                                    progress=lambda items: progress_bar(items, len(items), desc="BM25 + kNN",
                                                                        unit="query"))


def read_query_ids(path: Path) -> set[str]:
    """Query ids from a file: one per line, a JSON list, or a JSON object with `dev_qids` (a training log).
    """
    from es_rerank.errors import DatasetError

    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc.msg})", hint="give one id per line or a JSON list") from exc
        ids = data.get("dev_qids") if isinstance(data, dict) else data
        if not isinstance(ids, list):
            raise DatasetError(f"{path} holds no list of ids (a JSON list, or an object with dev_qids)",
                               hint="give one id per line or a JSON list")
        return {str(i) for i in ids}
    return {line.strip() for line in text.splitlines() if line.strip()}


@click.command(name="score-candidates")
@click.argument("candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--dense", "dense_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Bi-encoder export (es-rerank export-dense) whose cosines become the dense scores.")
@option("--ce", "ce_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Cross-encoder export (es-rerank export) whose scores become the ce scores.")
@option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
        help="Scored candidates file to write (may equal CANDIDATES).")
@option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Where the models run.")
@option("--batch-size", default=64, type=click.IntRange(min=1), help="Texts (dense) or pairs (ce) per model run.")
@option("--threads", default=0, type=click.IntRange(min=0), help="CPU threads per model run; 0 lets onnxruntime choose.")
@option("--chunk-queries", default=32, type=click.IntRange(min=1), help="Queries scored per call (progress granularity).")
@option("--dense-label", default=None, help="Name recorded for the dense model; default: the export's source.")
@option("--ce-label", default=None, help="Name recorded for the cross-encoder; default: its export directory name.")
def score_candidates_command(candidates: Path, dense_dir: Path | None, ce_dir: Path | None, out: Path, device: str,
                             batch_size: int, threads: int, chunk_queries: int, dense_label: str | None,
                             ce_label: str | None) -> None:
    """Add dense and/or cross-encoder scores to a candidates file. Needs no OpenSearch."""
    from es_rerank.scoring.bi_encoder import DenseScorer
    from es_rerank.errors import ConfigError
    from es_rerank.data.candidates import read_candidates, write_candidates
    from es_rerank.evaluation.fusion_fit import score_candidates

    if dense_dir is None and ce_dir is None:
        raise ConfigError("nothing to score with", hint="pass --dense EXPORT_DIR and/or --ce EXPORT_DIR")
    cands = read_candidates(candidates)
    scorers: list[tuple] = []  # (name, Scorer, label)
    if dense_dir is not None:
        scorer = DenseScorer.load(dense_dir, device=device, batch_size=batch_size, threads=threads,
                                  cache_size=len(cands.docs) + len(cands.queries))
        label = dense_label or shown(json.loads((dense_dir / "meta.json").read_text(encoding="utf-8"))["source"])
        scorers.append(("dense", scorer, label))
    if ce_dir is not None:
        from es_rerank.scoring.cross_encoder import OnnxScorer

        scorers.append(("ce", OnnxScorer.load(ce_dir, device=device, batch_size=batch_size, threads=threads or None),
                        ce_label or ce_dir.name))
    history = cands.meta.setdefault("history", [])
    for name, scorer, label in scorers:
        def bar(chunks, desc=f"{name} scoring"):
            return progress_bar(chunks, len(chunks), desc=desc, unit="chunk")

        score_candidates(cands, name, scorer, label, chunk_queries, progress=bar)
        if name == "dense":
            history.append(f"es-rerank export-dense {label} {shown(dense_dir)}")
        flags = f"--{name} {shown(dense_dir if name == 'dense' else ce_dir)}"
        history.append(f"es-rerank score-candidates {shown(candidates)} {flags} --out {shown(out)}")
    write_candidates(cands, out)
    click.echo(f"wrote {', '.join(cands.inputs())} scores of {len(cands.queries)} queries to {out}")


@click.command(name="fit-fusion")
@click.argument("scored", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory (or qrels TSV) with the judgments of SCORED's split.")
@option("--inputs", default=None, metavar="A,B", help="Comma-separated inputs to weigh (bm25, ce, dense); default: all in SCORED.")
@option("--norm", "norms", default="zscore,minmax", metavar="A,B",
        help="Comma-separated normalisations to try (zscore, minmax).")
@option("--step", default=0.05, type=click.FloatRange(min=0, max=1, min_open=True), help="Weight grid step (weights sum to 1).")
@option("--select", type=click.Choice(["best", "one-se"]), default="best",
        help="best: highest dev nDCG@10; one-se: least cross-encoder within one standard error of it.")
@option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="YAML recipe to write with the chosen weights and how they were fitted.")
@option("--curve", "curve_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="JSON file to write with nDCG@10 of every weight setting tried.")
def fit_fusion_command(scored: Path, qrels_path: Path, inputs: str | None, norms: str, step: float, select: str,
                       out: Path | None, curve_path: Path | None) -> None:
    """Choose fusion weights maximising mean nDCG@10 on SCORED's (dev) queries, and print the curve.

    Refuses a test split: test judgments are for reporting, never for fitting.
    """
    import yaml

    from es_rerank.data.beir import read_qrels
    from es_rerank.errors import ConfigError
    from es_rerank.scoring.fusion import INPUTS, NORMS
    from es_rerank.data.candidates import read_candidates
    from es_rerank.evaluation.fusion_fit import curve_json, curve_table, fit_weights, recipe_dict

    cands = read_candidates(scored)
    split = cands.meta.get("split")
    if split == "test":
        raise ConfigError(f"{scored} holds queries of the test split; fitting on test judgments would overstate "
                          "every reported figure", hint="make candidates of a train split with --dev-fraction and fit "
                                                        "on those")
    qrels = read_qrels(qrels_path, split or "train")
    chosen = split_names(inputs, INPUTS, "--inputs") if inputs else None
    result = fit_weights(cands, qrels, chosen, split_names(norms, NORMS, "--norm"), step, select)
    click.echo(curve_table(result))
    best = result.best.weights.as_dict()
    baselines = ", ".join(f"{k} alone {v:.4f}" for k, v in result.baselines.items())
    click.echo(f"{'chosen' if select != 'best' else 'best'} on {result.queries} {cands.meta.get('dataset')} {split} "
               f"queries: {best} nDCG@10 {result.best.ndcg10:.4f} ({baselines})")
    if result.top is not None and result.top is not result.best:
        click.echo(f"highest: {result.top.weights.as_dict()} nDCG@10 {result.top.ndcg10:.4f}; chosen by {select}: "
                   f"{result.best.ndcg10 - result.top.ndcg10:+.4f} (one standard error "
                   f"{result.best.stderr:.4f}), cross-encoder share {result.best.ce_share:.2f} "
                   f"instead of {result.top.ce_share:.2f}")
    fit_command = (f"es-rerank fit-fusion {shown(scored)} --qrels {shown(qrels_path)}"
                   f" --inputs {','.join(result.inputs)} --norm {','.join(result.norms)} --step {step}"
                   + (f" --select {select}" if select != "best" else "")
                   + (f" --out {shown(out)}" if out else "") + (f" --curve {shown(curve_path)}" if curve_path else ""))
    if curve_path is not None:
        curve_path.parent.mkdir(parents=True, exist_ok=True)
        curve_path.write_text(json.dumps(curve_json(result), indent=1) + "\n", encoding="utf-8")
        click.echo(f"wrote the curve to {curve_path}")
    if out is not None:
        recipe = recipe_dict(result, cands.meta, [*cands.meta.get("history", []), fit_command])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("# Fusion weights written by `es-rerank fit-fusion`; `weights` is what the proxy reads.\n"
                       + yaml.safe_dump(recipe, sort_keys=False, width=120), encoding="utf-8")
        click.echo(f"wrote the weights to {out}")


@click.command(name="fusion")
@click.argument("scored", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, path_type=Path),
        help="BEIR directory (or qrels TSV) with the judgments of SCORED's split.")
@option("--weights", "weights_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Fusion recipe (fit-fusion --out) to evaluate as the fused system.")
@option("--system", default="rerank_fused", help="Name of the fused system in the report.")
@option("--set", "set_name", default=None, help="Collection name in figure names; default: SCORED's dataset name.")
@option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Write the figures as docs/benchmarks.json entries to this file.")
def bench_fusion_command(scored: Path, qrels_path: Path, weights_path: Path | None, system: str, set_name: str | None,
                         json_path: Path | None) -> None:
    """nDCG@10 of BM25, dense, rerank and fused rankings of SCORED; flags any system below BM25."""
    import os
    import platform

    from es_rerank.data.beir import read_qrels
    from es_rerank.scoring.fusion import load_weights
    from es_rerank.data.candidates import read_candidates
    from es_rerank.evaluation.fusion_fit import evaluate_systems

    cands = read_candidates(scored)
    split = cands.meta.get("split") or "test"
    fused = {system: load_weights(weights_path)} if weights_path else {}
    results = evaluate_systems(cands, read_qrels(qrels_path, split), fused)
    set_name = set_name or cands.meta.get("dataset") or scored.stem
    command = (f"es-rerank bench fusion {shown(scored)} --qrels {shown(qrels_path)}"
               + (f" --weights {shown(weights_path)} --system {system}" if weights_path else ""))
    click.echo(f"{set_name} {split}: {len(cands.queries)} queries, BM25 top-{cands.meta.get('depth')} candidates")
    click.echo(f"{'system':<14} {'nDCG@10':>8} {'vs bm25':>8}")
    for score in results:
        flag = "  BELOW BM25" if score.below_bm25 else ""
        click.echo(f"{score.system:<14} {score.ndcg10:8.4f} {score.delta_vs_bm25:+8.4f}{flag}")
    if json_path is not None:
        models = cands.meta.get("models", {})
        bm25 = next(s.ndcg10 for s in results if s.system == "bm25")
        entries = [{"name": f"quality.{set_name}_{split}.{s.system}.ndcg10", "value": round(s.ndcg10, 4),
                    "unit": "nDCG@10", "baseline": f"bm25 {bm25:.4f} on the same BM25 top-"
                    f"{cands.meta.get('depth')} candidates, same run", "models": models,
                    "weights": fused[s.system].as_dict() if s.system in fused else None,
                    "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU", "command": command,
                    "date": date.today().isoformat()} for s in results]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
        click.echo(f"wrote {len(entries)} figures to {json_path}")
