"""Distillation losses over score grids of shape (queries, group_size), with a mask of real entries.

- `kl`: listwise KL divergence from the teacher's softmax at temperature T to the student's
  softmax, over each group. Scale-free in the student (only its order and spread matter) and
  the usual choice for listwise distillation of rankers.
- `margin_mse` (Hofstätter et al. 2020, "Improving efficient neural ranking models with
  cross-architecture knowledge distillation"): mean squared error between student and teacher
  score margins, here over every pair of the group rather than (positive, negative) pairs only,
  since a pseudo group's best entry is the teacher's call, not a label. It equals
  `2 / (n - 1) * sum_i ((s_i - t_i) - mean(s - t))^2`, which is how it is computed.

Both return one loss per query; groups may be ragged (fewer real entries than columns).

Example:
    >>> import torch
    >>> student = torch.tensor([[1.0, 0.0, 0.0]])
    >>> mask = torch.ones(1, 3, dtype=torch.bool)
    >>> round(kl_loss(student, student.clone(), mask, 1.0).item(), 6)
    0.0
    >>> margin_mse_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool), 1.0)
    tensor([1.])
"""

from __future__ import annotations

import torch

from es_rerank.training.losses import lce_loss


def kl_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-query KL(softmax(teacher / T) || softmax(student)) over the real entries.

    Example:
        >>> s, t = torch.zeros(1, 2), torch.tensor([[10.0, 0.0]])
        >>> round(kl_loss(s, t, torch.ones(1, 2, dtype=torch.bool), 1.0).item(), 4)   # log 2 - H(teacher)
        0.6926
    """
    _check(student, teacher, mask)
    student = student.float().masked_fill(~mask, float("-inf"))
    teacher = (teacher.float() / temperature).masked_fill(~mask, float("-inf"))
    log_p_teacher = torch.log_softmax(teacher, dim=1)
    log_p_student = torch.log_softmax(student, dim=1)
    terms = torch.where(mask, log_p_teacher.exp() * (log_p_teacher - log_p_student), torch.zeros_like(student))
    return terms.sum(dim=1)


def margin_mse_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-query mean over pairs (i, j) of ((s_i - s_j) - scale * (t_i - t_j))^2.

    Example:
        >>> s = torch.tensor([[3.0, 1.0, 0.0]]); t = torch.tensor([[2.0, 1.0, 0.0]])
        >>> margin_mse_loss(s, t, torch.ones(1, 3, dtype=torch.bool), 1.0)   # margins (2,3,1) vs (1,2,1)
        tensor([0.6667])
    """
    _check(student, teacher, mask)
    weight = mask.float()
    n = weight.sum(dim=1)
    error = (student.float() - scale * teacher.float()) * weight
    mean = error.sum(dim=1) / n.clamp(min=1)
    centred = (error - mean[:, None]) * weight
    return 2.0 * (centred ** 2).sum(dim=1) / (n - 1).clamp(min=1)


def distill_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                 temperature: float, margin_scale: float) -> torch.Tensor:
    """Per-query loss of `kind` ("kl" or "margin_mse")."""
    if kind == "kl":
        return kl_loss(student, teacher, mask, temperature)
    if kind == "margin_mse":
        return margin_mse_loss(student, teacher, mask, margin_scale)
    raise ValueError(f"loss must be 'kl' or 'margin_mse', got {kind!r}")


def mixed_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, labelled: torch.Tensor,
               temperature: float, margin_scale: float, labelled_weight: float,
               positive_weight: float = 0.0, positive_first: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-query loss, per-query distillation part).

    Pseudo rows: distillation, plus `positive_weight` x LCE with the masked positive (column 0)
    as the target on rows whose `positive_first` is set (all rows when it is None). Labelled
    rows: `labelled_weight` x LCE with the judged positive (column 0).

    Example:
        >>> s = torch.tensor([[2.0, 0.0], [0.0, 0.0]]); m = torch.ones(2, 2, dtype=torch.bool)
        >>> loss, _ = mixed_loss("kl", s, torch.zeros(2, 2), m, torch.tensor([False, True]), 1.0, 1.0, 1.0)
        >>> [round(v, 4) for v in loss.tolist()]
        [0.4338, 0.6931]
    """
    distill = distill_loss(kind, student, teacher, mask, temperature, margin_scale)
    pseudo = distill
    if positive_weight > 0:
        hard = positive_weight * lce_loss(student, mask)
        pseudo = distill + (hard if positive_first is None else torch.where(positive_first, hard, 0.0))
    if not bool(labelled.any()):
        return pseudo, distill
    hard = lce_loss(student, mask) * labelled_weight
    return torch.where(labelled, hard, pseudo), torch.where(labelled, torch.zeros_like(distill), distill)


def _check(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> None:
    if student.dim() != 2 or student.shape != teacher.shape or student.shape != mask.shape:
        raise ValueError(f"expected student, teacher and mask of one shape (queries, group_size), got "
                         f"{tuple(student.shape)}, {tuple(teacher.shape)} and {tuple(mask.shape)}")
