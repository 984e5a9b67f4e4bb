"""Window sizing from a start-up timing, with scorers whose cost per pair has a known lower bound."""

from __future__ import annotations

import time

import numpy as np

from es_rerank.proxy.settings import IndexRule
from es_rerank.scoring.fusion import FusionWeights
from es_rerank.proxy.window_sizing import sized_rules


class SleepyScorer:
    """At least `seconds` per pair (sleep is a lower bound, however loaded the machine)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.pairs = 0

    def score_pairs(self, queries, documents):
        time.sleep(self.seconds * len(documents))
        self.pairs += len(documents)
        return np.zeros(len(documents), dtype=np.float32)


def test_a_default_window_that_misses_the_deadline_is_lowered_and_an_explicit_one_is_reported():
    slow = SleepyScorer(0.1)   # >= 100 ms a pair: 8 pairs fit 80 % of a 1 s deadline at most
    rules = (IndexRule("a"), IndexRule("b", window=50), IndexRule("off", rerank=False))
    sized, lines = sized_rules(rules, slow, {}, default_window=100)
    assert 1 <= sized[0].window <= 8 and "window lowered to" in lines[0] and "--deadline-ms" in lines[0]
    assert sized[1].window == 50 and "cold searches will fall back to BM25" in lines[1]
    assert sized[2] == rules[2] and len(lines) == 2
    assert slow.pairs == 1 + 16  # one warm-up pair, then one timing, shared by both rules


def test_a_fast_model_keeps_its_window_and_fusion_counts_both_models():
    fast, slow = SleepyScorer(0.0), SleepyScorer(0.1)
    fused = IndexRule("f", fusion=FusionWeights(ce=0.0, bm25=0.5, dense=0.5), dense_model="d")
    sized, lines = sized_rules((IndexRule("a"), fused), fast, {"d": slow}, default_window=100)
    assert sized[0].window == 100 and "within its 1000 ms deadline" in lines[0]
    assert sized[1].window <= 8 and "bi-encoder d" in lines[1]   # the fused rule calls only the slow bi-encoder
    assert fast.pairs == 17 and slow.pairs == 17


def test_without_resizing_nothing_changes_but_the_numbers_are_reported():
    sized, lines = sized_rules((IndexRule("a"),), SleepyScorer(0.1), {}, default_window=100, resize=False)
    assert sized[0].window == 100 and "lower --window to" in lines[0]
