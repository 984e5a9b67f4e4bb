"""Training pairs per second, timed honestly on an asynchronous GPU.

Example:
    >>> meter = Throughput(torch.device("cpu"))
    >>> meter.rate() is None
    True
"""

from __future__ import annotations

import time

import torch

TIMING_SKIP_STEPS = 3  # the first steps pay for CUDA/compile warm-up; pairs/s is measured after them


class Throughput:
    """Pairs per second of training alone: evaluation and saving are paused out, and the first
    `TIMING_SKIP_STEPS` steps (CUDA and compile warm-up) are not counted. Synchronises the GPU
    only when a rate is read (log intervals)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0
        self.pairs = 0
        self._start: float | None = None

    def count(self, pairs: int, steps_done: int) -> None:
        if steps_done == TIMING_SKIP_STEPS:
            self._sync()
            self._start = time.perf_counter()
        elif steps_done > TIMING_SKIP_STEPS:
            self.pairs += pairs

    def pause(self) -> None:
        if self._start is not None:
            self._sync()
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def resume(self) -> None:
        if self.pairs or self.seconds:
            self._sync()
            self._start = time.perf_counter()

    def rate(self) -> float | None:
        if self._start is not None:
            self.pause()
            self.resume()
        return self.pairs / self.seconds if self.seconds > 0 and self.pairs else None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
