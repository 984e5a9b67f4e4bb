"""Prometheus text-format metrics, small and dependency-free; safe to update from the scoring thread.

Example:
    >>> m = ProxyMetrics()
    >>> m.requests.inc(("passthrough",))
    >>> m.stage_seconds.observe(0.004, ("score",))
    >>> text = m.render()
    >>> 'es_rerank_requests_total{kind="passthrough"} 1' in text
    True
    >>> 'es_rerank_stage_seconds_bucket{stage="score",le="0.005"} 1' in text
    True
"""

from __future__ import annotations

import bisect
import threading

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help_text = help_text
        self.labels = labels
        self._lock = threading.Lock()

    def _label_text(self, values: tuple, extra: str = "") -> str:
        pairs = [f'{k}="{_escape(str(v))}"' for k, v in zip(self.labels, values)]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def _check(self, values: tuple) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got values {values}")

    def header(self) -> list[str]:
        """The `# HELP` and `# TYPE` lines.

        Example:
            >>> Counter("x_total", "Things.").header()
            ['# HELP x_total Things.', '# TYPE x_total counter']
        """
        return [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count per label combination."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[tuple, float] = {}

    def inc(self, values: tuple = (), amount: float = 1.0) -> None:
        """Add `amount` to the series named by label `values`.

        Example:
            >>> c = Counter("x_total", "Things.", ("kind",)); c.inc(("a",)); c.inc(("a",), 2); c.value(("a",))
            3.0
        """
        self._check(values)
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def value(self, values: tuple = ()) -> float:
        """Current count of one series (0 when never touched).

        Example:
            >>> Counter("x_total", "Things.").value()
            0.0
        """
        return self._values.get(values, 0.0)

    def lines(self) -> list[str]:
        """One exposition line per series.

        Example:
            >>> c = Counter("x_total", "Things.", ("kind",)); c.inc(("a",)); c.lines()
            ['x_total{kind="a"} 1']
        """
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._label_text(k)} {format_number(v)}" for k, v in items]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, values: tuple = ()) -> None:
        """Set the series named by label `values` to `value`.

        Example:
            >>> g = Gauge("x", "Level."); g.set(4); g.lines()
            ['x 4']
        """
        self._check(values)
        with self._lock:
            self._values[values] = float(value)


class Histogram(_Metric):
    """Cumulative buckets, sum and count per label combination."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple, list] = {}

    def observe(self, value: float, values: tuple = ()) -> None:
        """Record one observation.

        Example:
            >>> h = Histogram("x_seconds", "Time.", (0.1,)); h.observe(0.05); h.count()
            1
        """
        self._check(values)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(values)
            if series is None:
                series = self._series[values] = [[0] * (len(self.buckets) + 1), 0.0]
            series[0][index] += 1
            series[1] += value

    def count(self, values: tuple = ()) -> int:
        """How many observations one series holds.

        Example:
            >>> Histogram("x_seconds", "Time.", (0.1,)).count()
            0
        """
        series = self._series.get(values)
        return sum(series[0]) if series else 0

    def total(self, values: tuple = ()) -> float:
        """The sum of one series' observations.

        Example:
            >>> h = Histogram("x_seconds", "Time.", (0.1,)); h.observe(0.05); h.observe(0.25); h.total()
            0.3
        """
        series = self._series.get(values)
        return series[1] if series else 0.0

    def lines(self) -> list[str]:
        """Bucket, sum and count lines per series.

        Example:
            >>> h = Histogram("x_seconds", "Time.", (0.1,)); h.observe(0.05); h.lines()[-1]
            'x_seconds_count 1'
        """
        with self._lock:
            items = sorted((k, (list(v[0]), v[1])) for k, v in self._series.items())
        out = []
        for key, (counts, total) in items:
            running = 0
            for bound, count in zip(self.buckets, counts):
                running += count
                le = "le=" + _quote(format_number(bound))
                out.append(f"{self.name}_bucket{self._label_text(key, le)} {running}")
            running += counts[-1]
            le = "le=" + _quote("+Inf")
            out.append(f"{self.name}_bucket{self._label_text(key, le)} {running}")
            out.append(f"{self.name}_sum{self._label_text(key)} {format_number(total)}")
            out.append(f"{self.name}_count{self._label_text(key)} {running}")
        return out


class ProxyMetrics:
    """The proxy's metrics. `kind` of a request: reranked, fallback, degraded, shed, skipped, passthrough, rejected,
    and error (an `_msearch` search failed by a bug, see `bugs`)."""

    def __init__(self) -> None:
        self.requests = Counter("es_rerank_requests_total", "Requests by how the proxy handled them.", ("kind",))
        self.fallbacks = Counter("es_rerank_fallbacks_total",
                                 "Reranked searches answered with the BM25 page, by reason.", ("reason",))
        # Apart from fallbacks on purpose: a bug is an unexpected exception, logged with its traceback.
        self.bugs = Counter("es_rerank_bugs_total",
                            "Unexpected exceptions (proxy or scorer bugs) by stage: score, rewrite or request.",
                            ("stage",))
        self.shed = Counter("es_rerank_shed_total",
                            "Searches over the concurrency bound, by action (reject or degrade).", ("action",))
        self.upstream_errors = Counter("es_rerank_upstream_errors_total",
                                       "OpenSearch connection failures and timeouts.", ("kind",))
        self.stage_seconds = Histogram("es_rerank_stage_seconds",
                                       "Latency of the reranked-search stages: upstream, tokenize, queue, score, rewrite, total.",
                                       LATENCY_BUCKETS, ("stage",))
        self.window_size = Histogram("es_rerank_window_size", "Candidates reranked per search.", SIZE_BUCKETS)
        self.batch_pairs = Histogram("es_rerank_batch_pairs", "Pairs per model call (several searches may share one).",
                                     SIZE_BUCKETS)
        self.in_flight = Gauge("es_rerank_in_flight", "Reranked searches in progress.")
        self.ready = Gauge("es_rerank_ready", "1 when the proxy reports ready.")
        self.connections = Gauge("es_rerank_connections", "Client connections open now.")
        self.connections_cut = Counter("es_rerank_connections_cut_total",
                                       "Client connections the proxy closed: header_timeout (request headers "
                                       "too slow) or connection_cap (too many open).", ("reason",))
        self._all = (self.requests, self.fallbacks, self.bugs, self.shed, self.upstream_errors, self.stage_seconds,
                     self.window_size, self.batch_pairs, self.in_flight, self.ready, self.connections,
                     self.connections_cut)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4).

        Example:
            >>> ProxyMetrics().render().splitlines()[0]
            '# HELP es_rerank_requests_total Requests by how the proxy handled them.'
        """
        lines: list[str] = []
        for metric in self._all:
            lines.extend(metric.header())
            lines.extend(metric.lines())
        return "\n".join(lines) + "\n"


def format_number(value: float) -> str:
    """A sample value as Prometheus text: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quote(text: str) -> str:
    return f'"{text}"'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
