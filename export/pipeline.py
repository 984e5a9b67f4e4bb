"""`es-rerank export`: checkpoint -> fused ONNX model(s), tokenizer and meta.json, parity-checked.

Everything is built in a hidden temporary directory beside OUTDIR and renamed into place
only once every variant has passed its parity threshold, so a failed or interrupted export
leaves nothing half-written and an existing export is replaced only by a good one.
"""

from __future__ import annotations

import datetime
import inspect
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from es_rerank.errors import ConfigError, ModelError
from es_rerank.scoring.export_meta import (KNOWN_INPUTS, MAX_LENGTH_LIMIT, VARIANT_DTYPES, VARIANT_FILES, ExportMeta,
                                   ModelVariant, write_meta)
from es_rerank.export.parity import PARITY_THRESHOLDS, ParityThreshold, judge, parity_figures
from es_rerank.export.parity_pairs import ParitySource, load_parity_pairs

# RoBERTa-style models number positions from padding_idx + 1, so two positions are unusable.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}
# Model types whose attention ONNX Runtime's BERT fusion recognises: for these an unfused layer
# means the export went wrong; other families (DeBERTa-v2, ModernBERT) export unfused.
BERT_FUSION_FAMILY = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})


@dataclass(frozen=True)
class ExportSettings:
    """What `es-rerank export` was asked to do; see `es-rerank export --help` for each field."""

    checkpoint: str
    out_dir: Path
    device: str = "auto"
    fp16: bool | None = None
    int8: bool = False
    max_length: int | None = None
    query_max_length: int = 64
    parity: ParitySource = field(default_factory=ParitySource)
    batch_size: int = 32
    force: bool = False
    overwrite: bool = False
    # Run the last layer's row-wise work for the head's token only (export/first_token.py).
    first_token_last_layer: bool = True


def export_checkpoint(settings: ExportSettings, thresholds: Mapping[str, ParityThreshold] = PARITY_THRESHOLDS,
                      log: Callable[[str], None] = lambda message: None) -> ExportMeta:
    """Export, fuse, convert, parity-check and atomically write; returns the written meta.

    `thresholds` maps variant name to its parity threshold (the defaults are documented in
    `es_rerank.export.parity`). A missed threshold raises `ModelError` and writes nothing,
    unless `settings.force`.
    """
    device = resolve_export_device(settings.device)
    fp16 = settings.fp16 if settings.fp16 is not None else device == "cuda"
    out = Path(settings.out_dir)
    _check_out_dir(out, settings)
    started = time.perf_counter()

    from es_rerank.export.checkpoints import load_classifier, load_config, load_tokenizer

    config = load_config(settings.checkpoint)
    max_length = _max_length(settings.max_length, config)
    pairs, source = load_parity_pairs(settings.parity)
    model = load_classifier(settings.checkpoint, attn_implementation="eager")
    tokenizer = load_tokenizer(settings.checkpoint)
    _check_query_room(tokenizer, max_length, settings.query_max_length)
    input_names = _input_names(model, tokenizer)
    log(f"loaded {settings.checkpoint} ({type(model).__name__}, {config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size}) in {time.perf_counter() - started:.1f} s; parity pairs: {source}")

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tokenizer.save_pretrained(work)
        # config.json beside model.onnx: the Hugging Face layout in which optimum's
        # ORTModelForSequenceClassification and sentence-transformers' ONNX backend load the folder as it is.
        config.save_pretrained(work)
        if not (work / "tokenizer.json").is_file():
            raise ModelError(f"the tokenizer of {settings.checkpoint} did not save a tokenizer.json",
                             hint="use a checkpoint with a fast (Rust) tokenizer")
        example = _example_batch(work / "tokenizer.json", max_length, settings.query_max_length,
                                 _pad_id(tokenizer, config), pairs)
        input_names, variants, sliced = _build_graphs(model, config, example.arrays(input_names), work, fp16,
                                                      settings, device, log)
        meta = ExportMeta(
            source_checkpoint=_source_name(settings.checkpoint), max_length=max_length,
            query_max_length=settings.query_max_length, input_names=tuple(input_names), output_name="logits",
            output_activation="identity", pad_token_id=_pad_id(tokenizer, config), tokenizer_file="tokenizer.json",
            variants=variants, details={**_details(model, config, device, settings.checkpoint),
                                        "last_layer_nodes_on_first_token": sliced})
        write_meta(work, meta)
        meta = _check_parity(work, meta, model, pairs, source, device, settings.batch_size, thresholds, log)
        write_meta(work, meta)
        failed = {name: v.parity for name, v in meta.variants.items() if not v.parity["passed"]}
        if failed and not settings.force:
            described = "; ".join(f"{name}: max |Δlogit| {p['max_abs_dlogit']:.3g} (limit "
                                  f"{p['max_abs_dlogit_limit']:.3g}), top-10 overlap {p['top10_overlap']:.2f}"
                                  for name, p in failed.items())
            raise ModelError(f"parity check failed, nothing written: {described}",
                             hint="pass --force to write it anyway (the figures are kept in meta.json), or "
                                  "export without the failing variant")
        _move_into_place(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return meta


def resolve_export_device(device: str) -> str:
    """"auto" -> "cuda" when both PyTorch and ONNX Runtime can use a GPU here, else "cpu".

    Example:
        >>> resolve_export_device("cpu")
        'cpu'
    """
    if device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"--device must be auto, cuda or cpu, got {device!r}")
    if device == "cpu":
        return device
    import onnxruntime
    import torch

    torch_cuda = torch.cuda.is_available()
    ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not (torch_cuda and ort_cuda):
        missing = "PyTorch sees no CUDA device" if not torch_cuda else \
            f"onnxruntime {onnxruntime.__version__} has no CUDA execution provider"
        raise ConfigError(f"--device cuda asked for, but {missing}",
                          hint="install onnxruntime-gpu and a CUDA build of torch, or use --device cpu")
    return "cuda" if torch_cuda and ort_cuda else "cpu"


