"""Which queries and documents each training step sees. Torch-free and stateless.

The batch of step `s` is a pure function of (seed, s): every process computes the same global
batch and takes its own slice, a resumed run continues exactly where it stopped, and DataLoader
workers can build any step in any order.

Queries are drawn from an endless stream of per-epoch shuffles, so every step has exactly
`queries_per_step` queries and each query is seen once per epoch. For each query one judged
positive is drawn, and `group_size - 1` negatives without replacement from its BM25 top
`neg_depth` (all of them when it has fewer: that group is shorter, which the losses handle).

Example:
    >>> from es_rerank.mining import Group
    >>> sampler = GroupSampler([Group("1", ("p",), ("n1", "n2", "n3"))], group_size=3, queries_per_step=2, seed=0)
    >>> [g.doc_ids[0] for g in sampler.step(0)]
    ['p', 'p']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from es_rerank.mining import Group


@dataclass(frozen=True)
class SampledGroup:
    """One query's documents for one step: the positive first, then the negatives."""

    qid: str
    doc_ids: tuple[str, ...]

    @property
    def positive(self) -> str:
        return self.doc_ids[0]

    @property
    def negatives(self) -> tuple[str, ...]:
        return self.doc_ids[1:]


class GroupSampler:
    """Samples the global batch of any step from prepared groups (see `training.data.prepare_groups`)."""

    def __init__(self, groups: Sequence[Group], group_size: int, queries_per_step: int, seed: int,
                 neg_depth: int | None = None) -> None:
        if not groups:
            raise ValueError("no training groups; expected at least one query with a positive and a negative")
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a positive and a negative), got {group_size}")
        if queries_per_step < 1:
            raise ValueError(f"queries_per_step must be at least 1, got {queries_per_step}")
        for group in groups:
            if not group.positives or not group.negatives:
                raise ValueError(f"group {group.qid} has {len(group.positives)} positives and "
                                 f"{len(group.negatives)} negatives; expected at least one of each")
        self.groups = list(groups)
        self.group_size = group_size
        self.queries_per_step = queries_per_step
        self.seed = seed
        self.neg_depth = neg_depth
        self._epoch_cache: dict[int, np.ndarray] = {}

    def step(self, step: int) -> list[SampledGroup]:
        """The global batch of `step`: `queries_per_step` sampled groups."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = step * self.queries_per_step
        return [self._sample(step, slot, self._group_at(start + slot)) for slot in range(self.queries_per_step)]

    def _group_at(self, position: int) -> Group:
        epoch, offset = divmod(position, len(self.groups))
        order = self._epoch_cache.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, 0, epoch)).permutation(len(self.groups))
            self._epoch_cache = {epoch: order}  # steps walk forward: one epoch in memory is enough
        return self.groups[int(order[offset])]

    def _sample(self, step: int, slot: int, group: Group) -> SampledGroup:
        rng = np.random.default_rng((self.seed, 1, step, slot))
        positive = group.positives[int(rng.integers(len(group.positives)))]
        pool = group.negatives if self.neg_depth is None else group.negatives[:self.neg_depth]
        picks = rng.choice(len(pool), size=min(self.group_size - 1, len(pool)), replace=False)
        return SampledGroup(group.qid, (positive, *(pool[int(i)] for i in picks)))


def shard(batch: Sequence[SampledGroup], rank: int, world_size: int, grad_accum: int) -> list[list[SampledGroup]]:
    """This process's micro-batches of a global batch: a contiguous slice split into `grad_accum` parts.

    Together the ranks' micro-batches cover the global batch exactly once, so averaging their
    gradients gives the gradient a single process would compute.

    Example:
        >>> batch = [SampledGroup(str(i), ("p", "n")) for i in range(8)]
        >>> [[g.qid for g in mb] for mb in shard(batch, rank=1, world_size=2, grad_accum=2)]
        [['4', '5'], ['6', '7']]
    """
    parts = world_size * grad_accum
    if len(batch) % parts:
        raise ValueError(f"a batch of {len(batch)} queries does not split into {world_size} processes x "
                         f"{grad_accum} micro-batches")
    size = len(batch) // parts
    mine = batch[rank * size * grad_accum:(rank + 1) * size * grad_accum]
    return [list(mine[i * size:(i + 1) * size]) for i in range(grad_accum)]
