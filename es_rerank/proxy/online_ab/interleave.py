"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008) and click credit.

Two teams pick documents in turns like captains picking players: the team with fewer picks
goes next, and a coin decides when both have as many. Each team picks its highest-ranked
document not already in the merged list, so a document both lists hold (a duplicate) appears
once, credited to the team that picked it. When one list runs out, the other keeps picking.
Clicks then go to the team that contributed the clicked document; the team with more clicks
wins that search.

Hand-worked: A = [a, b, c], B = [b, d, a], coins say A first, then B first::

    round 1: A picks a, B picks b          -> a(A) b(B)
    round 2: B picks d (b is taken), A picks c (b is taken) -> d(B) c(A)

Example:
    >>> merged = team_draft(["a", "b", "c"], ["b", "d", "a"], coins=[True, False])
    >>> list(zip(merged.ids, merged.teams))
    [('a', 'rerank'), ('b', 'bm25'), ('d', 'bm25'), ('c', 'rerank')]
    >>> credit(merged.teams, clicked_positions=[1, 4])
    {'rerank': 2, 'bm25': 0}
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Hashable, Iterable, Iterator, Sequence, TypeVar

from es_rerank.evaluation.protocol import BM25, RERANK

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Interleaved:
    """The merged ranking and, position by position, the team that contributed each item."""

    ids: list
    teams: list[str]


def team_draft(a: Sequence[K], b: Sequence[K], coins: Iterable[bool], length: int | None = None,
               teams: tuple[str, str] = (RERANK, BM25)) -> Interleaved:
    """Merge rankings `a` and `b`; `coins` yields True when team `a` picks first in a tied round.

    `length` caps the merged list (default: every distinct item of both lists).

    Example:
        >>> team_draft(["x", "y"], ["x", "y"], coins=[False]).teams
        ['bm25', 'rerank']
    """
    if teams[0] == teams[1]:
        raise ValueError(f"the two teams need different names, got {teams}")
    limit = len(set(a) | set(b)) if length is None else length
    if limit < 0:
        raise ValueError(f"length must be zero or positive, got {length}")
    coin_iter: Iterator[bool] = iter(coins)
    merged: list = []
    credited: list[str] = []
    placed: set = set()
    cursors = [0, 0]
    picks = [0, 0]
    lists = (a, b)
    while len(merged) < limit:
        has_next = [_advance(lists[i], cursors, i, placed) for i in (0, 1)]
        if not any(has_next):
            break
        if not has_next[0] or not has_next[1]:
            team = 0 if has_next[0] else 1      # one list is exhausted: the other keeps picking
        elif picks[0] != picks[1]:
            team = 0 if picks[0] < picks[1] else 1
        else:
            try:
                team = 0 if next(coin_iter) else 1
            except StopIteration:
                raise ValueError("ran out of coin flips; pass an endless source such as seeded_coins(...)") from None
        item = lists[team][cursors[team]]
        merged.append(item)
        credited.append(teams[team])
        placed.add(item)
        picks[team] += 1
    return Interleaved(merged, credited)


def _advance(ranking: Sequence, cursors: list[int], i: int, placed: set) -> bool:
    """Move cursor `i` past items already placed (or repeated in its own list); True if one is left."""
    while cursors[i] < len(ranking) and ranking[cursors[i]] in placed:
        cursors[i] += 1
    return cursors[i] < len(ranking)


def seeded_coins(seed: str) -> Iterator[bool]:
    """An endless, reproducible coin sequence from a string seed.

    Seeding with the user key and the query text gives every page of one search the same merge,
    so page 2 neither repeats nor skips a page-1 hit.

    Example:
        >>> first, again = seeded_coins("user-42|gene therapy"), seeded_coins("user-42|gene therapy")
        >>> [next(first) for _ in range(8)] == [next(again) for _ in range(8)]
        True
    """
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big"))
    while True:
        yield rng.random() < 0.5


def credit(teams: Sequence[str], clicked_positions: Iterable[int],
           names: tuple[str, str] = (RERANK, BM25)) -> dict[str, int]:
    """Clicks per team; `clicked_positions` are 1-based positions in the merged list, each counted once.

    Example:
        >>> credit(["rerank", "bm25", "rerank"], [3, 3, 9])
        {'rerank': 1, 'bm25': 0}
    """
    counts = {name: 0 for name in names}
    for position in sorted(set(clicked_positions)):
        if 1 <= position <= len(teams) and teams[position - 1] in counts:
            counts[teams[position - 1]] += 1
    return counts


def outcome(counts: dict[str, int], names: tuple[str, str] = (RERANK, BM25)) -> str | None:
    """`win` when the first team got more clicks, `loss` when fewer, `tie` when equal; None without clicks.

    Example:
        >>> outcome({"rerank": 2, "bm25": 1}), outcome({"rerank": 1, "bm25": 1}), outcome({"rerank": 0, "bm25": 0})
        ('win', 'tie', None)
    """
    first, second = counts.get(names[0], 0), counts.get(names[1], 0)
    if first == second == 0:
        return None
    return "win" if first > second else "loss" if first < second else "tie"
