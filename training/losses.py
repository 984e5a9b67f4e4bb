"""The training objectives and their losses, over score grids of shape (queries, group_size).

`mask` marks the real entries of each row, so a group with fewer entries (a ragged group) is
simply shorter. Every loss returns one value per query; the training step sums them and
divides by the normaliser of the whole global batch (`Objective.normaliser`), so that
micro-batches and processes add up to the same loss a single process would compute.

Two objectives plug into the one training loop (`training.loop`):

- `Supervised` (`es-rerank train`): column 0 of each row is the query's judged positive, the
  other columns its sampled negatives; LCE or BCE.
- `Distillation` (`es-rerank adapt`): the student learns a teacher's scores of each group
  (listwise KL or Margin-MSE); rows of judged groups, when the batch has them, add LCE.

Supervised losses:

- LCE (Gao et al. 2021, "Rethink training of BERT rerankers in multi-stage retrieval
  pipeline"): softmax cross-entropy of the positive against its group.
- BCE (Nogueira & Cho 2019, monoBERT): binary cross-entropy of every pair, label 1 for the
  positive and 0 for negatives. With `balanced` (the default) the positive and the mean of the
  negatives weigh half each, as in monoBERT's 1:1 triples; without it every pair weighs the
  same, so a group of 1 positive and N-1 negatives pulls N-1 times harder towards "not relevant".

Distillation losses:

- `kl`: listwise KL divergence from the teacher's softmax at temperature T to the student's
  softmax, over each group. Scale-free in the student (only its order and spread matter) and
  the usual choice for listwise distillation of rankers.
- `margin_mse` (Hofstätter et al. 2020, "Improving efficient neural ranking models with
  cross-architecture knowledge distillation"): mean squared error between student and teacher
  score margins, here over every pair of the group rather than (positive, negative) pairs only,
  since a pseudo group's best entry is the teacher's call, not a label. It equals
  `2 / (n - 1) * sum_i ((s_i - t_i) - mean(s - t))^2`, which is how it is computed.

Example:
    >>> import torch
    >>> scores = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> mask = torch.ones(2, 2, dtype=torch.bool)
    >>> [round(v, 4) for v in lce_loss(scores, mask).tolist()]   # -log softmax of column 0
    [0.1269, 0.6931]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

import torch
import torch.nn.functional as F


class Objective(Protocol):
    """What the training loop minimises, given the student's score grid and the batch's grids."""

    def losses(self, scores: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-query values: "loss" (trained on) and any parts worth logging, NaN where a part does not apply."""

    def normaliser(self, n_queries: int, n_pairs: int) -> int:
        """What the summed per-query losses of a whole global batch are divided by."""


