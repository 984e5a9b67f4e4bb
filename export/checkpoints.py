"""One-logit cross-encoder checkpoints: making them and checking that one is what export needs.

A reranker checkpoint is a Hugging Face sequence-classification model with exactly one
label: its single logit is the relevance score. `init_cross_encoder` puts a fresh, seeded
one-logit head on a plain encoder (training starts from it); `random_classifier` builds a
seeded random-weight model of a named size (for benchmarks that need a model of that size
and no weights); `load_classifier` refuses anything that is not a one-logit classifier.
"""

from __future__ import annotations

import re
from pathlib import Path

from es_rerank.errors import ModelError

ONE_LOGIT_HINT = (
    "a reranker needs a sequence-classification model with one logit: train one with `es-rerank train`, "
    "or put a fresh head on an encoder with AutoModelForSequenceClassification.from_pretrained(ENCODER, "
    "num_labels=1).save_pretrained(DIR) and save its tokenizer there too "
    "(es_rerank.export.checkpoints.init_cross_encoder does both)")

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

# Layer shapes of the random-weight models `random_classifier` builds. Both use the BERT
# uncased WordPiece vocabulary (30,522 tokens), so the packaged MiniLM tokenizer fits both.
RANDOM_SIZES = {
    "minilm-l6": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


def init_cross_encoder(base_dir: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """Save `base_dir`'s encoder with a fresh one-logit head (seeded) and its tokenizer to `out_dir`.

    `base_dir` is a local Hugging Face directory or a hub id of an encoder (BERT-like). The
    head is initialised by transformers' own initialiser under `torch.manual_seed(seed)`, so
    the same seed gives the same checkpoint.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_source(base_dir)
    out = Path(out_dir)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized: classifier" report is the point here
    try:
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    except OSError as exc:
        raise ModelError(f"cannot load encoder {base_dir}: {exc}",
                         hint="pass a local Hugging Face model directory or a hub id you can reach") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_classifier(size: str, out_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0) -> Path:
    """Save a seeded random-weight one-logit BERT classifier of `size` ("minilm-l6" or "bert-base").

    Weights are random, so scores mean nothing; the model has the shape and cost of the
    named size, which is what speed benchmarks need. The tokenizer comes from `tokenizer_dir`
    (any BERT uncased WordPiece tokenizer, e.g. the packaged MiniLM's).
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    if size not in RANDOM_SIZES:
        raise ValueError(f"size must be one of {sorted(RANDOM_SIZES)}, got {size!r}")
    _check_source(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, type_vocab_size=2,
                        num_labels=1, pad_token_id=tokenizer.pad_token_id or 0, **RANDOM_SIZES[size])
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_config(checkpoint: str | Path):
    """The checkpoint's config, refused unless it is a sequence classifier with one logit.
    """
    from transformers import AutoConfig

    _check_source(checkpoint)
    try:
        config = AutoConfig.from_pretrained(str(checkpoint))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model config of {checkpoint}: {str(exc).splitlines()[0]}",
                         hint="CHECKPOINT must be a Hugging Face model directory (with config.json) "
                              "or a hub id") from exc
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        kind = ", ".join(architectures) or f"a {config.model_type} model without a classification head"
        raise ModelError(f"{checkpoint} is a plain encoder ({kind}), not a sequence-classification model",
                         hint=ONE_LOGIT_HINT)
    if config.num_labels != 1:
        raise ModelError(f"{checkpoint} is a {architectures[0]} with {config.num_labels} labels; "
                         "a reranker scores with exactly one logit", hint=ONE_LOGIT_HINT)
    return config


def load_classifier(checkpoint: str | Path, attn_implementation: str = "eager"):
    """Load a one-logit classifier in fp32, eval mode, with the given attention implementation.

    Eager attention is what export needs: its graph is the pattern ONNX Runtime's optimizer
    fuses into `Attention` nodes (SDPA exports as a pattern it does not recognise).
    """
    from transformers import AutoModelForSequenceClassification

    config = load_config(checkpoint)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(checkpoint), config=config, attn_implementation=attn_implementation)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the weights of {checkpoint}: {str(exc).splitlines()[0]}",
                         hint="check that the directory holds model.safetensors (or pytorch_model.bin)") from exc
    return model.float().eval()


def load_tokenizer(checkpoint: str | Path):
    """The checkpoint's fast (Rust) tokenizer; the ONNX scorer needs its tokenizer.json.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer of {checkpoint}: {str(exc).splitlines()[0]}",
                         hint="save the tokenizer into the checkpoint directory "
                              "(tokenizer.save_pretrained(DIR))") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{checkpoint} has no fast tokenizer (tokenizer.json)",
                         hint="convert it: AutoTokenizer.from_pretrained(DIR, use_fast=True).save_pretrained(DIR)")
    return tokenizer


def _check_source(source: str | Path) -> None:
    """Refuse a source that is neither an existing path nor shaped like a hub id (`name` or `org/name`).

    Example:
        >>> _check_source("./no/such/dir")
        Traceback (most recent call last):
        ...
        es_rerank.errors.ModelError: checkpoint ./no/such/dir does not exist (pass a local Hugging Face model directory or a hub id such as org/name)
    """
    text = str(source)
    if Path(text).expanduser().exists() or _HUB_ID.fullmatch(text):
        return
    raise ModelError(f"checkpoint {text} does not exist",
                     hint="pass a local Hugging Face model directory or a hub id such as org/name")


PROVENANCE_FILE = "provenance.json"  # beside a trained checkpoint: what produced it (training.provenance)


def read_provenance(checkpoint: str | Path) -> dict | None:
    """The training record beside `checkpoint` (its folder, or the run folder above it), if any.

    A hub id or a checkpoint trained elsewhere has none; export then records `null`.

    Example:
        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> read_provenance(folder) is None
        True
        >>> _ = (folder / PROVENANCE_FILE).write_text(json.dumps({"seed": 3}))
        >>> read_provenance(folder)
        {'seed': 3}
    """
    import json

    folder = Path(checkpoint).expanduser()
    for candidate in (folder / PROVENANCE_FILE, folder.parent / PROVENANCE_FILE):
        if candidate.is_file():
            try:
                record = json.loads(candidate.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ModelError(f"{candidate} is not valid JSON ({exc.msg})",
                                 hint="it is written by `es-rerank train`; train again or delete it") from exc
            return record if isinstance(record, dict) else None
    return None
