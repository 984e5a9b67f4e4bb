"""Which groups and entries each adapt step trains on. Torch-free and stateless.

The batch of step `s` is a function of (seed, s) alone, so a resumed run continues exactly
where it stopped. Units (pseudo groups and labelled groups together) are drawn from an endless
stream of per-epoch shuffles; each step takes `queries_per_step` of them.

For a pseudo group the masked positive is kept (when `include_positive`) and the other
`group_size - 1` entries are drawn without replacement from its BM25 hits; the teacher scores
travel with the entries. For a labelled group the entries are one judged positive (column 0,
the LCE target) and `group_size - 1` of its negatives.

Example:
    >>> units = [TrainingUnit("q1", ("positive:q1", "a", "b", "c"), np.array([3.0, 2.0, 1.0, 0.0]), False, True)]
    >>> sampler = UnitSampler(units, group_size=3, queries_per_step=1, seed=0)
    >>> sampler.step(0)[0].keys[0]
    'positive:q1'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class TrainingUnit:
    """One query's stored entries: text keys in score order, teacher scores (pseudo) or None (labelled).

    For a pseudo unit `has_positive` says whether entry 0 is its masked positive; for a labelled
    unit `positives` entries come first, then the negatives.
    """

    query_key: str
    keys: tuple[str, ...]
    teacher: np.ndarray | None
    labelled: bool
    has_positive: bool
    positives: int = 1


@dataclass(frozen=True)
class SampledUnit:
    """One query's entries for one step, with their teacher scores (zeros for a labelled unit).

    `positive_first`: entry 0 is the query's own (masked or judged) positive.
    """

    query_key: str
    keys: tuple[str, ...]
    teacher: tuple[float, ...]
    labelled: bool
    positive_first: bool = False


class UnitSampler:
    """Samples the global batch of any step from the training units."""

    def __init__(self, units: Sequence[TrainingUnit], group_size: int, queries_per_step: int, seed: int,
                 include_positive: bool = True) -> None:
        if not units:
            raise ValueError("no training units; expected at least one prepared group")
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2, got {group_size}")
        if queries_per_step < 1:
            raise ValueError(f"queries_per_step must be at least 1, got {queries_per_step}")
        self.units = list(units)
        self.group_size = group_size
        self.queries_per_step = queries_per_step
        self.seed = seed
        self.include_positive = include_positive
        self._epoch_cache: dict[int, np.ndarray] = {}

    def steps_for(self, epochs: float) -> int:
        """Steps that visit every unit `epochs` times (at least one step).

        Example:
            >>> UnitSampler([TrainingUnit("q", ("a", "b"), np.zeros(2), False, False)] * 10, 2, 4, 0).steps_for(2)
            5
        """
        return max(1, int(np.ceil(epochs * len(self.units) / self.queries_per_step)))

    def step(self, step: int) -> list[SampledUnit]:
        """The global batch of `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = step * self.queries_per_step
        return [self._sample(step, slot, self._unit_at(start + slot)) for slot in range(self.queries_per_step)]

    def _unit_at(self, position: int) -> TrainingUnit:
        epoch, offset = divmod(position, len(self.units))
        order = self._epoch_cache.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, 0, epoch)).permutation(len(self.units))
            self._epoch_cache = {epoch: order}
        return self.units[int(order[offset])]

    def _sample(self, step: int, slot: int, unit: TrainingUnit) -> SampledUnit:
        rng = np.random.default_rng((self.seed, 1, step, slot))
        if unit.labelled:
            first = int(rng.integers(unit.positives))
            pool = np.arange(unit.positives, len(unit.keys))
            picks = [first, *rng.choice(pool, size=min(self.group_size - 1, len(pool)), replace=False).tolist()]
            return SampledUnit(unit.query_key, tuple(unit.keys[i] for i in picks), (0.0,) * len(picks), True, True)
        fixed = [0] if unit.has_positive and self.include_positive else []
        pool = np.arange(1 if unit.has_positive else 0, len(unit.keys))
        drawn = rng.choice(pool, size=min(self.group_size - len(fixed), len(pool)), replace=False).tolist()
        picks = fixed + sorted(drawn)
        return SampledUnit(unit.query_key, tuple(unit.keys[i] for i in picks),
                           tuple(float(unit.teacher[i]) for i in picks), False, bool(fixed))
