"""Which queries and documents each training step sees. Torch-free and stateless.

The batch of step `s` is a pure function of (seed, s): every process computes the same global
batch and takes its own slice, a resumed run continues exactly where it stopped, and DataLoader
workers can build any step in any order.

What is sampled from are training units: one query's stored entries. A labelled unit (a group
mined for `es-rerank train`, or a judged group mixed into `es-rerank adapt`) lists its judged
positives, then its BM25 negatives; a pseudo unit (adapt) lists its masked positive, when it
has one, then its BM25 hits, with the teacher's score of every entry.

Units are drawn from an endless stream of per-epoch shuffles, so every step has exactly
`queries_per_step` queries and each unit is seen once per epoch. A labelled unit gets one
positive drawn (column 0, the LCE/BCE target) and `group_size - 1` negatives without
replacement; a pseudo unit keeps its masked positive first (when `include_positive`) and draws
the rest from its hits, in stored order. A unit with fewer entries gives a shorter, ragged
group, which the losses handle.

Example:
    >>> from es_rerank.data.mining import Group
    >>> sampler = GroupSampler([Group("1", ("p",), ("n1", "n2", "n3"))], group_size=3, queries_per_step=2, seed=0)
    >>> [g.doc_ids[0] for g in sampler.step(0)]
    ['p', 'p']
    >>> units = [TrainingUnit("q1", ("positive:q1", "a", "b", "c"), np.array([3.0, 2.0, 1.0, 0.0]), False, True)]
    >>> UnitSampler(units, group_size=3, queries_per_step=1, seed=0).step(0)[0].keys[0]
    'positive:q1'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, TypeVar

import numpy as np

from es_rerank.data.mining import Group
from es_rerank.data.mixture import SEPARATOR, source_of
from es_rerank.errors import ConfigError


@dataclass(frozen=True)
class TrainingUnit:
    """One query's stored entries: text keys, teacher scores (pseudo) or None (labelled).

    For a pseudo unit `has_positive` says whether entry 0 is its masked positive; for a labelled
    unit its `positives` entries come first, then the negatives.
    """

    query_key: str
    keys: tuple[str, ...]
    teacher: np.ndarray | None
    labelled: bool
    has_positive: bool
    positives: int = 1


@dataclass(frozen=True)
class SampledGroup:
    """One query's documents for one step, with their teacher scores (zeros for a labelled unit).

    `positive_first`: entry 0 is the query's own (judged or masked) positive.
    """

    qid: str
    doc_ids: tuple[str, ...]
    teacher: tuple[float, ...] = ()
    labelled: bool = True
    positive_first: bool = True

    @property
    def keys(self) -> tuple[str, ...]:
        """The text keys of the entries: `doc_ids`, where a masked positive's key is no index id."""
        return self.doc_ids

    @property
    def positive(self) -> str:
        return self.doc_ids[0]

    @property
    def negatives(self) -> tuple[str, ...]:
        return self.doc_ids[1:]


