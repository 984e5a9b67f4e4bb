"""Offline A/B through the real es-rerank proxy (in-process) in front of the real node.

The proxy scores with the term-overlap scorer from tests/proxy_support.py: a real, deterministic
relevance model, so the reranked order can be recomputed here independently.
"""

import pytest

from es_rerank.evaluation.compare import compare_sides
from es_rerank.proxy.inprocess import serve_scorer
from es_rerank.evaluation.offline import OfflineSettings, Side, select_judged
from es_rerank.evaluation.protocol import rerank_off_headers
from es_rerank.evaluation.report import never_reranked_warnings
from es_rerank.data.beir import read_qrels, read_queries
from es_rerank.errors import ModelError, ScoringError
from es_rerank.scoring.rerank import rerank_hits
from es_rerank.engine.bm25_query import search_bm25
from tests.proxy_support import RaisingScorer, TermOverlapScorer

SUBSET = 15


class FailsAfterWarmUp(TermOverlapScorer):
    """Fault injection: a model that passes its warm-up call and then fails on every search."""

    def score_pairs(self, queries, documents):
        if self.calls:
            raise ScoringError("injected failure after warm-up")
        return super().score_pairs(queries, documents)


@pytest.fixture(scope="module")
def judged(data_dir):
    return select_judged(read_queries(data_dir / "scifact"), read_qrels(data_dir / "scifact", "test"), limit=SUBSET)


@pytest.fixture(scope="module")
def through_proxy(scifact_index, opensearch_url, judged):
    with serve_scorer(TermOverlapScorer(), opensearch_url, scifact_index) as proxy_url:
        sides = [Side("bm25", opensearch_url), Side("rerank", proxy_url),
                 Side("proxy-off", proxy_url, headers=tuple(rerank_off_headers().items()))]
        return compare_sides(sides, judged, OfflineSettings(index=scifact_index, concurrency=2))


def test_reranked_side_is_the_served_rerank_of_the_bm25_window(through_proxy, os_client, scifact_index, judged):
    bm25_run, rerank_run, _ = through_proxy.runs
    assert rerank_run.outcomes == {"reranked": SUBSET}
    scorer = TermOverlapScorer()
    for query_id, text in judged.queries.items():
        window = search_bm25(os_client, scifact_index, text, 100)
        expected = [hit.doc_id for hit, _ in rerank_hits(scorer, text, window, ("title", "text"))]
        assert rerank_run.ranked_ids()[query_id] == expected
        assert sorted(expected) == sorted(bm25_run.ranked_ids()[query_id])  # same window, new order
    assert through_proxy.report["comparisons"][0]["metrics"]["Recall@100"]["delta"] == 0


def test_rerank_switched_off_by_header_equals_bm25(through_proxy):
    report = through_proxy.report
    off = report["comparisons"][1]
    assert off["variant"] == "proxy-off"
    assert all(entry["delta"] == 0 for entry in off["metrics"].values())
    assert report["per_query"]["MAP"]["proxy-off"] == report["per_query"]["MAP"]["bm25"]
    assert through_proxy.runs[2].outcomes.get("reranked", 0) == 0


def test_titles_come_back_for_the_html_examples(through_proxy):
    rerank_run = through_proxy.runs[1]
    first = next(iter(rerank_run.hits.values()))[0]
    assert set(first.source) == {"title"} and first.source["title"]  # only what was asked for, fields stripped


def test_model_failures_are_counted_as_fallbacks(scifact_index, opensearch_url, judged):
    small = select_judged(judged.queries, judged.qrels, limit=4)
    with serve_scorer(FailsAfterWarmUp(), opensearch_url, scifact_index) as proxy_url:
        comparison = compare_sides([Side("bm25", opensearch_url), Side("rerank", proxy_url)], small,
                                   OfflineSettings(index=scifact_index))
    assert comparison.runs[1].fallbacks == 4 and comparison.report["sides"][1]["fallbacks"] == 4
    assert comparison.runs[1].ranked_ids() == comparison.runs[0].ranked_ids()
    assert "rerank was never reranked: 4 fallback" in never_reranked_warnings(comparison.report)[0]


def test_a_model_that_fails_its_warm_up_stops_the_comparison_clearly(scifact_index, opensearch_url):
    with pytest.raises(ModelError, match="failed its warm-up call"):
        with serve_scorer(RaisingScorer(), opensearch_url, scifact_index):
            pass