def _build_graphs(model, config, example, work: Path, fp16: bool, settings: ExportSettings, device: str,
                  log) -> tuple[list[str], dict[str, ModelVariant], int]:
    """Trace, fuse and write each variant; returns the inputs the graphs take, the variants, and how
    many last-layer nodes run on the head's token alone (0: the last layer is whole)."""
    from es_rerank.export import first_token, onnx_graph

    started = time.perf_counter()
    input_names = onnx_graph.trace(model, work / "raw.onnx", example)
    ignored = [name for name in example if name not in input_names]
    if ignored:
        log(f"the model ignores {', '.join(ignored)}; the exported graph does not take {'it' if len(ignored) == 1 else 'them'}")
    fused, counts = onnx_graph.fuse(work / "raw.onnx", config.num_attention_heads, config.hidden_size,
                                    use_gpu=device == "cuda")
    (work / "raw.onnx").unlink()
    log(f"traced and fused in {time.perf_counter() - started:.1f} s: {counts}")
    layers = config.num_hidden_layers
    fused_layers = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    if fused_layers < layers:
        message = (f"ONNX Runtime fused attention in {fused_layers} of {layers} layers; "
                   "unfused attention runs slower than PyTorch fp16")
        if config.model_type not in BERT_FUSION_FAMILY:
            # The fusion only knows BERT's attention pattern; another family's graph stays as traced
            # (with whatever smaller fusions applied), which is correct, as the parity check shows.
            log(f"note: {message}; ONNX Runtime's fusion does not know {config.model_type} attention, "
                "so the graph keeps it unfused")
        elif not settings.force:
            raise ModelError(message, hint="export a BERT-like model (the fusion knows BERT's attention pattern), "
                                           "or pass --force to write it anyway")
        else:
            log(f"warning: {message}")
    sliced = 0
    if settings.first_token_last_layer:
        sliced, note = first_token.slice_checked(fused.model, {name: example[name] for name in input_names})
        log(note)
    onnx_graph.save(fused, work / VARIANT_FILES["fp32"], VARIANT_DTYPES["fp32"])
    variants = {"fp32": ModelVariant("fp32", VARIANT_FILES["fp32"], VARIANT_DTYPES["fp32"], counts)}
    if fp16:
        onnx_graph.to_fp16(fused)
        onnx_graph.save(fused, work / VARIANT_FILES["fp16"], VARIANT_DTYPES["fp16"])
        variants["fp16"] = ModelVariant("fp16", VARIANT_FILES["fp16"], VARIANT_DTYPES["fp16"], counts)
    del fused
    if settings.int8:
        int8_counts = onnx_graph.quantize_int8(work / VARIANT_FILES["fp32"], work / VARIANT_FILES["int8"])
        variants["int8"] = ModelVariant("int8", VARIANT_FILES["int8"], VARIANT_DTYPES["int8"], int8_counts)
    log(f"wrote {', '.join(v.file for v in variants.values())} in {time.perf_counter() - started:.1f} s")
    return input_names, variants, sliced


def _example_batch(tokenizer_file: Path, max_length: int, query_max_length: int, pad_id: int, pairs):
    """A real two-row batch to trace with, its second row padded (see `onnx_graph.trace`)."""
    from es_rerank.scoring.token_batches import batch_by_length
    from es_rerank.scoring.pair_encoding import PairEncoder

    encoder = PairEncoder.from_file(tokenizer_file, max_length, query_max_length, pad_id, doc_cache_size=0)
    first = pairs[0]
    encoded = encoder.encode([first.query, first.query], [first.docs[0] * 4, "a"])
    return next(batch_by_length(encoded, 2, pad_id, max_width=max_length))


