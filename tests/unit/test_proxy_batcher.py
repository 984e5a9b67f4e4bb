"""The scoring worker: off the event loop, merging concurrent searches, deadlines, failures."""

import asyncio
import threading
import time

import numpy as np
import pytest

from es_rerank.proxy.settings import BatchSettings
from es_rerank.errors import ScoringError, ScoringOutOfMemory
from es_rerank.proxy.batcher import Batcher
from es_rerank.proxy.metrics import ProxyMetrics
from tests.proxy_support import RaisingScorer, TermOverlapScorer


class FirstCallSlow(TermOverlapScorer):
    """Holds the first real call so that later searches queue up behind it, as under load."""

    def __init__(self, hold_s=0.3):
        super().__init__()
        self.hold_s = hold_s
        self.threads = set()

    def score_pairs(self, queries, documents):
        self.threads.add(threading.get_ident())
        if len(self.calls) == 0:
            time.sleep(self.hold_s)
        return super().score_pairs(queries, documents)


async def score_many(batcher, jobs, timeout_s=10.0):
    return await asyncio.gather(*(batcher.score(q, docs, timeout_s) for q, docs in jobs), return_exceptions=True)


def run_jobs(scorer, settings, jobs, timeout_s=10.0):
    batcher = Batcher(scorer, settings, ProxyMetrics())
    batcher.start(warm_up=False)
    try:
        return asyncio.run(score_many(batcher, jobs, timeout_s)), batcher
    finally:
        batcher.stop()


JOBS = [(f"gene {k}", [f"gene doc {k} {j}" for j in range(10)]) for k in range(8)]


def test_concurrent_searches_share_model_calls_and_get_their_own_scores():
    scorer = FirstCallSlow()
    results, batcher = run_jobs(scorer, BatchSettings(max_pairs=1000), JOBS)
    expected = [TermOverlapScorer().score_pairs([q] * len(d), d) for q, d in JOBS]
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    assert len(scorer.calls) < len(JOBS)  # merged: 8 searches in fewer model calls
    assert max(scorer.calls) > 10
    assert threading.get_ident() not in scorer.threads  # never on the event loop's thread
    assert batcher.metrics.batch_pairs.count() == len(scorer.calls)


def test_without_cross_request_batching_each_search_gets_its_own_call():
    scorer = FirstCallSlow()
    run_jobs(scorer, BatchSettings(max_pairs=1000, cross_request=False), JOBS)
    assert scorer.calls == [10] * len(JOBS)


def test_merged_calls_respect_max_pairs():
    scorer = FirstCallSlow()
    run_jobs(scorer, BatchSettings(max_pairs=25), JOBS)
    assert max(scorer.calls) <= 25


def test_a_search_past_its_deadline_times_out_and_is_dropped_from_the_queue():
    scorer = FirstCallSlow(hold_s=0.5)
    results, _ = run_jobs(scorer, BatchSettings(cross_request=False), JOBS[:3], timeout_s=0.2)
    assert all(isinstance(r, asyncio.TimeoutError) for r in results)
    assert scorer.calls == [10]  # the two queued behind the slow call were never scored


def test_model_errors_reach_every_search_in_the_call():
    results, _ = run_jobs(RaisingScorer(RuntimeError("cuda launch failure")), BatchSettings(), JOBS[:2])
    assert all(isinstance(r, ScoringError) and "cuda launch failure" in str(r) for r in results)


@pytest.mark.parametrize("bug", [KeyError("token_type_ids"), TypeError("expected str, got NoneType"),
                                 ValueError("queries and documents differ in length")])
def test_a_scorer_bug_reaches_every_search_as_raised_not_as_a_model_failure(bug):
    results, _ = run_jobs(RaisingScorer(bug), BatchSettings(), JOBS[:2])
    assert all(r is bug for r in results)
    assert not any(isinstance(r, ScoringError) for r in results)


def test_out_of_memory_in_a_merged_call_retries_each_search_alone():
    class OomWhenLarge(FirstCallSlow):
        def score_pairs(self, queries, documents):
            if len(documents) > 10:
                self.calls.append(len(documents))
                raise ScoringOutOfMemory("too many pairs")
            return super().score_pairs(queries, documents)

    scorer = OomWhenLarge()
    results, _ = run_jobs(scorer, BatchSettings(max_pairs=1000), JOBS[:4])
    assert all(isinstance(r, np.ndarray) and len(r) == 10 for r in results)
    assert any(c > 10 for c in scorer.calls)


def test_warm_up_failure_is_reported_not_fatal():
    batcher = Batcher(RaisingScorer(), BatchSettings(), ProxyMetrics())
    batcher.start(warm_up=True)
    try:
        assert batcher.warm.wait(5)
        assert "injected model failure" in batcher.warm_error
        with pytest.raises(ScoringError):
            asyncio.run(batcher.score("q", ["d"], 5.0))
    finally:
        batcher.stop()


