"""Admission control: at most `max_in_flight` reranked searches at once, each holding a permit.

A search that finds every permit taken is shed (429 or 503 with `Retry-After`) or degraded to the
plain BM25 relay, as `LoadSettings.overload` says; either way the model's queue never grows
without bound. Only reranked searches take permits: pass-through traffic is OpenSearch's to bound.

Example:
    >>> admission = Admission(LoadSettings(max_in_flight=1, overload="degrade"), ProxyMetrics())
    >>> with admission.try_acquire():
    ...     admission.try_acquire() is None, admission.in_flight
    (True, 1)
    >>> admission.in_flight, admission.metrics.shed.value(("degrade",))
    (0, 1.0)
"""

from __future__ import annotations

from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.metrics import ProxyMetrics
from es_rerank.proxy.settings import LoadSettings


class Permit:
    """One reranked search in progress; leaving the `with` block gives the permit back."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc_info) -> None:
        self._admission._release()


class Admission:
    """The permits of reranked searches, and what happens to a search past them."""

    def __init__(self, load: LoadSettings, metrics: ProxyMetrics) -> None:
        self.load = load
        self.metrics = metrics
        self.in_flight = 0

    @property
    def saturated(self) -> bool:
        """Every permit is taken."""
        return self.in_flight >= self.load.max_in_flight

    def acquire(self) -> Permit:
        """Take a permit (the caller checked `saturated`)."""
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        return Permit(self)

    def try_acquire(self) -> Permit | None:
        """A permit; past the limit None (degrade: relay as BM25), or with `overload: shed` a 429/503.

        Example:
            >>> full = Admission(LoadSettings(max_in_flight=1, shed_status=503, retry_after_s=2), ProxyMetrics())
            >>> permit = full.acquire()
            >>> full.try_acquire()
            Traceback (most recent call last):
            ...
            es_rerank.proxy.httperror.ProxyHTTPError: the rerank proxy is at its limit of 1 concurrent searches
        """
        if not self.saturated:
            return self.acquire()
        if self.load.overload == "shed":
            self.metrics.shed.inc(("reject",))
            self.metrics.requests.inc(("shed",))
            raise ProxyHTTPError.rejected(f"the rerank proxy is at its limit of {self.load.max_in_flight} concurrent "
                                          "searches", status=self.load.shed_status, retry_after_s=self.load.retry_after_s)
        self.metrics.shed.inc(("degrade",))
        self.metrics.requests.inc(("degraded",))
        return None

    def _release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)
