"""Reranked searches against the real node (SciFact): order, pagination, what is kept, `_source`, knobs.

Contract lines 6-13.
"""

import json

import numpy as np
import pytest
import requests

from es_rerank.proxy.settings import IndexRule
from es_rerank.scoring.rerank import order_by_scores
from es_rerank.types import Hit
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

WINDOW = 30
QUERY = "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors"
MATCH = {"query": {"multi_match": {"query": QUERY, "fields": ["title", "text"]}}}
SMALL = "proxy-rerank-small"


@pytest.fixture(scope="module")
def small_index(os_client):
    """Documents with missing fields and list values, and a tiny max_result_window."""
    os_client.indices.delete(index=SMALL, ignore=[404])
    os_client.indices.create(index=SMALL, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                                                             "index.max_result_window": 15}})
    docs = {"full": {"title": "gene therapy", "text": "gene therapy for cancer in mice"},
            "no-text": {"title": "gene therapy cancer trial"},
            "no-title": {"text": "cancer gene"},
            "list": {"title": ["gene", "therapy", "cancer", "cells"], "text": "gene"},
            "neither": {"other": "gene"}}
    for k in range(20):
        docs[f"filler-{k}"] = {"title": f"gene group{k % 3}", "text": "filler " * (k + 1)}
    body = "".join(json.dumps({"index": {"_id": i}}) + "\n" + json.dumps(d) + "\n" for i, d in docs.items())
    os_client.bulk(body=body, index=SMALL, refresh=True)
    yield SMALL
    os_client.indices.delete(index=SMALL, ignore=[404])


@pytest.fixture(scope="module")
def proxy(opensearch_url, scifact_index, small_index):
    rules = (IndexRule(scifact_index, window=WINDOW), IndexRule(small_index, window=20))
    with running_proxy(settings_for(opensearch_url, *rules), TermOverlapScorer()) as p:
        yield p


def search(base, index, body, params="", headers=None):
    response = requests.post(f"{base}/{index}/_search{params}", data=json.dumps(body),
                             headers={"Content-Type": "application/json", **(headers or {})})
    return response


def expected_order(opensearch_url, index, body, window, fields=("title", "text"), query=QUERY):
    """What the proxy must produce: the BM25 window from OpenSearch, ordered by the scorer (ties keep BM25 order)."""
    raw = search(opensearch_url, index, {**body, "size": window, "from": 0}).json()["hits"]["hits"]
    hits = [Hit(h["_id"], h["_score"], h["_source"]) for h in raw]
    scores = TermOverlapScorer().score_pairs([query] * len(hits), [h.text(fields) for h in hits])
    return [(hit.doc_id, score) for hit, score in order_by_scores(hits, scores)], raw


def without_took(data):
    return {k: v for k, v in data.items() if k != "took"}


def test_reranked_page_equals_the_scorers_order_over_the_window(proxy, opensearch_url, scifact_index):
    want, bm25 = expected_order(opensearch_url, scifact_index, MATCH, WINDOW)
    response = search(proxy.url, scifact_index, {**MATCH, "size": 10})
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    hits = response.json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [doc for doc, _ in want[:10]]
    np.testing.assert_allclose([h["_score"] for h in hits], [s for _, s in want[:10]], rtol=1e-6)
    assert response.json()["hits"]["max_score"] == hits[0]["_score"]
    assert [h["_id"] for h in hits] != [h["_id"] for h in bm25[:10]]  # the order really changed


