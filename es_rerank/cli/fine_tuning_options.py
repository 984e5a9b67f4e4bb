"""Fine-tuning settings that `train` and `adapt` share, as (config field, click type, help) rows.

Both commands turn each row into an option whose default comes from the recipe, so the
optimiser, length and precision knobs read the same in both.
"""

from __future__ import annotations

import click

FINE_TUNING_SETTINGS = [
    ("lr", float, "Peak learning rate of AdamW."),
    ("weight_decay", float, "AdamW weight decay (not applied to biases and LayerNorm)."),
    ("warmup_fraction", float, "Fraction of the steps with a linear LR warmup (then linear decay to 0)."),
    ("max_grad_norm", float, "Clip the gradient norm to this (0: no clipping)."),
    ("max_length", click.IntRange(min=8), "Pair length in tokens (the document is cut to fit)."),
    ("query_max_length", click.IntRange(min=1), "Query length in tokens."),
    ("precision", click.Choice(["auto", "bf16", "fp16", "fp32"]), "Autocast precision; auto: bf16 on GPU, fp32 on CPU."),
    ("dropout", float, "Override every dropout rate of the model (default: keep the model's own)."),
    ("seed", click.IntRange(min=0), "Seed of the head initialisation, the batches and dropout."),
    ("deterministic", bool, "Deterministic kernels: the same seed and data give the same weights (slower on GPU)."),
]
