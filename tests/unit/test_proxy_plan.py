"""Request planning: which searches are reranked, query text, URL-over-body, window math, ext.rerank."""

import json

import pytest

from es_rerank.proxy.settings import IndexRule, ProxySettings, UpstreamSettings
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.plan import (PassThrough, RerankPlan, SearchRequest, lucene_text, parse_params, plan_search,
                                  query_text, window_request)

SETTINGS = ProxySettings(UpstreamSettings("http://127.0.0.1:9200"),
                         rules=(IndexRule("docs", fields=("title", "text"), window=50, deadline_ms=200),
                                IndexRule("logs-*", fields=("message",))),
                         max_window=500)
MATCH = {"query": {"match": {"text": "gene therapy"}}}


def plan(body=None, path="/docs/_search", query="", headers=None, method="POST", raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return plan_search(SearchRequest(method, path, query, headers or {"Content-Type": "application/json"}, data),
                       SETTINGS)


def test_plain_relevance_search_is_reranked_with_the_index_rule():
    result = plan(MATCH)
    assert isinstance(result, RerankPlan)
    assert result.spec.query_text == "gene therapy"
    assert result.spec.fields == ("title", "text")
    assert result.spec.window == 50 and result.spec.deadline_s == 0.2
    assert (result.spec.start, result.spec.size) == (0, 10)
    assert result.passthrough_body is None  # nothing to strip: the client's bytes can go as they are


def test_get_and_wildcard_rules_and_no_index_paths():
    assert isinstance(plan(MATCH, method="GET"), RerankPlan)
    assert isinstance(plan(MATCH, path="/logs-2024/_search"), RerankPlan)
    assert plan(MATCH, path="/other/_search").reason == "index not configured for reranking"
    assert plan(MATCH, path="/docs,other/_search").reason == "index not configured for reranking"
    assert plan(MATCH, path="/docs,logs-1/_search").reason == "index not configured for reranking"  # two rules
    assert plan(MATCH, path="/_search").reason == "index not configured for reranking"
    assert plan(MATCH, path="/docs/_search/template").reason == "not a search"
    assert plan(MATCH, method="PUT").reason == "not a search"


@pytest.mark.parametrize("body, query, reason", [
    ({**MATCH, "sort": [{"date": "desc"}]}, "", "sorted by something other than _score"),
    ({**MATCH, "sort": [{"_score": "asc"}]}, "", "sorted by something other than _score"),
    (MATCH, "sort=date:desc", "sorted by something other than _score"),
    (MATCH, "scroll=1m", "scroll search"),
    ({**MATCH, "search_after": [1.0]}, "", "search_after pagination"),
    ({**MATCH, "pit": {"id": "x"}}, "", "point-in-time search"),
    ({**MATCH, "size": 0}, "", "size=0 asks for no hits"),
    (MATCH, "size=0", "size=0 asks for no hits"),
    (MATCH, "filter_path=hits.hits._id", "filter_path given"),
    (MATCH, "format=yaml", "non-JSON response format"),
    ({"query": {"match_all": {}}}, "", "no query text found"),
    ({"query": {"term": {"id": "5"}}}, "", "no query text found"),
    ({**MATCH, "size": "ten"}, "", "from/size are not non-negative integers: OpenSearch answers it"),
    ({**MATCH, "stored_fields": "_none_"}, "", "stored_fields=_none_ fetches no text"),
])
def test_skip_conditions_pass_through(body, query, reason):
    result = plan(body, query=query)
    assert isinstance(result, PassThrough)
    assert result.reason == reason
    assert result.body is None  # no ext.rerank: the client's exact bytes go upstream


def test_score_sorts_still_rerank():
    for sort in ("_score", ["_score"], [{"_score": "desc"}], {"_score": {"order": "desc"}}):
        assert isinstance(plan({**MATCH, "sort": sort}), RerankPlan)
    assert isinstance(plan(MATCH, query="sort=_score"), RerankPlan)


def test_malformed_or_non_json_bodies_pass_through_for_opensearch_to_answer():
    assert plan(raw=b'{"query": {"match": ').reason == "malformed JSON: OpenSearch answers it"
    assert plan(raw=b"[1, 2]").reason == "body is not a JSON object"
    assert plan(MATCH, headers={"Content-Type": "application/x-www-form-urlencoded"}).reason == "body is not JSON"
    assert plan(MATCH, headers={"Accept": "application/yaml"}).reason == "non-JSON response format"


def test_header_switches_reranking_off():
    for value in ("off", "OFF", "false", "0"):
        assert plan(MATCH, headers={"X-Rerank": value}).reason == "switched off by the X-Rerank header"
    assert isinstance(plan(MATCH, headers={"X-Rerank": "on"}), RerankPlan)


def test_url_parameters_win_over_the_body():
    result = plan({**MATCH, "size": 5, "from": 1}, query="size=7&from=3&typed_keys")
    assert (result.spec.start, result.spec.size) == (3, 7)
    upstream = window_request(result, 10000)
    assert upstream.path_qs == "/docs/_search?typed_keys"  # size/from moved into the body, the rest untouched
    assert json.loads(upstream.body)["size"] == 50 and json.loads(upstream.body)["from"] == 0
    q_plan = plan(MATCH, query="q=title:cancer+AND+cells")
    assert q_plan.spec.query_text == "cancer cells"
    assert window_request(q_plan, 10000).path_qs == "/docs/_search?q=title:cancer+AND+cells"


def test_window_math_and_the_max_result_window_clamp():
    deep = plan({**MATCH, "from": 40, "size": 30})
    assert json.loads(window_request(deep, 10000).body)["size"] == 70  # from+size beyond the window
    clamped = window_request(plan(MATCH), 20)
    assert clamped.spec.window == 20 and json.loads(clamped.body)["size"] == 20
    too_deep = window_request(plan({**MATCH, "from": 15, "size": 10}), 20)
    assert isinstance(too_deep, PassThrough) and too_deep.body is None


def test_query_text_from_the_common_query_types():
    assert query_text({"multi_match": {"query": "a b", "fields": ["x"]}}) == "a b"
    assert query_text({"match_phrase": {"text": "heart attack"}}) == "heart attack"
    assert query_text({"match": {"text": {"query": "x", "operator": "and"}}}) == "x"
    assert query_text({"query_string": {"query": "title:(gene OR dna) AND \"cell line\"~2"}}) == "gene dna cell line"
    assert query_text({"simple_query_string": {"query": "+covid -flu | vaccine*"}}) == "covid flu vaccine"
    assert query_text({"bool": {"must": {"match": {"t": "a"}}, "should": [{"match_phrase": {"t": "b"}}],
                                "filter": [{"match": {"year": "2020"}}], "must_not": {"match": {"t": "c"}}}}) == "a b"
    assert query_text({"function_score": {"query": {"bool": {"must": [{"match": {"t": "deep"}}]}}}}) == "deep"
    assert query_text({"dis_max": {"queries": [{"match": {"t": "x"}}, {"match": {"u": "x"}}]}}) == "x"
    assert query_text({"boosting": {"positive": {"match": {"t": "p"}}, "negative": {"match": {"t": "n"}}}}) == "p"
    assert query_text({"constant_score": {"filter": {"match": {"t": "f"}}}}) == ""


def test_lucene_text_keeps_ordinary_words():
    assert lucene_text("covid-19 spread") == "covid-19 spread"
    assert lucene_text("text:\"x y\"^3") == "x y"


def test_ext_rerank_knobs_are_read_and_removed():
    body = {**MATCH, "ext": {"rerank": {"window": 20, "fields": ["title"], "query_text": "typed", "provenance": True},
                             "other": {"k": 1}}}
    result = plan(body)
    assert (result.spec.window, result.spec.fields, result.spec.query_text, result.spec.provenance) == \
        (20, ("title",), "typed", True)
    assert result.body["ext"] == {"other": {"k": 1}}
    assert json.loads(result.passthrough_body) == {**MATCH, "ext": {"other": {"k": 1}}}
    upstream = json.loads(window_request(result, 10000).body)
    assert "rerank" not in upstream["ext"]


def test_ext_rerank_query_text_makes_any_query_rerankable():
    result = plan({"query": {"term": {"id": "5"}}, "ext": {"rerank": {"query_text": "what I meant"}}})
    assert isinstance(result, RerankPlan) and result.spec.query_text == "what I meant"
    assert "ext" not in result.body


def test_ext_rerank_is_stripped_from_searches_that_pass_through():
    off = plan({**MATCH, "ext": {"rerank": {"enabled": False}}})
    assert off.reason == "switched off by ext.rerank.enabled" and json.loads(off.body) == MATCH
    sorted_ = plan({**MATCH, "sort": ["date"], "ext": {"rerank": {"window": 5}}})
    assert json.loads(sorted_.body) == {**MATCH, "sort": ["date"]}
    other_index = plan({**MATCH, "ext": {"rerank": {"window": 5}}}, path="/other/_search")
    assert json.loads(other_index.body) == MATCH


@pytest.mark.parametrize("knobs, message", [
    ({"window": 0}, "ext.rerank.window must be an integer from 1 to 500, got 0"),
    ({"window": 501}, "ext.rerank.window must be an integer from 1 to 500, got 501"),
    ({"enabled": "yes"}, "ext.rerank.enabled must be true or false, got 'yes'"),
    ({"fields": []}, "ext.rerank.fields must be a non-empty list of field names, got []"),
    ({"query_text": " "}, "ext.rerank.query_text must be a non-empty string, got ' '"),
    ({"windw": 5}, "unknown ext.rerank key(s) ['windw']; expected some of"),
])
def test_bad_knobs_get_a_400_that_says_what_was_expected(knobs, message):
    with pytest.raises(ProxyHTTPError) as caught:
        plan({**MATCH, "ext": {"rerank": knobs}})
    assert caught.value.status == 400 and caught.value.reason.startswith(message)


def test_json_depth_is_capped():
    deep = MATCH
    for _ in range(120):
        deep = {"bool": {"must": deep}}
    with pytest.raises(ProxyHTTPError) as caught:
        plan({"query": deep})
    assert caught.value.status == 400 and "nests" in caught.value.reason


def test_source_handling_decides_where_text_comes_from():
    whole = plan(MATCH)
    assert whole.spec.text_source == "_source" and whole.spec.added_fields == ()
    no_source = plan({**MATCH, "_source": False})
    assert no_source.spec.text_source == "fields" and no_source.spec.added_fields == ("title", "text")
    assert no_source.body["fields"] == ["title", "text"] and no_source.body["_source"] is False
    client_fields = plan({**MATCH, "_source": ["title"], "fields": ["t*"]})
    assert client_fields.spec.added_fields == ()  # the client's own pattern already asks for both
    url_filter = plan(MATCH, query="_source_includes=title")
    assert url_filter.spec.text_source == "fields" and "_source_includes=title" in window_request(url_filter, 100).path_qs


def test_parse_params_decodes_like_opensearch():
    assert parse_params("q=a%20b+c&size=5&size=6") == {"q": "a b c", "size": "6"}


RETRIEVER = {"retriever": {"standard": {"query": {"match": {"text": "gene therapy"}}}}}


def test_a_standard_retriever_is_reranked_like_its_query():
    result = plan({**RETRIEVER, "from": 5, "size": 3})
    assert isinstance(result, RerankPlan)
    assert (result.spec.query_text, result.spec.start, result.spec.size) == ("gene therapy", 5, 3)
    body = json.loads(window_request(result, max_result_window=10000).body)
    assert body == {**RETRIEVER, "from": 0, "size": 50}  # the window is asked for beside the retriever


@pytest.mark.parametrize("body, reason", [
    ({"retriever": {"rrf": {"retrievers": [RETRIEVER["retriever"]]}}}, "a retriever other than standard"),
    ({"retriever": {"knn": {"field": "v", "query_vector": [1, 0], "k": 5, "num_candidates": 10}}},
     "a retriever other than standard"),
    ({"retriever": {"text_similarity_reranker": {"retriever": RETRIEVER["retriever"], "field": "text"}}},
     "a retriever other than standard"),
    ({"retriever": {"standard": {**RETRIEVER["retriever"]["standard"], "sort": [{"year": "desc"}]}}},
     "sorted by something other than _score"),
    ({"retriever": {"standard": {**RETRIEVER["retriever"]["standard"], "search_after": [1.5]}}},
     "search_after pagination"),
    ({**MATCH, "knn": {"field": "v", "query_vector": [1, 0], "k": 5, "num_candidates": 10}}, "Elasticsearch's knn given"),
    ({**MATCH, "rank": {"rrf": {}}}, "Elasticsearch's rank given"),
    ({**MATCH, "pit": {"id": "abc", "keep_alive": "1m"}}, "point-in-time search"),
])
def test_elasticsearchs_own_ranking_passes_through(body, reason):
    result = plan(body)
    assert isinstance(result, PassThrough) and result.reason.startswith(reason), result


def test_compatible_with_media_types_count_as_json():
    compat = "application/vnd.elasticsearch+json; compatible-with=9"
    assert isinstance(plan(MATCH, headers={"Content-Type": compat, "Accept": compat}), RerankPlan)
