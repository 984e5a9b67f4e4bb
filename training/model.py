"""The cross-encoder being trained: loading it (a fresh one-logit head on a plain encoder), saving it
as a Hugging Face checkpoint, and scoring with it through the `Scorer` protocol.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from es_rerank.errors import ModelError

# Config keys that hold dropout rates in the common encoder families (BERT/MiniLM, DistilBERT, ...).
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                "attention_dropout", "seq_classif_dropout")


def load_cross_encoder(name_or_path: str, dropout: float | None = None):
    """(model, tokenizer): a sequence-classification model with one output logit.

    A plain encoder checkpoint (e.g. `BertModel`) gets a freshly initialised head; a checkpoint
    that already is a one-logit cross-encoder loads as is. `dropout` overrides every dropout
    rate of the config (None keeps the model's own). Attention runs through PyTorch SDPA where the
    architecture has it, else eager (DeBERTa-v2 has no SDPA attention).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:
        config = AutoConfig.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load base model {name_or_path!r}: {exc}",
                         hint="pass a local Hugging Face model directory or a hub id reachable from here") from exc
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if is_classifier and config.num_labels != 1:
        raise ModelError(f"base model {name_or_path!r} is a classifier with {config.num_labels} labels",
                         hint="start from a plain encoder or a one-logit cross-encoder")
    config.num_labels = 1
    if dropout is not None:
        for key in DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, float(dropout))
    verbosity = hf_logging.get_verbosity()
    if not is_classifier:
        hf_logging.set_verbosity_error()  # its "newly initialized: classifier" report is the intent here
    try:
        # fp32 master weights whatever the checkpoint's dtype (a float16 copy trains in fp32 too).
        # attn_implementation None: transformers picks SDPA, falling back to eager where there is none.
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, config=config, dtype=torch.float32,
                                                                   attn_implementation=None)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot build a cross-encoder from {name_or_path!r}: {exc}",
                         hint="the base model must be an encoder that transformers can classify with") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def input_names(tokenizer) -> list[str]:
    """The pair arrays this model family takes (RoBERTa-style models take no token type ids).

    Example:
        >>> class Tok: model_input_names = ["input_ids", "attention_mask"]
        >>> input_names(Tok())
        ['input_ids', 'attention_mask']
    """
    known = ("input_ids", "attention_mask", "token_type_ids")
    return [name for name in known if name in tokenizer.model_input_names]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP and/or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(model: torch.nn.Module, tokenizer, out_dir: Path) -> None:
    """Write a Hugging Face checkpoint: config.json (num_labels 1), model.safetensors, tokenizer files.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per save would bury the training log
    out_dir.mkdir(parents=True, exist_ok=True)
    unwrap(model).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def make_scorer(model: torch.nn.Module, tokenizer, max_length: int, query_max_length: int,
                device: torch.device, batch_size: int):
    """A `Scorer` over the model being trained: export's `TorchScorer` fed by the serving `PairEncoder`,
    so dev and test figures come from the batches the served model would see.

    Score inside `scoring_mode(...)` (eval mode, optional autocast).
    """
    from tokenizers import Tokenizer

    from es_rerank.export.torch_scorer import TorchScorer
    from es_rerank.scoring.pair_encoding import PairEncoder

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    encoder = PairEncoder(backend, max_length, query_max_length, int(tokenizer.pad_token_id or 0))
    return TorchScorer(unwrap(model), encoder, input_names(tokenizer), device, batch_size)


@contextlib.contextmanager
def scoring_mode(model: torch.nn.Module, device: torch.device, autocast_dtype: torch.dtype | None):
    """Eval mode (no dropout) and, on a GPU, autocast to `autocast_dtype`; training mode is restored after."""
    was_training = model.training
    model.eval()
    autocast = (torch.autocast("cuda", dtype=autocast_dtype) if autocast_dtype is not None and device.type == "cuda"
                else contextlib.nullcontext())
    try:
        with autocast:
            yield
    finally:
        model.train(was_training)
