"""Export a sentence-transformers (or plain Hugging Face) encoder to an ONNX bi-encoder that
`es_rerank.scoring.bi_encoder.DenseScorer` runs without torch.

The graph takes the tokenizer's inputs and returns one output, `sentence_embedding`: the
pooled (mean over real tokens via the attention mask, or CLS) and L2-normalised embedding, so
a cosine is a dot product. Pooling, maximum length and lowercasing are read from the
sentence-transformers files (`modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json`) when present. The exported graph is checked against the torch
model on a few texts before the export is accepted.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from es_rerank.scoring.bi_encoder import FORMAT_VERSION, KIND, META_FILE
from es_rerank.errors import ModelError

OPSET = 17
INT8_FILE = "model.int8.onnx"
# Dynamic int8 moves MiniLM-L6's normalised embeddings by a cosine of about 0.01; this bound
# refuses a model whose quantization goes visibly further.
INT8_MIN_COSINE = 0.97
POOLINGS = ("mean", "cls")
# Varied lengths, casing and punctuation, and one text longer than any max_length, so the
# parity check covers padding and truncation.
PARITY_TEXTS = (
    "gene therapy",
    "What is the boundary layer thickness on a flat plate at high Mach number?",
    "0-dimensional biomaterials show inductive properties.",
    "Vitamin D deficiency is associated with an increased risk of cardiovascular events in adults.",
    "A",
    " ".join(["Experimental and theoretical heat transfer rates in hypersonic flow over blunt bodies."] * 40),
)


@dataclass(frozen=True)
class EncoderSettings:
    """How sentence-transformers runs the encoder: where its weights are and how it pools."""

    transformer_dir: Path
    max_length: int
    lowercase: bool
    pooling: str


@dataclass(frozen=True)
class ExportReport:
    """What an export produced and how close it is to torch."""

    outdir: Path
    max_abs_diff: float
    max_abs_dcos: float
    parity_texts: int
    optimized: bool
    min_cosine: float = 1.0     # the lowest cosine between a torch embedding and the served graph's
    dtype: str = "float32"      # of the served graph: float32, or int8 with --int8


def resolve_source(source: str) -> Path:
    """A local model directory as is, or a Hugging Face hub id downloaded to the local cache.
    """
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelError(f"{source} is not a model directory",
                         hint="pass a sentence-transformers / Hugging Face model directory or a hub id like "
                              "sentence-transformers/all-MiniLM-L6-v2")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*/*.json"]
    try:
        local = Path(snapshot_download(source, allow_patterns=[*patterns, "*.safetensors"]))
        if not any(local.rglob("*.safetensors")):
            local = Path(snapshot_download(source, allow_patterns=[*patterns, "*.bin"]))
    except Exception as exc:  # huggingface_hub raises many unrelated types for "not found" / offline
        raise ModelError(f"cannot fetch {source!r} from the Hugging Face hub: {exc}",
                         hint="check the id and network, or pass a local model directory") from exc
    return local


def read_settings(model_dir: Path, max_length: int | None = None) -> EncoderSettings:
    """Pooling, max length and lowercasing from the sentence-transformers files, or defaults
    (mean pooling, the model's position limit capped at 512) for a plain encoder.
    """
    transformer_dir, pooling_dir = model_dir, None
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        for module in json.loads(modules_file.read_text(encoding="utf-8")):
            kind = str(module.get("type", ""))
            if kind.endswith("models.Transformer"):
                transformer_dir = model_dir / module.get("path", "")
            elif kind.endswith("models.Pooling"):
                pooling_dir = model_dir / module.get("path", "")
    pooling = "mean"
    if pooling_dir is not None and (pooling_dir / "config.json").is_file():
        pooling = _pooling_mode(json.loads((pooling_dir / "config.json").read_text(encoding="utf-8")), pooling_dir)
    st_config = {}
    for candidate in (transformer_dir / "sentence_bert_config.json", model_dir / "sentence_bert_config.json"):
        if candidate.is_file():
            st_config = json.loads(candidate.read_text(encoding="utf-8"))
            break
    config = json.loads((transformer_dir / "config.json").read_text(encoding="utf-8")) \
        if (transformer_dir / "config.json").is_file() else {}
    if not config:
        raise ModelError(f"no config.json in {transformer_dir}", hint="pass a Hugging Face encoder directory")
    limit = min(int(config.get("max_position_embeddings", 512)), 512)
    length = max_length or st_config.get("max_seq_length") or limit
    if not isinstance(length, int) or not 2 <= length <= limit:
        raise ModelError(f"max length {length!r} is outside 2..{limit} for this model",
                         hint=f"pass --max-length between 2 and {limit}")
    return EncoderSettings(transformer_dir=transformer_dir, max_length=length,
                           lowercase=bool(st_config.get("do_lower_case", False)), pooling=pooling)


def _pooling_mode(config: dict, where: Path) -> str:
    chosen = [name for name, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                                     ("max", "pooling_mode_max_tokens"),
                                     ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens")) if config.get(key)]
    if len(chosen) != 1 or chosen[0] not in POOLINGS:
        raise ModelError(f"{where}/config.json asks for pooling {chosen or 'none'}; export supports exactly one "
                         f"of {', '.join(POOLINGS)}", hint="use a mean- or CLS-pooled sentence encoder")
    return chosen[0]


def build_module(settings: EncoderSettings):
    """The torch module that is exported: encoder, pooling, L2 normalisation (eager attention).
    """
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(settings.transformer_dir), attn_implementation="eager",
                                        dtype=torch.float32)
    encoder.eval()

    class PooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            if settings.pooling == "cls":
                pooled = tokens[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return PooledEncoder().eval()


def export_bi_encoder(source: str, outdir: str | Path, optimize: bool = False, max_length: int | None = None,
                      atol: float = 1e-4, opset: int = OPSET, int8: bool = False,
                      int8_min_cosine: float = INT8_MIN_COSINE) -> ExportReport:
    """Export `source` (directory or hub id) to `outdir`: model.onnx, tokenizer.json, meta.json.

    With `optimize`, onnxruntime's transformer fusions (attention, layer norm, GELU) are applied
    to the graph. Raises `ModelError` when the ONNX embeddings differ from torch by more than
    `atol` on the parity texts; the failed export's meta is then renamed so it cannot be loaded.
    With `int8`, the checked fp32 graph is also quantized (dynamic int8, for CPU serving) into
    model.int8.onnx, which meta.json then names; each int8 embedding must keep a cosine of at
    least `int8_min_cosine` with torch's.
    """
    import torch
    from transformers import AutoTokenizer

    model_dir = resolve_source(source)
    settings = read_settings(model_dir, max_length)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(settings.transformer_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{source} has no fast (Rust) tokenizer", hint="use a model that ships tokenizer.json")
    tokenizer.backend_tokenizer.save(str(outdir / "tokenizer.json"))
    module = build_module(settings)
    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names:
        input_names.append("token_type_ids")
    sample = tokenizer(["a short text", "a somewhat longer text to pad against"], padding=True,
                       return_tensors="pt")
    args = tuple(sample[name] for name in input_names)
    onnx_path = outdir / "model.onnx"
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about a padding branch that is constant for encoders without a KV cache and
        # about index lowering; the parity check below is what decides whether the graph is right.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(module, args, str(onnx_path), dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=["sentence_embedding"],
                          dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in input_names},
                                        "sentence_embedding": {0: "batch"}})
    if optimize:
        _fuse_transformer_ops(onnx_path, module.encoder.config)
    config = module.encoder.config
    meta = {
        "kind": KIND, "format_version": FORMAT_VERSION, "onnx": onnx_path.name, "tokenizer": "tokenizer.json",
        "max_length": settings.max_length, "lowercase": settings.lowercase, "pad_id": int(tokenizer.pad_token_id or 0),
        "input_names": input_names, "output_name": "sentence_embedding", "dim": int(config.hidden_size),
        "pooling": settings.pooling, "normalize": True, "similarity": "cosine", "source": str(source),
        "opset": opset, "optimized": optimize, "dtype": "float32", "exported": date.today().isoformat(),
        "versions": _versions(),
    }
    (outdir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    report = check_parity(module, tokenizer, settings, outdir, optimize)
    meta["parity"] = {"texts": report.parity_texts, "max_abs_diff_embedding": report.max_abs_diff,
                      "max_abs_diff_cosine": report.max_abs_dcos, "atol": atol}
    (outdir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if not report.max_abs_diff <= atol:
        shutil.move(str(outdir / META_FILE), str(outdir / "meta.failed.json"))
        raise ModelError(f"ONNX embeddings differ from torch by {report.max_abs_diff:.2e} (> {atol:.0e}) "
                         f"on {report.parity_texts} texts", hint="retry without --optimize, or report the model")
    if int8:
        report = _quantize(module, tokenizer, settings, outdir, meta, report, int8_min_cosine)
    return report


def _quantize(module, tokenizer, settings: EncoderSettings, outdir: Path, meta: dict, fp32: ExportReport,
              min_cosine: float) -> ExportReport:
    """Write model.int8.onnx beside the checked fp32 graph and point meta.json at it, if it agrees."""
    from es_rerank.export.onnx_graph import quantize_int8

    quantize_int8(outdir / meta["onnx"], outdir / INT8_FILE)
    meta_path = outdir / META_FILE
    meta.update(onnx=INT8_FILE, dtype="int8", fp32_onnx="model.onnx")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    quantized = check_parity(module, tokenizer, settings, outdir, fp32.optimized, dtype="int8")
    meta["parity"]["int8"] = {"min_cosine_to_torch": quantized.min_cosine, "bound": min_cosine,
                              "max_abs_diff_cosine": quantized.max_abs_dcos}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if not quantized.min_cosine >= min_cosine:
        shutil.move(str(meta_path), str(outdir / "meta.failed.json"))
        raise ModelError(f"int8 embeddings keep a cosine of only {quantized.min_cosine:.4f} with torch's "
                         f"(< {min_cosine}) on {quantized.parity_texts} texts",
                         hint="export without --int8 (fp32 keeps parity)")
    return quantized


def check_parity(module, tokenizer, settings: EncoderSettings, outdir: Path, optimized: bool,
                 dtype: str = "float32") -> ExportReport:
    """Compare `DenseScorer` (onnxruntime + tokenizers) with the torch module on `PARITY_TEXTS`.

    The torch side tokenizes with the transformers tokenizer, as sentence-transformers does, so
    the check covers the Rust-tokenizer path of the serving scorer as well.
    """
    import numpy as np
    import torch

    from es_rerank.scoring.bi_encoder import DenseScorer

    texts = [t.strip().lower() if settings.lowercase else t.strip() for t in PARITY_TEXTS]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=settings.max_length, return_tensors="pt")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in batch else [])
    with torch.inference_mode():
        reference = module(*(batch[name] for name in names)).float().numpy()
    exported = DenseScorer.load(outdir, threads=1).embed(list(PARITY_TEXTS))
    cos_ref, cos_onnx = reference @ reference.T, exported @ exported.T
    return ExportReport(outdir=outdir, max_abs_diff=float(np.abs(reference - exported).max()),
                        max_abs_dcos=float(np.abs(cos_ref - cos_onnx).max()), parity_texts=len(texts),
                        optimized=optimized, min_cosine=float((reference * exported).sum(axis=1).min()), dtype=dtype)


def _fuse_transformer_ops(onnx_path: Path, config) -> None:
    from onnxruntime.transformers import optimizer

    model_type = "bert" if config.model_type in ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet") \
        else config.model_type
    try:
        optimized = optimizer.optimize_model(str(onnx_path), model_type=model_type,
                                             num_heads=int(config.num_attention_heads),
                                             hidden_size=int(config.hidden_size), opt_level=1, use_gpu=False)
    except Exception as exc:  # the optimizer raises bare exceptions on graphs it does not know
        raise ModelError(f"onnxruntime transformer fusion failed for model type {config.model_type}: {exc}",
                         hint="export without --optimize") from exc
    optimized.save_model_to_file(str(onnx_path))


def _versions() -> dict:
    import onnx
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__}


def report_dict(report: ExportReport) -> dict:
    """The report as plain data for printing.

    Example:
        >>> report_dict(ExportReport(Path("x"), 1e-6, 2e-7, 6, False))["max_abs_diff"]
        1e-06
    """
    data = asdict(report)
    data["outdir"] = str(report.outdir)
    return data