def test_pages_concatenate_to_the_window_without_repeats_or_gaps(proxy, opensearch_url, scifact_index):
    want, bm25 = expected_order(opensearch_url, scifact_index, MATCH, WINDOW)
    pages = []
    for start in range(0, WINDOW + 10, 10):
        pages += [h["_id"] for h in search(proxy.url, scifact_index, {**MATCH, "from": start, "size": 10}).json()["hits"]["hits"]]
    assert pages[:WINDOW] == [doc for doc, _ in want]
    assert pages[WINDOW:] == [h["_id"] for h in search(opensearch_url, scifact_index, {**MATCH, "from": WINDOW, "size": 10}).json()["hits"]["hits"]]
    assert len(pages) == len(set(pages)) == WINDOW + 10
    odd = [h["_id"] for s in (0, 7, 14, 21) for h in search(proxy.url, scifact_index, {**MATCH, "from": s, "size": 7}).json()["hits"]["hits"]]
    assert odd == pages[:28]


def test_url_parameters_win_over_the_body(proxy, opensearch_url, scifact_index):
    want, _ = expected_order(opensearch_url, scifact_index, MATCH, WINDOW)
    hits = search(proxy.url, scifact_index, {**MATCH, "size": 10, "from": 0}, "?size=3&from=4").json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [doc for doc, _ in want[4:7]]
    q = requests.get(f"{proxy.url}/{scifact_index}/_search", params={"q": "breast cancer prognosis", "size": 5})
    assert q.headers["X-Rerank"] == "reranked" and len(q.json()["hits"]["hits"]) == 5
    source = search(proxy.url, scifact_index, {**MATCH, "_source": ["text"]}, "?_source=title&size=2").json()
    assert all(set(h["_source"]) == {"title"} for h in source["hits"]["hits"])


SKIPS = [
    ({**MATCH, "sort": [{"_id": "asc"}]}, ""),
    ({**MATCH, "search_after": [10.0, "1"], "sort": ["_score", {"_id": "asc"}]}, ""),
    ({**MATCH, "size": 0, "aggs": {"n": {"value_count": {"field": "_id"}}}}, ""),
    (MATCH, "?filter_path=hits.hits._id"),
    ({"query": {"match_all": {}}}, ""),
    ({"query": {"term": {"_id": "4983"}}}, ""),
    (MATCH, "?sort=_id:asc"),
]


@pytest.mark.parametrize("body, params", SKIPS)
def test_skip_conditions_pass_through_untouched(proxy, opensearch_url, scifact_index, body, params):
    direct = search(opensearch_url, scifact_index, body, params)
    through = search(proxy.url, scifact_index, body, params)
    assert "X-Rerank" not in through.headers
    assert through.status_code == direct.status_code
    assert without_took(through.json()) == without_took(direct.json())


def test_unconfigured_index_header_off_and_yaml_pass_through(proxy, opensearch_url, scifact_index, small_index):
    for target in (f"{scifact_index},{small_index}", "_all"):  # two different rules / no rule for all indices
        direct, through = search(opensearch_url, target, MATCH), search(proxy.url, target, MATCH)
        assert "X-Rerank" not in through.headers and through.status_code == 200
        assert without_took(through.json()) == without_took(direct.json())
    off = search(proxy.url, scifact_index, MATCH, headers={"X-Rerank": "off"})
    assert "X-Rerank" not in off.headers
    assert without_took(off.json()) == without_took(search(opensearch_url, scifact_index, MATCH).json())
    yaml_direct = search(opensearch_url, scifact_index, MATCH, "?format=yaml").text
    yaml_through = search(proxy.url, scifact_index, MATCH, "?format=yaml").text
    assert [line for line in yaml_through.splitlines() if "took" not in line] == [
        line for line in yaml_direct.splitlines() if "took" not in line]


def test_scroll_on_a_configured_index_passes_through(proxy, opensearch_url, scifact_index):
    through = search(proxy.url, scifact_index, {**MATCH, "size": 5}, "?scroll=1m")
    assert "X-Rerank" not in through.headers and "_scroll_id" in through.json()
    direct = search(opensearch_url, scifact_index, {**MATCH, "size": 5}, "?scroll=1m").json()
    assert [h["_id"] for h in through.json()["hits"]["hits"]] == [h["_id"] for h in direct["hits"]["hits"]]
    for data in (through.json(), direct):
        requests.delete(f"{opensearch_url}/_search/scroll", json={"scroll_id": data["_scroll_id"]})


