"""The Prometheus text exposition."""

import pytest

from es_rerank.proxy.metrics import Counter, Histogram, ProxyMetrics


def test_histogram_buckets_are_cumulative_with_sum_and_count():
    h = Histogram("x_seconds", "help", (0.1, 1.0), ("stage",))
    for value in (0.05, 0.5, 5.0):
        h.observe(value, ("score",))
    lines = h.lines()
    assert 'x_seconds_bucket{stage="score",le="0.1"} 1' in lines
    assert 'x_seconds_bucket{stage="score",le="1"} 2' in lines
    assert 'x_seconds_bucket{stage="score",le="+Inf"} 3' in lines
    assert 'x_seconds_count{stage="score"} 3' in lines
    assert 'x_seconds_sum{stage="score"} 5.55' in lines


def test_label_values_are_escaped_and_checked():
    c = Counter("c_total", "help", ("reason",))
    c.inc(('say "hi"\n',))
    assert c.lines() == ['c_total{reason="say \\"hi\\"\\n"} 1']
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(())


def test_render_lists_every_metric_with_help_and_type():
    text = ProxyMetrics().render()
    for name in ("es_rerank_requests_total", "es_rerank_fallbacks_total", "es_rerank_shed_total",
                 "es_rerank_stage_seconds", "es_rerank_window_size", "es_rerank_batch_pairs", "es_rerank_in_flight"):
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text
