"""The proxy's client contract against every upstream of the support matrix (issue 18 item 4).

OpenSearch 2.19 (the shared node) and 3.x are driven by opensearch-py; Elasticsearch 8.19 and 9.x
by raw HTTP with the `compatible-with` media types their clients send (the installed
elasticsearch-py 9 refuses an 8.x server). The full Elasticsearch 9 client suite is
test_proxy_elasticsearch.py; this file asks the same few questions of each engine:
a reranked search keeps the engine's shape and headers, a request the proxy does not rerank
comes back byte for byte, the proxy's own error is in the engine's format, and `_msearch` is reranked.
"""

from __future__ import annotations

import json

import pytest
import requests
from opensearchpy import OpenSearch, RequestError

from es_rerank.proxy.settings import IndexRule
from tests.integration.test_proxy_elasticsearch import MATCH, model_order
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

INDEX = "test-i18-matrix"
# The same corpus as test_proxy_elasticsearch.py without its vectors (OpenSearch names that type knn_vector).
TEXTS = ["wing " * k for k in range(1, 8)] + ["wing lift " + "filler " * k for k in (5, 10, 20)]
JSON = {"Content-Type": "application/json"}


def index_texts(url: str) -> None:
    """A fresh one-shard index of TEXTS through the engine's plain REST API (both engines accept it)."""
    requests.delete(f"{url}/{INDEX}", timeout=60)
    created = requests.put(f"{url}/{INDEX}", timeout=60, headers=JSON, json={
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {"text": {"type": "text"}}}})
    assert created.status_code == 200, created.text
    bulk = "".join(json.dumps({"index": {"_id": str(k)}}) + "\n" + json.dumps({"text": text}) + "\n"
                   for k, text in enumerate(TEXTS))
    loaded = requests.post(f"{url}/{INDEX}/_bulk?refresh=true", data=bulk, timeout=60,
                           headers={"Content-Type": "application/x-ndjson"})
    assert loaded.status_code == 200 and not loaded.json()["errors"], loaded.text[:500]


def bm25_hits(url: str) -> list[dict]:
    return requests.post(f"{url}/{INDEX}/_search", json={"query": MATCH, "size": 20}, timeout=60).json()["hits"]["hits"]


@pytest.fixture(scope="module", params=["2.19", pytest.param("3", marks=pytest.mark.engines)], ids=["os2.19", "os3"])
def opensearch_upstream(request):
    """The upstream URL of each OpenSearch line in turn, INDEX freshly indexed on it."""
    url = request.getfixturevalue("opensearch_url" if request.param == "2.19" else "opensearch3")
    url = url if isinstance(url, str) else url.url
    index_texts(url)
    yield url
    requests.delete(f"{url}/{INDEX}", timeout=60)


@pytest.fixture(scope="module")
def opensearch_proxy(opensearch_upstream):
    with running_proxy(settings_for(opensearch_upstream, IndexRule(INDEX, fields=("text",), window=20)),
                       TermOverlapScorer()) as p:
        yield p


@pytest.fixture(scope="module")
def opensearch_client(opensearch_proxy):
    return OpenSearch(opensearch_proxy.url, timeout=60, max_retries=0)


def test_opensearch_a_reranked_search_keeps_the_shape_and_headers(opensearch_proxy, opensearch_client, opensearch_upstream):
    assert opensearch_proxy.context.upstream.engine.current == "opensearch"
    bm25 = requests.post(f"{opensearch_upstream}/{INDEX}/_search", json={"query": MATCH, "size": 20}, timeout=60)
    body = opensearch_client.search(index=INDEX, body={"query": MATCH, "size": 5})
    ids = [hit["_id"] for hit in body["hits"]["hits"]]
    assert ids == model_order(bm25.json()["hits"]["hits"])[:5] != [h["_id"] for h in bm25.json()["hits"]["hits"][:5]]
    assert set(body) == set(bm25.json())
    assert body["hits"]["total"] == bm25.json()["hits"]["total"] and body["_shards"] == bm25.json()["_shards"]
    raw = requests.post(f"{opensearch_proxy.url}/{INDEX}/_search", json={"query": MATCH, "size": 5}, timeout=60)
    assert raw.headers["X-Rerank"] == "reranked"
    assert raw.headers["Content-Type"] == bm25.headers["Content-Type"]
    assert "X-Elastic-Product" not in raw.headers


@pytest.mark.parametrize("path", [f"/{INDEX}/_doc/3", f"/{INDEX}/_count?q=text:lift", "/_cat/indices/" + INDEX])
def test_opensearch_a_request_not_reranked_passes_through_byte_for_byte(opensearch_proxy, opensearch_upstream, path):
    through = requests.get(opensearch_proxy.url + path, timeout=60)
    direct = requests.get(opensearch_upstream + path, timeout=60)
    assert (through.status_code, through.content) == (direct.status_code, direct.content) and through.status_code == 200
    assert through.headers["Content-Type"] == direct.headers["Content-Type"] and "X-Rerank" not in through.headers


def test_opensearch_the_proxys_own_error_is_in_opensearchs_format(opensearch_client):
    with pytest.raises(RequestError) as caught:
        opensearch_client.search(index=INDEX, body={"query": MATCH, "ext": {"rerank": {"window": 0}}})
    error = caught.value
    assert error.status_code == 400 and error.error == "illegal_argument_exception"  # the client read OpenSearch's error
    cause = {"type": "illegal_argument_exception", "reason": error.info["error"]["reason"]}
    assert error.info == {"error": {"root_cause": [cause], **cause}, "status": 400}
    assert "ext.rerank.window must be an integer" in cause["reason"]


