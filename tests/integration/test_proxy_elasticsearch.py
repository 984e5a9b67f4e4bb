"""The proxy in front of a real Elasticsearch 9 node, driven by Elasticsearch's own Python client.

The client refuses a server that does not name itself Elasticsearch (its product check) and
speaks `compatible-with` media types, so every answer the proxy makes here must look like
Elasticsearch's: reranked pages, its own errors, and what it relays. Marked `engines` through
the `elasticsearch9` fixture (ES_RERANK_ENGINES=1 runs them).
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
from elasticsearch import ApiError, BadRequestError, Elasticsearch

from es_rerank.proxy.settings import IndexRule, UpstreamSettings
from tests.proxy_support import BackgroundApp, RawUpstream, TermOverlapScorer, running_proxy, settings_for, words

INDEX = "test-i18-proxy-es"
QUERY = "wing lift"
MATCH = {"match": {"text": QUERY}}
# BM25 ranks the longer wing-only documents first among themselves; the model, shorter first.
DOCS = [{"text": "wing " * k, "v": [1.0, float(k)]} for k in range(1, 8)] + \
       [{"text": "wing lift " + "filler " * k, "v": [float(k), 1.0]} for k in (5, 10, 20)]
COMPATIBLE_9 = "application/vnd.elasticsearch+json;compatible-with=9"


@pytest.fixture(scope="module")
def es_index(elasticsearch9):
    direct = Elasticsearch(elasticsearch9.url, request_timeout=60)
    direct.options(ignore_status=404).indices.delete(index=INDEX)
    direct.indices.create(index=INDEX, settings={"number_of_shards": 1, "number_of_replicas": 0},
                          mappings={"properties": {"text": {"type": "text"},
                                                   "v": {"type": "dense_vector", "dims": 2, "similarity": "cosine"}}})
    direct.bulk(operations=[line for k, doc in enumerate(DOCS) for line in ({"index": {"_id": str(k)}}, doc)],
                index=INDEX, refresh=True)
    yield direct
    direct.options(ignore_status=404).indices.delete(index=INDEX)


@pytest.fixture(scope="module")
def proxy(elasticsearch9, es_index):
    # --upstream-engine left at auto: the proxy must tell Elasticsearch from its answers.
    with running_proxy(settings_for(elasticsearch9.url, IndexRule(INDEX, fields=("text",), window=20)),
                       TermOverlapScorer()) as p:
        yield p


@pytest.fixture(scope="module")
def client(proxy):
    return Elasticsearch(proxy.url, request_timeout=60, max_retries=0)


def model_order(hits: list[dict]) -> list[str]:
    """The ids in the order the term-overlap model ranks these hits (the proxy's order over the window)."""
    def score(hit):
        doc = words(hit["_source"]["text"])
        return len(set(words(QUERY)) & set(doc)) - 1e-4 * len(doc)
    return [hit["_id"] for hit in sorted(hits, key=score, reverse=True)]


def without_took(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "took"}


def test_the_proxy_tells_elasticsearch_from_its_answers(proxy):
    assert proxy.context.upstream.engine.current == "elasticsearch"


def test_a_reranked_search_has_elasticsearchs_shape_and_headers(client, es_index):
    bm25 = es_index.search(index=INDEX, query=MATCH, size=20)
    response = client.search(index=INDEX, query=MATCH, size=5)  # the client's product check passed
    headers = response.meta.headers
    assert headers["X-Rerank"] == "reranked"
    assert headers["X-Elastic-Product"] == "Elasticsearch" and headers["Content-Type"] == COMPATIBLE_9
    ids = [hit["_id"] for hit in response["hits"]["hits"]]
    expected = model_order(bm25["hits"]["hits"])[:5]
    assert ids == expected and ids != [hit["_id"] for hit in bm25["hits"]["hits"][:5]]
    assert set(response.body) == set(bm25.body)
    assert response["hits"]["total"] == bm25["hits"]["total"] and response["_shards"] == bm25["_shards"]
    assert response["hits"]["max_score"] == response["hits"]["hits"][0]["_score"]


def test_a_standard_retriever_is_reranked_like_its_query(client):
    by_query = client.search(index=INDEX, query=MATCH, size=4, from_=2)
    by_retriever = client.search(index=INDEX, retriever={"standard": {"query": MATCH}}, size=4, from_=2)
    assert by_retriever.meta.headers["X-Rerank"] == "reranked"
    assert [h["_id"] for h in by_retriever["hits"]["hits"]] == [h["_id"] for h in by_query["hits"]["hits"]]


def test_msearch_with_the_clients_ndjson_media_type_is_reranked(client, es_index):
    bm25 = es_index.search(index=INDEX, query=MATCH, size=20)
    response = client.msearch(searches=[{"index": INDEX}, {"query": MATCH, "size": 3}])
    assert response.meta.headers["X-Rerank"] == "reranked"
    assert [h["_id"] for h in response["responses"][0]["hits"]["hits"]] == model_order(bm25["hits"]["hits"])[:3]


def test_compatible_with_8_is_answered_in_8(proxy):
    compatible_8 = "application/vnd.elasticsearch+json; compatible-with=8"
    response = requests.post(f"{proxy.url}/{INDEX}/_search", data=json.dumps({"query": MATCH}),
                             headers={"Content-Type": compatible_8, "Accept": compatible_8}, timeout=30)
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    assert response.headers["Content-Type"] == "application/vnd.elasticsearch+json;compatible-with=8"


def test_the_proxys_own_error_comes_back_in_elasticsearchs_format(client):
    with pytest.raises(BadRequestError) as caught:
        client.search(index=INDEX, query=MATCH, ext={"rerank": {"window": 0}})
    error = caught.value
    assert error.meta.headers["X-Elastic-Product"] == "Elasticsearch"
    assert error.meta.headers["Content-Type"] == COMPATIBLE_9
    assert error.message == "illegal_argument_exception"  # the client read Elasticsearch's error object
    cause = {"type": "illegal_argument_exception", "reason": error.body["error"]["reason"]}
    assert error.body == {"error": {"root_cause": [cause], **cause}, "status": 400}
    assert "ext.rerank.window must be an integer" in cause["reason"]


def test_elasticsearchs_own_errors_pass_through_unchanged(proxy, elasticsearch9):
    body = json.dumps({"query": {"matchx": {"text": QUERY}}})
    through = requests.post(f"{proxy.url}/{INDEX}/_search", data=body, headers={"Content-Type": "application/json"})
    direct = requests.post(f"{elasticsearch9.url}/{INDEX}/_search", data=body, headers={"Content-Type": "application/json"})
    assert through.status_code == direct.status_code == 400 and through.content == direct.content
    assert through.headers["X-Elastic-Product"] == "Elasticsearch"


def test_an_unreachable_elasticsearch_is_a_502_in_its_format():
    with RawUpstream() as dropping, \
            running_proxy(settings_for(dropping.url, upstream=UpstreamSettings(dropping.url, engine="elasticsearch"))) as p:
        with pytest.raises(ApiError) as caught:
            Elasticsearch(p.url, max_retries=0).search(index=INDEX, query=MATCH)
    error = caught.value
    assert error.meta.status == 502 and error.message == "upstream_unavailable_exception"
    assert error.meta.headers["X-Elastic-Product"] == "Elasticsearch" and error.meta.headers["Content-Type"] == COMPATIBLE_9
    assert error.body["error"]["reason"].startswith("Elasticsearch at ")


def test_a_knn_search_passes_through_unchanged(client, es_index):
    knn = {"field": "v", "query_vector": [1.0, 2.0], "k": 3, "num_candidates": 10}
    through = client.search(index=INDEX, knn=knn, query=MATCH, size=5)
    direct = es_index.search(index=INDEX, knn=knn, query=MATCH, size=5)
    assert "X-Rerank" not in through.meta.headers
    assert without_took(through.body) == without_took(direct.body)


def test_a_point_in_time_search_passes_through_unchanged(client, es_index):
    pit = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    try:
        through = client.search(pit={"id": pit, "keep_alive": "1m"}, query=MATCH, size=5)
        direct = es_index.search(pit={"id": pit, "keep_alive": "1m"}, query=MATCH, size=5)
        assert "X-Rerank" not in through.meta.headers
        assert without_took(through.body) == without_took(direct.body)
    finally:
        assert client.close_point_in_time(id=pit)["succeeded"]


def test_search_after_passes_through_unchanged(client, es_index):
    page = {"query": MATCH, "size": 3, "sort": [{"_score": "desc"}, "_doc"], "search_after": [0.5, 3]}
    through, direct = client.search(index=INDEX, **page), es_index.search(index=INDEX, **page)
    assert "X-Rerank" not in through.meta.headers and through["hits"]["hits"]
    assert without_took(through.body) == without_took(direct.body)


def test_async_search_is_relayed_as_elasticsearch_answers_it(proxy, elasticsearch9):
    # The integ-test zip has no async-search module: its own answer to the path must come back as it is.
    path = f"/{INDEX}/_async_search?wait_for_completion_timeout=5s"
    body = json.dumps({"query": MATCH})
    through = requests.post(proxy.url + path, data=body, headers={"Content-Type": "application/json"})
    direct = requests.post(elasticsearch9.url + path, data=body, headers={"Content-Type": "application/json"})
    assert (through.status_code, through.content) == (direct.status_code, direct.content)
    assert "X-Rerank" not in through.headers


def es_capture_app(seen: list):
    """An upstream recording what reaches it, answering as Elasticsearch names itself: a real node
    cannot show which Authorization header arrived, and the integ-test zip has no security module."""
    from aiohttp import web

    async def record(request):
        seen.append({"path": request.raw_path, "authorization": request.headers.get("Authorization")})
        return web.json_response({}, headers={"X-Elastic-Product": "Elasticsearch"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


@pytest.mark.parametrize("credentials", [{"api_key": ("id-1", "s3cret")}, {"basic_auth": ("reader", "p4ss")}])
def test_api_key_and_basic_auth_reach_elasticsearch_unchanged(credentials):
    seen: list = []
    with BackgroundApp(es_capture_app(seen)) as upstream, \
            running_proxy(settings_for(upstream.url, IndexRule(INDEX, fields=("text",))), TermOverlapScorer()) as p:
        client = Elasticsearch(p.url, max_retries=0, **credentials)
        client.info()
        client.search(index=INDEX, query=MATCH)  # the proxy's own reads of the index go with the client's credentials
    scheme, pair = ("ApiKey", credentials["api_key"]) if "api_key" in credentials else ("Basic", credentials["basic_auth"])
    expected = f"{scheme} {base64.b64encode(':'.join(pair).encode()).decode()}"
    # The start-up probe (GET /) carries no credentials: the proxy never adds any of its own.
    assert [r["authorization"] for r in seen] == [None] + [expected] * (len(seen) - 1), seen
    assert len(seen) >= 4  # the probe, GET /, the index's max_result_window, the search