def test_aggregations_highlight_and_totals_are_kept(proxy, opensearch_url, scifact_index):
    body = {**MATCH, "size": 10, "aggs": {"n": {"value_count": {"field": "_id"}}, "idx": {"terms": {"field": "_index"}}},
            "highlight": {"fields": {"title": {}}}, "track_total_hits": True,
            "suggest": {"spell": {"text": "brest cancr", "term": {"field": "title"}}}}
    direct = search(opensearch_url, scifact_index, {**body, "size": WINDOW}).json()
    through = search(proxy.url, scifact_index, body).json()
    assert through["aggregations"] == direct["aggregations"] and through["aggregations"]["n"]["value"] > 100
    assert through["suggest"] == direct["suggest"]
    assert through["hits"]["total"] == direct["hits"]["total"]
    assert through["_shards"] == direct["_shards"] and through["timed_out"] == direct["timed_out"]
    direct_hits = {h["_id"]: h for h in direct["hits"]["hits"]}
    assert any("highlight" in hit for hit in through["hits"]["hits"])
    for hit in through["hits"]["hits"]:
        assert {k: v for k, v in hit.items() if k != "_score"} == \
            {k: v for k, v in direct_hits[hit["_id"]].items() if k != "_score"}


def test_collapse_inner_hits_are_kept(proxy, opensearch_url, small_index):
    body = {"query": {"match": {"text": "filler"}},  # fillers have single-valued titles, as collapse needs
            "collapse": {"field": "title.keyword", "inner_hits": {"name": "same", "size": 3}}}
    direct = search(opensearch_url, small_index, {**body, "size": 15}).json()
    through = search(proxy.url, small_index, {**body, "size": 15})
    assert through.headers.get("X-Rerank") == "reranked", through.text
    direct_hits = {h["_id"]: h for h in direct["hits"]["hits"]}
    assert any(h["inner_hits"]["same"]["hits"]["total"]["value"] > 1 for h in through.json()["hits"]["hits"])
    for hit in through.json()["hits"]["hits"]:
        assert {k: v for k, v in hit.items() if k != "_score"} == \
            {k: v for k, v in direct_hits[hit["_id"]].items() if k != "_score"}


def test_an_empty_result_passes_through_untouched(proxy, scifact_index):
    body = {"query": {"match": {"title": "zzzxqv nonexistentword"}}}
    response = search(proxy.url, scifact_index, body)
    assert response.status_code == 200 and "X-Rerank" not in response.headers
    assert response.json()["hits"] == {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}


SOURCES = [
    ({"_source": False}, ""),
    ({"_source": ["title"]}, ""),
    ({"_source": {"excludes": ["text"]}}, ""),
    ({"_source": {"includes": ["t*"], "excludes": ["title"]}}, ""),
    ({}, "?_source=false"),
    ({}, "?_source_includes=title"),
    ({"_source": False, "fields": ["title"]}, ""),
    ({"_source": False, "docvalue_fields": ["_id"]}, ""),
    ({"stored_fields": ["_id"]}, ""),
]


@pytest.mark.parametrize("extra, params", SOURCES)
def test_source_is_exactly_what_the_client_asked_for(proxy, opensearch_url, scifact_index, extra, params):
    body = {**MATCH, **extra, "size": 10}
    direct = search(opensearch_url, scifact_index, {**body, "size": WINDOW}, params).json()
    through = search(proxy.url, scifact_index, body, params)
    assert through.headers["X-Rerank"] == "reranked"
    direct_hits = {h["_id"]: h for h in direct["hits"]["hits"]}
    for hit in through.json()["hits"]["hits"]:
        assert {k: v for k, v in hit.items() if k != "_score"} == \
            {k: v for k, v in direct_hits[hit["_id"]].items() if k != "_score"}
    # the order is the scorer's, so the proxy really read title and text despite the filter
    want, _ = expected_order(opensearch_url, scifact_index, MATCH, WINDOW)
    assert [h["_id"] for h in through.json()["hits"]["hits"]] == [doc for doc, _ in want[:10]]


