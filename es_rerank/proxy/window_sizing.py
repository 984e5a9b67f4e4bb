"""Size the rerank window from a start-up timing, so that a slow CPU serves reranked pages
instead of falling back to BM25 on the deadline of every search.

`serve` times each loaded model once on a few distinct synthetic documents (distinct, so the
bi-encoder's cache cannot help), extrapolates linearly to a window, and compares with each
index's deadline. A window left at its default is lowered to what fits; a window the user set
is kept, and `serve` says at start-up that cold searches will miss the deadline, with numbers.

Example:
    >>> from es_rerank.proxy.settings import IndexRule
    >>> timing = [ModelTiming("cross-encoder", pairs=16, seconds=0.8)]   # 50 ms a pair
    >>> rule, line = size_window(IndexRule("scifact"), timing, explicit=False)
    >>> rule.window, line.split(";")[0]
    (16, "index 'scifact': a window of 100 takes about 5000 ms here, over its 1000 ms deadline")
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from es_rerank.proxy.settings import IndexRule

# Share of the deadline the model calls may use: the BM25 fetch and the page rewrite need the rest.
DEADLINE_SHARE = 0.8
TIMING_PAIRS = 16
WORDS_PER_DOC = 200   # about a SciFact abstract; longer ones are cut at the export's max length anyway


@dataclass(frozen=True)
class ModelTiming:
    """One model's measured cost: `pairs` distinct pairs scored in `seconds`."""

    model: str
    pairs: int
    seconds: float

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.seconds / self.pairs


def time_model(scorer, model: str, pairs: int = TIMING_PAIRS) -> ModelTiming:
    """Score `pairs` distinct synthetic documents once (after one warm-up pair) and time it."""
    scorer.score_pairs(["warm up"], ["warm up"])
    docs = [" ".join(f"term{(i * 7919 + j) % 5003}" for j in range(WORDS_PER_DOC)) for i in range(pairs)]
    started = time.perf_counter()
    scorer.score_pairs(["what does this document say about timing"] * pairs, docs)
    return ModelTiming(model, pairs, time.perf_counter() - started)


def size_window(rule: IndexRule, timings: Sequence[ModelTiming], explicit: bool) -> tuple[IndexRule, str]:
    """The rule with a window that fits its deadline (unless `explicit`), and a line saying so.

    The models a fused search calls are counted together: on a small CPU they share its cores.

    Example:
        >>> from es_rerank.proxy.settings import IndexRule
        >>> fast = [ModelTiming("bi-encoder", pairs=16, seconds=0.08)]
        >>> size_window(IndexRule("a", window=50), fast, explicit=True)[1]
        "index 'a': a window of 50 takes about 250 ms here, within its 1000 ms deadline"
        >>> slow = [ModelTiming("cross-encoder", pairs=16, seconds=1.6)]
        >>> rule, line = size_window(IndexRule("a", window=50), slow, explicit=True)
        >>> rule.window, line.split(";")[1].split(" (")[0]
        (50, ' cold searches will fall back to BM25: lower --window to 8 or raise --deadline-ms to 6250')
    """
    if not rule.rerank or not timings:
        return rule, ""
    ms_per_pair = sum(t.ms_per_pair for t in timings)
    estimate = rule.window * ms_per_pair
    head = f"index {rule.pattern!r}: a window of {rule.window} takes about {estimate:.0f} ms here"
    if estimate <= DEADLINE_SHARE * rule.deadline_ms:
        return rule, f"{head}, within its {rule.deadline_ms} ms deadline"
    fits = max(1, math.floor(DEADLINE_SHARE * rule.deadline_ms / ms_per_pair))
    needed = math.ceil(estimate / DEADLINE_SHARE)
    measured = ", ".join(f"{t.model} {t.pairs} pairs in {t.seconds * 1000:.0f} ms" for t in timings)
    head += f", over its {rule.deadline_ms} ms deadline"
    if explicit:
        return rule, (f"{head}; cold searches will fall back to BM25: lower --window to {fits} or raise "
                      f"--deadline-ms to {needed} (measured: {measured})")
    return replace(rule, window=fits), (f"{head}; window lowered to {fits} (measured: {measured}); "
                                        f"set --window {rule.window} --deadline-ms {needed} to keep the full window")


def sized_rules(rules: Sequence[IndexRule], scorer, dense_scorers: Mapping[str, object], default_window: int | None,
                resize: bool = True) -> tuple[tuple[IndexRule, ...], list[str]]:
    """Every reranked rule sized as in `size_window`, timing each model it calls once.

    `default_window` is the window rules get when nobody chose one (None: the user set it for all);
    a rule at another window was set in the config file and is kept. With `resize` False no
    window changes: slow ones are only reported.
    """
    timings: dict[str, ModelTiming] = {}

    def timing(name: str, model) -> ModelTiming:
        if name not in timings:
            timings[name] = time_model(model, name)
        return timings[name]

    sized, lines = [], []
    for rule in rules:
        used = []
        if rule.rerank and scorer is not None and (rule.fusion is None or rule.fusion.needs_ce):
            used.append(timing("cross-encoder", scorer))
        if rule.rerank and rule.fusion is not None and rule.fusion.needs_dense and rule.dense_model in dense_scorers:
            used.append(timing(f"bi-encoder {rule.dense_model}", dense_scorers[rule.dense_model]))
        explicit = not resize or default_window is None or rule.window != default_window
        rule, line = size_window(rule, used, explicit)
        sized.append(rule)
        if line:
            lines.append(line)
    return tuple(sized), lines
