"""The two training losses, over score grids of shape (queries, group_size).

Column 0 of each row is the query's positive, the other columns its sampled negatives; `mask`
marks the real entries, so a group with fewer negatives (a ragged group) is simply shorter.
Both return one loss per query; the training step sums them and divides by the normaliser of
the whole global batch (`normaliser`), so that micro-batches and processes add up to the same
loss a single process would compute.

- LCE (Gao et al. 2021, "Rethink training of BERT rerankers in multi-stage retrieval
  pipeline"): softmax cross-entropy of the positive against its group.
- BCE (Nogueira & Cho 2019, monoBERT): binary cross-entropy of every pair, label 1 for the
  positive and 0 for negatives. With `balanced` (the default) the positive and the mean of the
  negatives weigh half each, as in monoBERT's 1:1 triples; without it every pair weighs the
  same, so a group of 1 positive and N-1 negatives pulls N-1 times harder towards "not relevant".

Example:
    >>> import torch
    >>> scores = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> mask = torch.ones(2, 2, dtype=torch.bool)
    >>> [round(v, 4) for v in lce_loss(scores, mask).tolist()]   # -log softmax of column 0
    [0.1269, 0.6931]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
