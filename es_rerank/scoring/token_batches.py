"""Token ids of many sequences, kept end to end, and cut into padded batches for a model.

A window of 100 pairs is one `PackedPairs`: three flat arrays (ids, type ids, lengths) instead
of 100 small objects, so encoding, the model server's frame and padding each touch the window
with a handful of NumPy calls whatever its size. It still reads as a sequence of `EncodedPair`
for code that looks at one pair at a time.

Example:
    >>> packed = PackedPairs.of([EncodedPair([101, 7, 102], [0, 0, 0]), EncodedPair([101, 102], [0, 1])])
    >>> len(packed), packed[1].type_ids.tolist(), packed.lengths.tolist()
    (2, [0, 1], [3, 2])
    >>> [(b.rows.tolist(), b.input_ids.tolist()) for b in batch_by_length(packed, 2, pad_id=0, max_width=3)]
    [([1, 0], [[101, 102, 0], [101, 7, 102]])]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, overload

import numpy as np

# Batches are padded to a multiple of this many tokens: fewer distinct shapes for the runtime
# to plan for, and tensor-core friendly widths on GPUs.
PAD_MULTIPLE = 8
# Token ids as the tokenizer's output is kept (cached documents, encoded pairs): half of int64's
# memory; batches are widened to the int64 the exported models take.
TOKEN_DTYPE = np.int32


@dataclass(frozen=True, eq=False)
class EncodedPair:
    """One sequence's token ids and token type ids (segment ids), unpadded: a (query, document)
    pair for the cross-encoder, one text for the bi-encoder. Lists or arrays; equal by value.

    Example:
        >>> EncodedPair(np.array([101, 102]), np.array([0, 0])) == EncodedPair([101, 102], [0, 0])
        True
    """

    ids: np.ndarray | Sequence[int]
    type_ids: np.ndarray | Sequence[int]

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, EncodedPair) and np.array_equal(self.ids, other.ids)
                and np.array_equal(self.type_ids, other.type_ids))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside


class PackedPairs(Sequence[EncodedPair]):
    """Sequences end to end: `ids` and `type_ids` (int32, every sequence's tokens in order) and
    `lengths` (int64, one per sequence). Indexing gives an `EncodedPair` of views; equal to any
    sequence of pairs with the same ids and type ids.

    Example:
        >>> PackedPairs(np.array([1, 2, 3], np.int32), np.zeros(3, np.int32), np.array([2, 2]))
        Traceback (most recent call last):
        ...
        ValueError: the lengths of 2 sequences add up to 4 tokens, but 3 ids and 3 type ids were given
    """

    __slots__ = ("ids", "type_ids", "lengths", "starts")

    def __init__(self, ids: np.ndarray, type_ids: np.ndarray, lengths: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=TOKEN_DTYPE)
        self.type_ids = np.asarray(type_ids, dtype=TOKEN_DTYPE)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        total = int(self.lengths.sum())
        if (self.lengths < 0).any() or total != len(self.ids) or total != len(self.type_ids):
            raise ValueError(f"the lengths of {len(self.lengths)} sequences add up to {total} tokens, but "
                             f"{len(self.ids)} ids and {len(self.type_ids)} type ids were given")
        self.starts = np.cumsum(self.lengths) - self.lengths

    @classmethod
    def of(cls, pairs: Sequence[EncodedPair]) -> "PackedPairs":
        """`pairs` packed (returned as they are when already packed).

        Example:
            >>> PackedPairs.of([]).lengths.tolist()
            []
        """
        if isinstance(pairs, PackedPairs):
            return pairs
        lengths = np.fromiter((len(p) for p in pairs), dtype=np.int64, count=len(pairs))
        if not len(pairs):
            empty = np.zeros(0, TOKEN_DTYPE)
            return cls(empty, empty, lengths)
        return cls(np.concatenate([np.asarray(p.ids, dtype=TOKEN_DTYPE) for p in pairs]),
                   np.concatenate([np.asarray(p.type_ids, dtype=TOKEN_DTYPE) for p in pairs]), lengths)

    @classmethod
    def concat(cls, parts: Sequence[Sequence[EncodedPair]]) -> "PackedPairs":
        """Several windows as one, in order: how the model server merges its workers' requests.

        Example:
            >>> one = PackedPairs.of([EncodedPair([5, 6], [0, 0])])
            >>> [p.ids.tolist() for p in PackedPairs.concat([one, [EncodedPair([7], [1])]])]
            [[5, 6], [7]]
        """
        packs = [cls.of(part) for part in parts]
        if len(packs) == 1:
            return packs[0]
        if not packs:
            return cls.of([])
        return cls(np.concatenate([p.ids for p in packs]), np.concatenate([p.type_ids for p in packs]),
                   np.concatenate([p.lengths for p in packs]))

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> EncodedPair: ...

    @overload
    def __getitem__(self, index: slice) -> "PackedPairs": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            rows = np.arange(len(self))[index]
            ids, type_ids = self.gather(rows)
            return PackedPairs(ids, type_ids, self.lengths[rows])
        start, length = int(self.starts[index]), int(self.lengths[index])
        return EncodedPair(self.ids[start:start + length], self.type_ids[start:start + length])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)) or len(other) != len(self):
            return False
        return all(isinstance(o, EncodedPair) and o == p for o, p in zip(other, self))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackedPairs({len(self)} sequences, {len(self.ids)} tokens)"

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids and type ids of sequences `rows`, end to end in that order, in one indexing each."""
        lengths = self.lengths[rows]
        out_starts = np.cumsum(lengths) - lengths
        index = np.arange(int(lengths.sum())) + np.repeat(self.starts[rows] - out_starts, lengths)
        return self.ids[index], self.type_ids[index]


def concat_encoded(parts: Sequence[Sequence]) -> Sequence:
    """Several searches' encoded windows as one model call's input: packed when every part is
    packed, else one list (a scorer's own encoding, e.g. a test's).

    Example:
        >>> concat_encoded([[1, 2], [3]])
        [1, 2, 3]
    """
    if all(isinstance(part, PackedPairs) for part in parts):
        return PackedPairs.concat(parts)
    return [item for part in parts for item in part]


@dataclass(frozen=True)
class EncodedBatch:
    """A padded batch: int64 arrays of shape (rows, width), and where each row came from.

    `rows[i]` is the position, in the caller's input, of the sequence in row `i`.

    Example:
        >>> batch = EncodedBatch.pad([EncodedPair([101, 7, 102], [0, 0, 0])], np.array([0]), pad_id=0, multiple=4)
        >>> batch.input_ids.tolist(), batch.attention_mask.tolist()
        ([[101, 7, 102, 0]], [[1, 1, 1, 0]])
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    rows: np.ndarray

    @classmethod
    def pad(cls, pairs: Sequence[EncodedPair], rows: np.ndarray, pad_id: int, multiple: int = 1,
            max_width: int | None = None) -> "EncodedBatch":
        """Sequences `rows` of `pairs`, in that order, padded to the longest of them rounded up to
        `multiple` (never past `max_width`)."""
        packed = PackedPairs.of(pairs)
        rows = np.asarray(rows, dtype=np.int64)
        lengths = packed.lengths[rows]
        longest = int(lengths.max()) if len(rows) else 1
        width = -(-longest // multiple) * multiple
        if max_width is not None:
            width = max(longest, min(width, max_width))
        # Row-major order of the mask's true cells is the order of the gathered tokens, so each
        # array is filled with one scatter instead of one copy per row.
        mask = np.arange(width) < lengths[:, None]
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        if len(rows):
            input_ids[mask], token_type_ids[mask] = packed.gather(rows)
        return cls(input_ids, mask.astype(np.int64), token_type_ids, rows)

    def arrays(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The model inputs by name, e.g. ("input_ids", "attention_mask").

        Example:
            >>> b = EncodedBatch.pad([EncodedPair([5], [0])], np.array([0]), pad_id=0)
            >>> sorted(b.arrays(["input_ids", "attention_mask"]))
            ['attention_mask', 'input_ids']
        """
        known = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                 "token_type_ids": self.token_type_ids}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown model input(s) {unknown}; expected some of {sorted(known)}")
        return {name: known[name] for name in names}

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape


def batch_by_length(pairs: Sequence[EncodedPair], batch_size: int, pad_id: int,
                    max_width: int | None = None, max_tokens: int | None = None) -> Iterator[EncodedBatch]:
    """Sort sequences by length and cut the sorted list into padded batches of at most `batch_size`
    rows and, with `max_tokens`, at most that many padded tokens, so short sequences are not
    padded to the longest one in the call and a batch of long ones stays within a memory budget.

    Example:
        >>> pairs = [EncodedPair([1] * n, [0] * n) for n in (9, 2, 8, 3)]
        >>> [(b.rows.tolist(), b.shape[1]) for b in batch_by_length(pairs, 2, pad_id=0)]
        [([1, 3], 8), ([2, 0], 16)]
        >>> [b.rows.tolist() for b in batch_by_length(pairs, 4, pad_id=0, max_tokens=16)]
        [[1, 3], [2], [0]]
    """
    packed = PackedPairs.of(pairs)
    for rows in plan_batches(packed.lengths, batch_size, max_width, max_tokens):
        yield EncodedBatch.pad(packed, rows, pad_id, PAD_MULTIPLE, max_width)


def plan_batches(lengths: np.ndarray, batch_size: int, max_width: int | None = None,
                 max_tokens: int | None = None) -> list[np.ndarray]:
    """Row groups of `lengths`, shortest first: each at most `batch_size` rows and, with
    `max_tokens`, at most that many tokens once padded as `EncodedBatch.pad` pads (a row longer
    than the budget gets a batch of its own).

    Example:
        >>> [g.tolist() for g in plan_batches(np.array([200, 10, 12, 190]), 64, max_tokens=300)]
        [[1, 2], [3], [0]]
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    order = np.argsort(lengths, kind="stable")
    if max_tokens is None:
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    sorted_lengths = lengths[order]
    widths = -(-sorted_lengths // PAD_MULTIPLE) * PAD_MULTIPLE
    if max_width is not None:
        widths = np.maximum(sorted_lengths, np.minimum(widths, max_width))
    groups, start = [], 0
    while start < len(order):
        end = min(start + batch_size, len(order))
        # Sorted ascending, so a group's padded width is its last row's: rows * width must fit.
        fits = np.nonzero(widths[start:end] * np.arange(1, end - start + 1) <= max_tokens)[0]
        end = start + (int(fits[-1]) + 1 if len(fits) else 1)
        groups.append(order[start:end])
        start = end
    return groups