@dataclass(frozen=True)
class Supervised:
    """LCE or BCE against judged positives (column 0 of each row).

    Example:
        >>> grid = {"mask": torch.ones(1, 2, dtype=torch.bool)}
        >>> round(Supervised("lce", True).losses(torch.tensor([[0.0, 0.0]]), grid)["loss"].item(), 4)
        0.6931
    """

    kind: str
    balanced: bool = True

    def losses(self, scores: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": group_loss(self.kind, scores, batch["mask"], self.balanced)}

    def normaliser(self, n_queries: int, n_pairs: int) -> int:
        return normaliser(self.kind, self.balanced, n_queries, n_pairs)


@dataclass(frozen=True)
class Distillation:
    """KL or Margin-MSE to the batch's `teacher` grid; rows marked `labelled` train LCE instead.

    Logs its distillation part (`distill`) over the rows that distil.

    Example:
        >>> grid = {"mask": torch.ones(2, 2, dtype=torch.bool), "teacher": torch.zeros(2, 2),
        ...         "labelled": torch.tensor([False, True]), "positive_first": torch.tensor([True, True])}
        >>> parts = Distillation("kl").losses(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), grid)
        >>> [round(v, 4) for v in parts["loss"].tolist()], parts["distill"].isnan().tolist()
        ([0.4338, 0.6931], [False, True])
    """

    kind: str
    temperature: float = 1.0
    margin_scale: float = 1.0
    labelled_weight: float = 1.0
    positive_weight: float = 0.0

    def losses(self, scores: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labelled = batch["labelled"]
        loss, distill = mixed_loss(self.kind, scores, batch["teacher"], batch["mask"], labelled, self.temperature,
                                   self.margin_scale, self.labelled_weight, self.positive_weight,
                                   batch["positive_first"])
        return {"loss": loss, "distill": distill.masked_fill(labelled, float("nan"))}

    def normaliser(self, n_queries: int, n_pairs: int) -> int:
        return n_queries


def lce_loss(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-query `-log softmax(scores)[0]` over the real entries of each row.

    Example:
        >>> lce_loss(torch.tensor([[1.0, 1.0, 5.0]]), torch.tensor([[True, True, False]])).tolist()
        [0.6931471824645996]
    """
    _check(scores, mask)
    masked = scores.float().masked_fill(~mask, float("-inf"))
    return torch.logsumexp(masked, dim=1) - masked[:, 0]


def bce_loss(scores: torch.Tensor, mask: torch.Tensor, balanced: bool = True) -> torch.Tensor:
    """Per-query binary cross-entropy with labels (1, 0, 0, ...).

    balanced: `0.5 * bce(positive) + 0.5 * mean(bce(negatives))`; otherwise the sum over the
    query's pairs (the training step then divides by the number of pairs in the batch).

    Example:
        >>> round(bce_loss(torch.tensor([[0.0, 0.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool)).item(), 4)
        0.6931
        >>> round(bce_loss(torch.tensor([[0.0, 0.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool), False).item(), 4)
        2.0794
    """
    _check(scores, mask)
    scores = scores.float()
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1.0
    pair_losses = F.binary_cross_entropy_with_logits(scores, labels, reduction="none") * mask
    if not balanced:
        return pair_losses.sum(dim=1)
    n_neg = (mask[:, 1:].sum(dim=1)).clamp(min=1)
    return 0.5 * pair_losses[:, 0] + 0.5 * pair_losses[:, 1:].sum(dim=1) / n_neg


def group_loss(kind: str, scores: torch.Tensor, mask: torch.Tensor, balanced: bool = True) -> torch.Tensor:
    """Per-query loss of `kind` ("lce" or "bce")."""
    if kind == "lce":
        return lce_loss(scores, mask)
    if kind == "bce":
        return bce_loss(scores, mask, balanced)
    raise ValueError(f"loss must be 'lce' or 'bce', got {kind!r}")


def normaliser(kind: str, balanced: bool, n_queries: int, n_pairs: int) -> int:
    """What the summed per-query losses of a whole global batch are divided by: queries, or for
    unbalanced BCE (a mean over pairs) pairs.

    Example:
        >>> normaliser("lce", True, 32, 256), normaliser("bce", False, 32, 64)
        (32, 64)
    """
    return n_pairs if kind == "bce" and not balanced else n_queries


def _check(scores: torch.Tensor, mask: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape != mask.shape:
        raise ValueError(f"expected scores and mask of the same shape (queries, group_size), got "
                         f"{tuple(scores.shape)} and {tuple(mask.shape)}")
    if scores.shape[1] < 2:
        raise ValueError(f"a group needs a positive and at least one negative; got group width {scores.shape[1]}")
    # That column 0 (the positive) is always real is the batch builder's promise; checking it
    # here would make the GPU wait for the host on every step.


def kl_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-query KL(softmax(teacher / T) || softmax(student)) over the real entries.

    Example:
        >>> s, t = torch.zeros(1, 2), torch.tensor([[10.0, 0.0]])
        >>> round(kl_loss(s, t, torch.ones(1, 2, dtype=torch.bool), 1.0).item(), 4)   # log 2 - H(teacher)
        0.6926
    """
    _check_distill(student, teacher, mask)
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
    _check_distill(student, teacher, mask)
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


def _check_distill(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> None:
    if student.dim() != 2 or student.shape != teacher.shape or student.shape != mask.shape:
        raise ValueError(f"expected student, teacher and mask of one shape (queries, group_size), got "
                         f"{tuple(student.shape)}, {tuple(teacher.shape)} and {tuple(mask.shape)}")
