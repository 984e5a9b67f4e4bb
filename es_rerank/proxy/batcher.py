"""One scoring worker per model: a thread that runs the scorer off the event loop.

Searches that arrive while the model is busy wait in a queue; when the worker frees up it
merges their pairs into one model call (up to `max_pairs`), then hands each search its slice of
the scores. With `cross_request=False` every search gets a model call of its own.

Example:
    >>> class Length:
    ...     def score_pairs(self, queries, documents):
    ...         return np.array([len(d) for d in documents], dtype=np.float32)
    >>> async def demo():
    ...     batcher = Batcher(Length(), BatchSettings(), ProxyMetrics())
    ...     batcher.start()
    ...     try:
    ...         return (await batcher.score("q", ["a", "abc"], timeout_s=5.0)).tolist()
    ...     finally:
    ...         batcher.stop()
    >>> asyncio.run(demo())
    [1.0, 3.0]
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from es_rerank.proxy.settings import BatchSettings
from es_rerank.errors import ScoringError, ScoringOutOfMemory
from es_rerank.proxy.metrics import ProxyMetrics
from es_rerank.scoring.cross_encoder import Scorer, TwoStageScorer
from es_rerank.scoring.token_batches import concat_encoded
from es_rerank.scoring.validity import check_scores

# What a scorer raises for wrong code rather than a failing model (OnnxScorer: a bad argument is a
# ValueError or TypeError). These reach the search unchanged and are answered as bugs, not BM25 fallbacks.
BUG_ERRORS = (TypeError, ValueError, LookupError, AttributeError, AssertionError, NameError)

log = logging.getLogger("es_rerank.proxy")
WARM_UP_PAIRS = 8


@dataclass(eq=False)
class _Job:
    query: str
    documents: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    expires_at: float
    enqueued_at: float = field(default_factory=time.monotonic)
    # Tokenized pairs, when the scorer splits tokenizing from the model run (TwoStageScorer).
    encoded: list | None = None


class Batcher:
    """Scores (query, documents) jobs on one worker thread, merging concurrent jobs into shared calls."""

    def __init__(self, scorer: Scorer, settings: BatchSettings, metrics: ProxyMetrics) -> None:
        self.scorer = scorer
        self.settings = settings
        self.metrics = metrics
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.warm = threading.Event()
        self.warm_error: str = ""
        # Tokenizing is CPU work that parallelises; only the model call is serialised. So a
        # two-stage scorer tokenizes each search on this pool before it queues for the model.
        self._two_stage = isinstance(scorer, TwoStageScorer)
        threads = settings.encode_threads or min(8, os.cpu_count() or 1)
        self._encode_pool = ThreadPoolExecutor(threads, thread_name_prefix="es-rerank-tokenize") \
            if self._two_stage else None

    def start(self, warm_up: bool = True) -> None:
        """Start the worker thread; with `warm_up`, it first scores one pair so the first search is not slow.
        """
        self._thread = threading.Thread(target=self._run, args=(warm_up,), name="es-rerank-scorer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to finish the model call it is in and exit; waits up to `timeout_s`.
        """
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._encode_pool is not None:
            self._encode_pool.shutdown(wait=False, cancel_futures=True)

    async def score(self, query: str, documents: list[str], timeout_s: float) -> np.ndarray:
        """Scores for `documents` against `query`; raises asyncio.TimeoutError past `timeout_s`, or ScoringError.

        A scorer's `BUG_ERRORS` come back as they were raised (with their traceback), so they count as bugs.

        Tokenizing and the queue wait count against the timeout: a search that waited too long is dropped from the queue.
        """
        if not documents:
            return np.zeros(0, dtype=np.float32)
        loop = asyncio.get_running_loop()
        job = _Job(query, list(documents), loop.create_future(), loop, time.monotonic() + timeout_s)
        if self._two_stage:
            try:
                # The tokenizing thread queues the job itself: one thread hop fewer than coming
                # back to the event loop in between.
                cast(ThreadPoolExecutor, self._encode_pool).submit(self._encode_then_queue, job)
            except RuntimeError as exc:  # the pool is shut down
                raise ScoringError("the scoring worker is stopping") from exc
        else:
            self._queue(job)
        return await asyncio.wait_for(job.future, timeout_s)

    def _queue(self, job: _Job) -> None:
        with self._wake:
            if self._stopping:
                raise ScoringError("the scoring worker is stopping")
            self._jobs.append(job)
            self._wake.notify()

    def _encode_then_queue(self, job: _Job) -> None:
        """On the tokenizing pool: tokenize the job, then queue it for the model (or hand back the failure)."""
        if job.future.done():
            return  # its search already timed out or was cancelled
        started = time.monotonic()
        try:
            job.encoded = cast(TwoStageScorer, self.scorer).encode_pairs([job.query] * len(job.documents),
                                                                         job.documents)
        except (ScoringError, *BUG_ERRORS) as exc:
            _hand_back(job, None, exc)
            return
        except Exception as exc:  # a tokenizer failure is a model failure: BM25 fallback, never a 5xx
            _hand_back(job, None, ScoringError(f"{type(exc).__name__}: {exc}"))
            return
        job.enqueued_at = time.monotonic()  # the queue stage starts here; tokenizing has its own
        self.metrics.stage_seconds.observe(job.enqueued_at - started, ("tokenize",))
        try:
            self._queue(job)
        except ScoringError as exc:
            _hand_back(job, None, exc)

    def _run(self, warm_up: bool) -> None:
        if warm_up:
            self._warm_up()
        self.warm.set()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._score_batch(batch)

    def _warm_up(self) -> None:
        # Full-length pairs, so the kernels for long inputs are built before the first search arrives.
        document = " ".join(["the first model call builds kernels and fills caches"] * 60)
        try:
            self.scorer.score_pairs(["warm up query"] * WARM_UP_PAIRS, [document] * WARM_UP_PAIRS)
        except Exception as exc:  # a broken model must not kill the worker; readiness reports it
            self.warm_error = f"{type(exc).__name__}: {exc}"
            log.error("model warm-up failed: %s", self.warm_error)

    def _next_batch(self) -> list[_Job] | None:
        """Wait for work; take the first live job and, with cross-request batching, any that fit behind it."""
        with self._wake:
            while True:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if self._stopping and not self._jobs:
                    return None
                now = time.monotonic()
                batch: list[_Job] = []
                pairs = 0
                while self._jobs:
                    job = self._jobs[0]
                    if job.expires_at <= now or job.future.done():
                        self._jobs.popleft()  # its search already fell back to BM25
                        continue
                    if batch and (not self.settings.cross_request or pairs + len(job.documents) > self.settings.max_pairs):
                        break
                    batch.append(self._jobs.popleft())
                    pairs += len(job.documents)
                if batch:
                    return batch

    def _score_batch(self, batch: list[_Job]) -> None:
        started = time.monotonic()
        for job in batch:
            self.metrics.stage_seconds.observe(started - job.enqueued_at, ("queue",))
        documents = [doc for job in batch for doc in job.documents]
        try:
            if self._two_stage:
                encoded = batch[0].encoded if len(batch) == 1 else concat_encoded([job.encoded for job in batch])
                raw = cast(TwoStageScorer, self.scorer).score_encoded(encoded)
            else:
                queries = [job.query for job in batch for _ in job.documents]
                raw = self.scorer.score_pairs(queries, documents)
            scores = np.asarray(raw, dtype=np.float32)
            check_scores(scores, len(documents))
        except ScoringOutOfMemory as exc:
            if len(batch) > 1:  # a merged call ran out of memory: give each search its own, smaller call
                for job in batch:
                    self._score_batch([job])
                return
            self._fail(batch, exc)
            return
        except (ScoringError, *BUG_ERRORS) as exc:  # a bug goes back as raised: the search counts it as one
            self._fail(batch, exc)
            return
        except Exception as exc:  # any other model failure becomes a BM25 fallback, never a 5xx
            self._fail(batch, ScoringError(f"{type(exc).__name__}: {exc}"))
            return
        self.metrics.batch_pairs.observe(len(documents))
        self.metrics.stage_seconds.observe(time.monotonic() - started, ("score",))
        offset = 0
        for job in batch:
            part = scores[offset: offset + len(job.documents)]
            offset += len(job.documents)
            _hand_back(job, part, None)

    @staticmethod
    def _fail(batch: list[_Job], exc: Exception) -> None:
        for job in batch:
            _hand_back(job, None, exc)


def _hand_back(job: _Job, result, error: Exception | None) -> None:
    try:
        job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
    except RuntimeError:
        pass  # the event loop closed during shutdown; nobody waits for this result


def _resolve(future: asyncio.Future, result, error: Exception | None) -> None:
    if future.done():  # the search timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
