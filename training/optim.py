"""The optimizer (AdamW, or plain SGD), its learning-rate schedule, and the autocast precision of a run.

Example:
    >>> resolve_precision("fp32", torch.device("cpu")) is None
    True
"""

from __future__ import annotations

import torch

from es_rerank.errors import ConfigError
from es_rerank.training.config import FineTuningConfig


def build_optimizer(model: torch.nn.Module, config: FineTuningConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights get no weight decay (the usual BERT fine-tuning setup).

    `optimizer: sgd` is plain SGD (no momentum), whose update is linear in the gradient: it makes
    checks such as "N processes compute the update one process computes" exact arithmetic.
    """
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.dim() < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr, fused=device.type == "cuda")


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """LR multiplier rising linearly over `warmup_steps`, then falling linearly to 0 at `total_steps`.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = linear_warmup(opt, 2, 4)
        >>> [round(sched.lr_lambdas[0](s), 2) for s in range(5)]
        [0.5, 1.0, 0.67, 0.33, 0.0]
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps + 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None: plain fp32).

    Example:
        >>> resolve_precision("auto", torch.device("cpu")) is None
        True
    """
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "auto":
            return None
        raise ConfigError(f"precision {precision} needs a CUDA GPU; this run is on the CPU",
                          hint="use precision fp32 (or auto) on the CPU")
    if precision == "fp16":
        return torch.float16
    if precision == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16
