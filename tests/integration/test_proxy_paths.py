"""Encoded slashes and backslashes are relayed as they came; decisions use the decoded segments (issue 14, item 2).

Document ids holding URLs, date-math index names and opensearch-py's `test_index_with_slash` all
need `%2F` to reach the node unchanged. Dot segments stay refused, decoded or not.
"""

import http.client
import json

import pytest
import requests

from es_rerank.proxy.settings import IndexRule
from es_rerank.engine.client import make_client
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

INDEX = "test-i14-paths"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def paths_index(os_client):
    os_client.indices.delete(index=f"{INDEX}*", ignore=[404])
    os_client.indices.create(index=INDEX, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    for k in range(12):
        os_client.index(index=INDEX, id=str(k), body={"text": "wing lift " + "drag " * k})
    os_client.indices.refresh(index=INDEX)
    yield INDEX
    os_client.indices.delete(index=f"{INDEX}*", ignore=[404])


@pytest.fixture(scope="module")
def proxy(opensearch_url, paths_index):
    with running_proxy(settings_for(opensearch_url, IndexRule(f"{INDEX}*", fields=("text",))),
                       TermOverlapScorer()) as p:
        yield p


@pytest.mark.parametrize("encoded, doc_id", [("http%3A%2F%2Fx.org%2Fp", "http://x.org/p"),
                                             ("a%5Cb", "a\\b"), ("a%2F..%2Fb", "a/../b")])
def test_document_ids_with_encoded_slashes_round_trip(proxy, paths_index, encoded, doc_id):
    put = requests.put(f"{proxy.url}/{paths_index}/_doc/{encoded}?refresh=true", json={"text": "x"}, timeout=30)
    assert put.status_code in (200, 201), put.text
    assert put.json()["_id"] == doc_id
    got = requests.get(f"{proxy.url}/{paths_index}/_doc/{encoded}", timeout=30)
    assert got.status_code == 200 and got.json()["_id"] == doc_id


def test_opensearch_py_index_with_slash(proxy, paths_index):
    client = make_client(proxy.url)  # the client suite's test_index_with_slash, through the proxy
    client.index(index=paths_index, id="a/b/c", body={"text": "slash"}, refresh=True)
    assert client.get(index=paths_index, id="a/b/c")["_source"] == {"text": "slash"}


def test_a_date_math_index_name_works_through_the_proxy(proxy, paths_index, os_client):
    name = "%3Ctest-i14-paths-dm-%7Bnow%2Fd%7D%3E"  # <test-i14-paths-dm-{now/d}>
    created = requests.put(f"{proxy.url}/{name}", timeout=30, headers=JSON,
                           json={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    assert created.status_code == 200, created.text
    indexed = requests.post(f"{proxy.url}/{name}/_doc?refresh=true", json={"text": "wing"}, timeout=30)
    assert indexed.status_code == 201, indexed.text
    found = requests.post(f"{proxy.url}/{name}/_search", json={"query": {"match": {"text": "wing"}}}, timeout=30)
    assert found.status_code == 200 and found.json()["hits"]["total"]["value"] == 1
    assert found.json()["hits"]["hits"][0]["_index"].startswith("test-i14-paths-dm-")


def exact(url: str, method: str, path: str, body: bytes | None = None):
    """Send `path` byte for byte (requests would normalise `%74` to `t` and drop `./`); (status, headers, body)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=JSON if body else {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_the_search_decision_is_taken_on_the_decoded_index_name(proxy, paths_index, opensearch_url):
    body = json.dumps({"query": {"match": {"text": "wing drag"}}}).encode()
    status, headers, _ = exact(proxy.url, "POST", "/%74est-i14-paths/_search", body)
    assert status == 200 and headers["X-Rerank"] == "reranked"
    # OpenSearch matches endpoint names as sent: an encoded `_search` is no search, and no rerank either.
    direct = exact(opensearch_url, "POST", "/test-i14-paths/%5Fsearch", body)
    status, headers, answer = exact(proxy.url, "POST", "/test-i14-paths/%5Fsearch", body)
    assert (status, answer) == (direct[0], direct[2]) and "X-Rerank" not in headers


@pytest.mark.parametrize("path", ["/test-i14-paths/%2e%2e/_cluster/settings", "/test-i14-paths/./_search",
                                  "/test-i14-paths/%2E/_doc/1", "/test-i14-paths/../_cluster/settings"])
def test_dot_segments_are_still_refused(proxy, path):
    status, _, body = exact(proxy.url, "GET", path)
    assert status == 400 and "'.' and '..'" in json.loads(body)["error"]["reason"]