class UnitSampler:
    """Samples the global batch of any step from training units."""

    def __init__(self, units: Sequence[TrainingUnit], group_size: int, queries_per_step: int, seed: int,
                 include_positive: bool = True) -> None:
        if not units:
            raise ValueError("no training units; expected at least one query with entries to rank")
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a positive and a negative), got {group_size}")
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

    def step(self, step: int) -> list[SampledGroup]:
        """The global batch of `step`: `queries_per_step` sampled groups."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = step * self.queries_per_step
        return [self._sample(step, slot, self._unit_at(start + slot)) for slot in range(self.queries_per_step)]

    def _unit_at(self, position: int) -> TrainingUnit:
        epoch, offset = divmod(position, len(self.units))
        order = self._epoch_cache.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, 0, epoch)).permutation(len(self.units))
            self._epoch_cache = {epoch: order}  # steps walk forward: one epoch in memory is enough
        return self.units[int(order[offset])]

    def _sample(self, step: int, slot: int, unit: TrainingUnit) -> SampledGroup:
        rng = np.random.default_rng((self.seed, 1, step, slot))
        if unit.labelled:
            first = int(rng.integers(unit.positives))
            pool = np.arange(unit.positives, len(unit.keys))
            picks = [first, *rng.choice(pool, size=min(self.group_size - 1, len(pool)), replace=False).tolist()]
            return SampledGroup(unit.query_key, tuple(unit.keys[i] for i in picks), (0.0,) * len(picks))
        fixed = [0] if unit.has_positive and self.include_positive else []
        pool = np.arange(1 if unit.has_positive else 0, len(unit.keys))
        drawn = rng.choice(pool, size=min(self.group_size - len(fixed), len(pool)), replace=False).tolist()
        picks = fixed + sorted(drawn)
        return SampledGroup(unit.query_key, tuple(unit.keys[i] for i in picks),
                            tuple(float(unit.teacher[i]) for i in picks), False, bool(fixed))


class GroupSampler(UnitSampler):
    """The sampler over groups mined for `es-rerank train` (see `training.data.prepare_groups`):
    labelled units whose negatives are cut to the BM25 top `neg_depth`."""

    def __init__(self, groups: Sequence[Group], group_size: int, queries_per_step: int, seed: int,
                 neg_depth: int | None = None) -> None:
        if not groups:
            raise ValueError("no training groups; expected at least one query with a positive and a negative")
        super().__init__([labelled_unit(g, neg_depth) for g in groups], group_size, queries_per_step, seed)


class JudgedGroup(Protocol):
    """A query's judged positives and BM25-ranked negatives (`mining.Group`, `adapt_groups.LabelledGroup`)."""

    @property
    def qid(self) -> str: ...
    @property
    def positives(self) -> Sequence[str]: ...
    @property
    def negatives(self) -> Sequence[str]: ...


GroupT = TypeVar("GroupT", bound=JudgedGroup)


def repeat_sources(groups: Sequence[GroupT], repeats: Mapping[str, int]) -> list[GroupT]:
    """`groups` with each group of source NAME (query id `NAME:id`, as `es-rerank mix` writes them)
    listed `repeats[NAME]` times in place, so an epoch sees it that often, each time with fresh
    negatives; groups of other sources stay once. Every name must be some group's source.

    Example:
        >>> groups = [Group("scifact:1", ("p",), ("n",)), Group("squad:7", ("p",), ("n",))]
        >>> [g.qid for g in repeat_sources(groups, {"scifact": 3})]
        ['scifact:1', 'scifact:1', 'scifact:1', 'squad:7']
        >>> repeat_sources(groups, {"nfcorpus": 2})
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: source_repeats names nfcorpus, but no training group's query id starts with 'nfcorpus:'; the groups' sources are scifact, squad (name only those sources in source_repeats, or leave it out)
    """
    if not repeats:
        return list(groups)
    present = {source_of(g.qid) for g in groups} - {None}
    unknown = sorted(set(repeats) - present)
    if unknown:
        have = ", ".join(sorted(present)) if present else f"none (no query id holds {SEPARATOR!r}: not a mixture)"
        prefixes = " or ".join(repr(name + SEPARATOR) for name in unknown)
        raise ConfigError(f"source_repeats names {', '.join(unknown)}, but no training group's query id starts with "
                          f"{prefixes}; the groups' sources are {have}",
                          hint="name only those sources in source_repeats, or leave it out")
    return [g for g in groups for _ in range(repeats.get(source_of(g.qid) or "", 1))]


def labelled_unit(group: JudgedGroup, neg_depth: int | None = None, key_prefix: str = "") -> TrainingUnit:
    """The unit of a mined (or any judged) group: its positives, then its first `neg_depth` negatives.

    Example:
        >>> labelled_unit(Group("7", ("p",), ("n1", "n2", "n3")), neg_depth=2).keys
        ('p', 'n1', 'n2')
    """
    if not group.positives or not group.negatives:
        raise ValueError(f"group {group.qid} has {len(group.positives)} positives and "
                         f"{len(group.negatives)} negatives; expected at least one of each")
    negatives = group.negatives if neg_depth is None else group.negatives[:neg_depth]
    return TrainingUnit(key_prefix + group.qid, (*group.positives, *negatives), None, True, True,
                        len(group.positives))


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