def test_wrong_shaped_scores_are_a_scoring_error():
    class Short:
        def score_pairs(self, queries, documents):
            return np.zeros(len(documents) - 1, dtype=np.float32)

    results, _ = run_jobs(Short(), BatchSettings(), JOBS[:1])
    assert isinstance(results[0], ScoringError) and "shape" in str(results[0])


class _TwoStage:
    """Records which thread tokenized and which ran the model."""

    def __init__(self):
        self.encode_threads, self.score_threads, self.calls = set(), set(), []

    def encode_pairs(self, queries, documents):
        self.encode_threads.add(threading.current_thread().name)
        return [len(d) for d in documents]

    def score_encoded(self, pairs):
        self.score_threads.add(threading.current_thread().name)
        self.calls.append(len(pairs))
        return np.asarray(pairs, dtype=np.float32)

    def score_pairs(self, queries, documents):  # pragma: no cover - the batcher must not use it
        raise AssertionError("a two-stage scorer is fed through encode_pairs/score_encoded")


def test_two_stage_scorer_tokenizes_on_the_pool_and_scores_on_the_worker():
    scorer = _TwoStage()

    async def run():
        batcher = Batcher(scorer, BatchSettings(encode_threads=2), ProxyMetrics())
        batcher.start(warm_up=False)
        try:
            return await asyncio.gather(*(batcher.score("q", ["a" * n, "bb"], timeout_s=5.0) for n in range(1, 6)))
        finally:
            batcher.stop()

    results = asyncio.run(run())
    assert [r.tolist() for r in results] == [[float(n), 2.0] for n in range(1, 6)]
    assert all(name.startswith("es-rerank-tokenize") for name in scorer.encode_threads)
    assert scorer.score_threads == {"es-rerank-scorer"} and sum(scorer.calls) == 10


class _SlowTokenizer(_TwoStage):
    """Tokenizing that lasts until the clock has moved on, and records when it ended and when the
    model call began, so the queue stage can be checked against what really happened between."""

    def __init__(self):
        super().__init__()
        self.encoded_at, self.scored_at = [], []

    def encode_pairs(self, queries, documents):
        started = time.monotonic()
        while time.monotonic() - started < 0.05:  # a condition on the clock, not a timed assertion
            pass
        pairs = super().encode_pairs(queries, documents)
        self.encoded_at.append(time.monotonic())
        return pairs

    def score_encoded(self, pairs):
        self.scored_at.append(time.monotonic())
        return super().score_encoded(pairs)


def test_the_queue_stage_counts_the_wait_for_the_model_not_the_tokenizing_before_it():
    scorer, metrics = _SlowTokenizer(), ProxyMetrics()

    async def run():
        batcher = Batcher(scorer, BatchSettings(encode_threads=1), metrics)
        batcher.start(warm_up=False)
        try:
            return await batcher.score("q", ["a", "bb"], timeout_s=30.0)
        finally:
            batcher.stop()

    assert asyncio.run(run()).tolist() == [1.0, 2.0]
    assert metrics.stage_seconds.total(("tokenize",)) >= 0.05
    assert metrics.stage_seconds.total(("queue",)) <= scorer.scored_at[0] - scorer.encoded_at[0]


class _FailingTokenizer(_TwoStage):
    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    def encode_pairs(self, queries, documents):
        raise self.error


@pytest.mark.parametrize("error, expected", [(RuntimeError("tokenizer panicked"), ScoringError),
                                             (TypeError("texts must be str"), TypeError)])
def test_a_tokenizer_failure_is_a_model_failure_and_a_tokenizer_bug_stays_a_bug(error, expected):
    scorer = _FailingTokenizer(error)

    async def run():
        batcher = Batcher(scorer, BatchSettings(encode_threads=1), ProxyMetrics())
        batcher.start(warm_up=False)
        try:
            await batcher.score("q", ["a"], timeout_s=30.0)
        finally:
            batcher.stop()

    with pytest.raises(expected, match=str(error)):
        asyncio.run(run())
    assert scorer.calls == []


class _BlockedTokenizer(_TwoStage):
    """Tokenizing that waits until the test lets it go, after the search's deadline has passed."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def encode_pairs(self, queries, documents):
        assert self.release.wait(timeout=60)
        return super().encode_pairs(queries, documents)


def test_a_search_whose_deadline_passes_while_tokenizing_times_out_and_is_never_scored():
    scorer = _BlockedTokenizer()

    async def run():
        batcher = Batcher(scorer, BatchSettings(encode_threads=1), ProxyMetrics())
        batcher.start(warm_up=False)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await batcher.score("q", ["a"], timeout_s=0.01)
            scorer.release.set()
            # a later search is tokenized after the expired one, so once it has its scores the
            # expired one has been through the queue too
            return await batcher.score("q", ["bb"], timeout_s=30.0)
        finally:
            batcher.stop()

    assert asyncio.run(run()).tolist() == [2.0]
    assert scorer.calls == [1]