def test_opensearch_msearch_is_reranked(opensearch_client, opensearch_upstream):
    expected = model_order(bm25_hits(opensearch_upstream))[:3]
    body = opensearch_client.msearch(body=[{"index": INDEX}, {"query": MATCH, "size": 3},
                                           {"index": INDEX}, {"query": {"match_all": {}}, "size": 1, "sort": ["_doc"]}])
    first, second = body["responses"]
    assert [h["_id"] for h in first["hits"]["hits"]] == expected
    assert [h["_id"] for h in second["hits"]["hits"]] == ["0"]  # a sorted search is the node's own answer


@pytest.fixture(scope="module", params=[pytest.param("elasticsearch8", marks=pytest.mark.engines),
                                        pytest.param("elasticsearch9", marks=pytest.mark.engines)], ids=["es8", "es9"])
def elasticsearch_upstream(request):
    """Each Elasticsearch line in turn, INDEX freshly indexed on it."""
    node = request.getfixturevalue(request.param)
    index_texts(node.url)
    yield node
    requests.delete(f"{node.url}/{INDEX}", timeout=60)


@pytest.fixture(scope="module")
def elasticsearch_proxy(elasticsearch_upstream):
    with running_proxy(settings_for(elasticsearch_upstream.url, IndexRule(INDEX, fields=("text",), window=20)),
                       TermOverlapScorer()) as p:
        yield p


def compatible(node, ndjson: bool = False) -> dict:
    """The headers an Elasticsearch client of the node's major version sends."""
    media = f"application/vnd.elasticsearch+{'x-ndjson' if ndjson else 'json'}; compatible-with={node.version.split('.')[0]}"
    return {"Accept": f"application/vnd.elasticsearch+json; compatible-with={node.version.split('.')[0]}",
            "Content-Type": media}


def test_elasticsearch_a_reranked_search_keeps_the_shape_and_headers(elasticsearch_proxy, elasticsearch_upstream):
    node = elasticsearch_upstream
    assert elasticsearch_proxy.context.upstream.engine.current == "elasticsearch"
    body = json.dumps({"query": MATCH, "size": 5})
    direct = requests.post(f"{node.url}/{INDEX}/_search", data=json.dumps({"query": MATCH, "size": 20}),
                           headers=compatible(node), timeout=60)
    through = requests.post(f"{elasticsearch_proxy.url}/{INDEX}/_search", data=body, headers=compatible(node), timeout=60)
    assert through.status_code == 200 and through.headers["X-Rerank"] == "reranked"
    assert through.headers["X-Elastic-Product"] == direct.headers["X-Elastic-Product"] == "Elasticsearch"
    major = node.version.split(".")[0]
    assert through.headers["Content-Type"] == direct.headers["Content-Type"] == \
        f"application/vnd.elasticsearch+json;compatible-with={major}"
    served, bm25 = through.json(), direct.json()
    ids = [hit["_id"] for hit in served["hits"]["hits"]]
    assert ids == model_order(bm25["hits"]["hits"])[:5] != [h["_id"] for h in bm25["hits"]["hits"][:5]]
    assert set(served) == set(bm25)
    assert served["hits"]["total"] == bm25["hits"]["total"] and served["_shards"] == bm25["_shards"]


@pytest.mark.parametrize("path", [f"/{INDEX}/_doc/3", f"/{INDEX}/_count?q=text:lift", f"/{INDEX}/_mapping"])
def test_elasticsearch_a_request_not_reranked_passes_through_byte_for_byte(elasticsearch_proxy, elasticsearch_upstream, path):
    headers = compatible(elasticsearch_upstream)
    del headers["Content-Type"]
    through = requests.get(elasticsearch_proxy.url + path, headers=headers, timeout=60)
    direct = requests.get(elasticsearch_upstream.url + path, headers=headers, timeout=60)
    assert (through.status_code, through.content) == (direct.status_code, direct.content) and through.status_code == 200
    assert through.headers["Content-Type"] == direct.headers["Content-Type"] and "X-Rerank" not in through.headers
    assert through.headers["X-Elastic-Product"] == "Elasticsearch"


def test_elasticsearch_the_proxys_own_error_is_in_elasticsearchs_format(elasticsearch_proxy, elasticsearch_upstream):
    node = elasticsearch_upstream
    body = json.dumps({"query": MATCH, "ext": {"rerank": {"window": 0}}})
    answer = requests.post(f"{elasticsearch_proxy.url}/{INDEX}/_search", data=body, headers=compatible(node), timeout=60)
    assert answer.status_code == 400
    assert answer.headers["X-Elastic-Product"] == "Elasticsearch"
    assert answer.headers["Content-Type"] == f"application/vnd.elasticsearch+json;compatible-with={node.version.split('.')[0]}"
    error = answer.json()
    cause = {"type": "illegal_argument_exception", "reason": error["error"]["reason"]}
    assert error == {"error": {"root_cause": [cause], **cause}, "status": 400}
    assert "ext.rerank.window must be an integer" in cause["reason"]


def test_elasticsearch_msearch_is_reranked(elasticsearch_proxy, elasticsearch_upstream):
    node = elasticsearch_upstream
    expected = model_order(bm25_hits(node.url))[:3]
    lines = [{"index": INDEX}, {"query": MATCH, "size": 3}]
    answer = requests.post(f"{elasticsearch_proxy.url}/_msearch", data="".join(json.dumps(line) + "\n" for line in lines),
                           headers=compatible(node, ndjson=True), timeout=60)
    assert answer.status_code == 200 and answer.headers["X-Rerank"] == "reranked"
    assert answer.headers["X-Elastic-Product"] == "Elasticsearch"
    assert [h["_id"] for h in answer.json()["responses"][0]["hits"]["hits"]] == expected