def _check_parity(work: Path, meta: ExportMeta, model, pairs, source: str, device: str, batch_size: int,
                  thresholds: Mapping[str, ParityThreshold], log) -> ExportMeta:
    """Score every parity pair with PyTorch fp32 and with each variant; record judged figures."""
    from es_rerank.export.torch_scorer import TorchScorer
    from es_rerank.scoring.cross_encoder import OnnxScorer

    started = time.perf_counter()
    scorers = {name: OnnxScorer.load(work, device="cpu" if name == "int8" else device, batch_size=batch_size,
                                     variant=name) for name in meta.variants}
    encoder = next(iter(scorers.values())).encoder
    reference = TorchScorer(model.to(device), encoder, meta.input_names, device, batch_size)
    ref_scores: list = []
    got: dict[str, list] = {name: [] for name in scorers}
    for item in pairs:
        queries = [item.query] * len(item.docs)
        ref_scores.append(reference.score_pairs(queries, list(item.docs)))
        for name, scorer in scorers.items():
            got[name].append(scorer.score_pairs(queries, list(item.docs)))
    variants = {}
    for name, variant in meta.variants.items():
        judged = judge(parity_figures(ref_scores, got[name], [p.query_id for p in pairs]), thresholds[name])
        judged.update(source=source, reference=f"torch fp32, eager attention, on {device}",
                      runtime=f"onnxruntime on {scorers[name].device}")
        variants[name] = replace(variant, parity=judged)
        log(f"parity {name}: max |Δlogit| {judged['max_abs_dlogit']:.3g} "
            f"(limit {judged['max_abs_dlogit_limit']:.3g}), "
            f"top-10 identical {judged['top10_agreement']:.2f}, overlap {judged['top10_overlap']:.2f} "
            f"-> {'ok' if judged['passed'] else 'FAILED'}")
    log(f"parity on {sum(len(p.docs) for p in pairs)} pairs in {time.perf_counter() - started:.1f} s")
    return replace(meta, variants=variants)


def _check_out_dir(out: Path, settings: ExportSettings) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUTDIR {out} exists and is not a directory", hint="pick another OUTDIR")
    checkpoint = Path(settings.checkpoint).expanduser()
    if checkpoint.exists() and out.resolve() in (checkpoint.resolve(), *checkpoint.resolve().parents):
        raise ConfigError(f"OUTDIR {out} would replace the checkpoint {settings.checkpoint} or a folder holding it",
                          hint="pick an OUTDIR outside the checkpoint")
    if out.is_dir() and any(out.iterdir()) and not settings.overwrite:
        raise ConfigError(f"OUTDIR {out} exists and is not empty",
                          hint="pass --overwrite to replace it (the old export stays until the new one has passed "
                               "parity), or pick another OUTDIR")


def _move_into_place(work: Path, out: Path) -> None:
    """Rename the finished directory to `out`; an old `out` is removed only after that worked."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp made it private; an export is an ordinary directory
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(work, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(work, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _max_length(requested: int | None, config) -> int:
    positions = int(getattr(config, "max_position_embeddings", MAX_LENGTH_LIMIT))
    positions -= _POSITION_OFFSET.get(config.model_type, 0)
    limit = min(MAX_LENGTH_LIMIT, positions)
    if requested is None:
        return limit
    if not 8 <= requested <= limit:
        raise ConfigError(f"--max-length {requested} is out of range; expected 8 to {limit} "
                          f"(at most {MAX_LENGTH_LIMIT}, and this model has {positions} positions)")
    return requested


def _check_query_room(tokenizer, max_length: int, query_max_length: int) -> None:
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    if not 1 <= query_max_length <= max_length - specials - 1:
        raise ConfigError(f"--query-max-length {query_max_length} leaves no room for the document; expected 1 to "
                          f"{max_length - specials - 1} with --max-length {max_length}")


def _input_names(model, tokenizer) -> list[str]:
    """The inputs the model's forward takes and the tokenizer produces, in a fixed order."""
    accepted = inspect.signature(model.forward).parameters
    produced = set(getattr(tokenizer, "model_input_names", KNOWN_INPUTS)) | {"input_ids", "attention_mask"}
    return [name for name in KNOWN_INPUTS if name in accepted and name in produced]


def _pad_id(tokenizer, config) -> int:
    for value in (tokenizer.pad_token_id, getattr(config, "pad_token_id", None)):
        if isinstance(value, int) and value >= 0:
            return value
    return 0  # padded positions are masked out, so any id works


def _source_name(checkpoint: str) -> str:
    path = Path(checkpoint).expanduser()
    return str(path.resolve()) if path.exists() else checkpoint


def _details(model, config, device: str, checkpoint: str) -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from es_rerank.export.checkpoints import read_provenance
    from es_rerank.export.onnx_graph import OPSET

    return {
        "architecture": type(model).__name__, "model_type": config.model_type,
        "num_layers": config.num_hidden_layers, "num_heads": config.num_attention_heads,
        "hidden_size": config.hidden_size, "export_device": device, "opset": OPSET,
        "attention_for_export": "eager",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training": read_provenance(checkpoint),  # recipe, data sha256, seed, versions; None if trained elsewhere
    }