def test_missing_fields_score_as_empty_and_lists_are_joined(proxy, opensearch_url, small_index):
    body = {"query": {"match": {"title": "gene therapy cancer"}}}
    query = "gene therapy cancer"
    want, _ = expected_order(opensearch_url, small_index, body, 15, query=query)
    hits = search(proxy.url, small_index, {**body, "size": 15}).json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [doc for doc, _ in want]
    scores = {h["_id"]: h["_score"] for h in hits}
    assert scores["list"] == pytest.approx(3 - 1e-4 * 5)  # title list joined: gene therapy cancer cells + gene


def test_window_is_clamped_to_max_result_window(proxy, opensearch_url, small_index):
    body = {"query": {"match": {"title": "gene"}}}
    page = search(proxy.url, small_index, {**body, "size": 10})
    assert page.headers["X-Rerank"] == "reranked"  # window 20 asked, 15 fetched: no error
    too_deep = {**body, "from": 10, "size": 10}
    direct, through = search(opensearch_url, small_index, too_deep), search(proxy.url, small_index, too_deep)
    assert through.status_code == direct.status_code == 400
    assert through.content == direct.content


def test_ext_rerank_knobs_are_applied_and_never_reach_opensearch(proxy, opensearch_url, scifact_index):
    knobs = {"window": 12, "fields": ["title"], "query_text": "breast cancer tumors"}
    response = search(proxy.url, scifact_index, {**MATCH, "size": 12, "ext": {"rerank": knobs}})
    assert response.status_code == 200, response.text
    want, _ = expected_order(opensearch_url, scifact_index, MATCH, 12, fields=("title",), query=knobs["query_text"])
    assert [h["_id"] for h in response.json()["hits"]["hits"]] == [doc for doc, _ in want]
    off = search(proxy.url, scifact_index, {**MATCH, "ext": {"rerank": {"enabled": False}}})
    assert off.status_code == 200 and "X-Rerank" not in off.headers
    sorted_ = search(proxy.url, scifact_index, {**MATCH, "sort": ["_doc"], "ext": {"rerank": {"window": 5}}})
    assert sorted_.status_code == 200  # stripped even when the search passes through
    rejected = search(opensearch_url, scifact_index, {**MATCH, "ext": {"rerank": {"window": 5}}})
    assert rejected.status_code == 400  # what would happen if the proxy forwarded it


def test_bad_knobs_get_an_opensearch_shaped_400(proxy, scifact_index):
    response = search(proxy.url, scifact_index, {**MATCH, "ext": {"rerank": {"window": "many"}}})
    assert response.status_code == 400
    error = response.json()
    assert error["status"] == 400 and error["error"]["type"] == "illegal_argument_exception"
    assert "ext.rerank.window must be an integer" in error["error"]["reason"]


def test_provenance_reports_each_hits_bm25_score_and_rank(proxy, opensearch_url, scifact_index):
    _, bm25 = expected_order(opensearch_url, scifact_index, MATCH, WINDOW)
    bm25_rank = {h["_id"]: (rank + 1, h["_score"]) for rank, h in enumerate(bm25)}
    hits = search(proxy.url, scifact_index, {**MATCH, "ext": {"rerank": {"provenance": True}}}).json()["hits"]["hits"]
    for hit in hits:
        rank, score = bm25_rank[hit["_id"]]
        assert hit["_rerank"] == {"bm25_score": score, "bm25_rank": rank, "reranked": True}
    plain = search(proxy.url, scifact_index, MATCH).json()["hits"]["hits"]
    assert all("_rerank" not in h for h in plain)
