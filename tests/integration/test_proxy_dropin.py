"""Drop-in fidelity of the reranking proxy against the real node (issue 14, items 3-7).

Each test names the item it pins; each failed before its fix.
"""

import json

import pytest
import requests

from es_rerank.proxy.settings import IndexRule
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for
from tests.support.waiting import wait_until

WINDOWED = "test-i14-window"
JSON = {"Content-Type": "application/json"}
MATCH = {"query": {"match": {"text": "wing lift"}}}


@pytest.fixture(scope="module")
def windowed_index(os_client):
    os_client.indices.delete(index=WINDOWED, ignore=[404])
    os_client.indices.create(index=WINDOWED, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    body = "".join(json.dumps({"index": {"_id": str(k)}}) + "\n" + json.dumps({"text": "wing lift " + "drag " * k}) + "\n"
                   for k in range(40))
    os_client.bulk(body=body, index=WINDOWED, refresh=True)
    yield WINDOWED
    os_client.indices.delete(index=WINDOWED, ignore=[404])


@pytest.fixture(scope="module")
def proxy(opensearch_url, windowed_index):
    rules = (IndexRule(windowed_index, fields=("text",), window=30),)
    with running_proxy(settings_for(opensearch_url, *rules), TermOverlapScorer()) as p:
        yield p


def test_a_lowered_max_result_window_is_read_again(proxy, windowed_index, os_client):
    """Item 3: the window size was cached forever, so a valid size=10 search failed once the setting was lowered."""
    os_client.indices.put_settings(index=windowed_index, body={"index.max_result_window": 10000})
    first = requests.post(f"{proxy.url}/{windowed_index}/_search?size=10", json=MATCH, timeout=30)
    assert first.status_code == 200 and first.headers["X-Rerank"] == "reranked"
    os_client.indices.put_settings(index=windowed_index, body={"index.max_result_window": 20})
    try:
        lowered = requests.post(f"{proxy.url}/{windowed_index}/_search?size=10", json=MATCH, timeout=30)
        assert lowered.status_code == 200, lowered.text[:300]
        assert lowered.headers["X-Rerank"] == "reranked" and len(lowered.json()["hits"]["hits"]) == 10
    finally:
        os_client.indices.put_settings(index=windowed_index, body={"index.max_result_window": 10000})


def test_a_raised_max_result_window_is_picked_up_when_the_cache_expires(proxy, windowed_index, os_client):
    """Item 3: the cached setting has a lifetime; a raised one (no error to trip over) widens the window again."""
    def window_scored() -> int:  # the pairs of the model call this search made (the rule's window is 30)
        response = requests.post(f"{proxy.url}/{windowed_index}/_search?size=10", json=MATCH, timeout=30)
        assert response.headers["X-Rerank"] == "reranked"
        return proxy.context.scorer.calls[-1]

    os_client.indices.put_settings(index=windowed_index, body={"index.max_result_window": 20})
    try:
        wait_until(lambda: window_scored() == 20, "the window to be clamped to the lowered setting")
    finally:
        os_client.indices.put_settings(index=windowed_index, body={"index.max_result_window": 10000})
    wait_until(lambda: window_scored() == 30, "the proxy to read index.max_result_window again once its cache expires")


SOURCES = "test-i14-source"
# Number literals a parse and re-serialise changes; OpenSearch stores and returns `_source` as sent.
RAW_SOURCES = {
    "huge": b'{"text":"wing lift huge","n":1e400}',
    "precise": b'{"text":"wing lift precise","n":0.10000000000000000001}',
    "exponent": b'{"text": "wing lift exponent", "n": 1E2, "m": -0.0, "big": 123456789012345678901234567890}',
    "unicode": b'{"text":"wing lift \\u00e9 caf\xc3\xa9","n":[1.50,{"x":2e-7}]}',
}


@pytest.fixture(scope="module")
def sources_index(os_client, opensearch_url):
    os_client.indices.delete(index=SOURCES, ignore=[404])
    os_client.indices.create(index=SOURCES, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                                  "mappings": {"dynamic": False,
                                                               "properties": {"text": {"type": "text"}}}})
    for doc_id, raw in RAW_SOURCES.items():  # sent as bytes: a client library would re-serialise them
        put = requests.put(f"{opensearch_url}/{SOURCES}/_doc/{doc_id}", data=raw, headers=JSON, timeout=30)
        assert put.status_code == 201, put.text
    os_client.indices.refresh(index=SOURCES)
    yield SOURCES
    os_client.indices.delete(index=SOURCES, ignore=[404])


@pytest.fixture(scope="module")
def source_proxy(opensearch_url, sources_index):
    with running_proxy(settings_for(opensearch_url, IndexRule(sources_index, fields=("text",), window=10)),
                       TermOverlapScorer()) as p:
        yield p


def strict_json(data: bytes):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(data, parse_constant=refuse)


def test_reranked_hits_keep_source_byte_for_byte(source_proxy, sources_index):
    """Item 4: `_source` was re-serialised: 1e400 came out as Infinity, 0.10000000000000000001 as 0.1."""
    query = {"query": {"match": {"text": "wing lift precise"}}}
    response = requests.post(f"{source_proxy.url}/{sources_index}/_search", json=query, timeout=30)
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    served = strict_json(response.content)
    assert served["hits"]["hits"][0]["_id"] == "precise"  # the model's order, not BM25's
    assert len(served["hits"]["hits"]) == len(RAW_SOURCES)
    for raw in RAW_SOURCES.values():
        assert b'"_source":' + raw in response.content


def test_pretty_reranked_responses_have_opensearchs_layout(source_proxy, sources_index, opensearch_url):
    """Item 7: `?pretty` printed `"k": v` where OpenSearch prints `"k" : v`."""
    query = {"query": {"match": {"text": "wing lift precise"}}, "aggs": {"n": {"value_count": {"field": "_id"}}}}
    direct = requests.post(f"{opensearch_url}/{sources_index}/_search?pretty", json=query, timeout=30)
    response = requests.post(f"{source_proxy.url}/{sources_index}/_search?pretty", json=query, timeout=30)
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    assert response.content.endswith(b"}\n") and b'": ' not in response.content
    # Everything but the hits' order and scores is laid out as the node lays it out.
    head = direct.content.partition(b'"timed_out"')[2].partition(b'"max_score"')[0]  # after "took", before the hits
    assert head and head in response.content
    assert direct.content.split(b'"aggregations" : ')[1] == response.content.split(b'"aggregations" : ')[1]
    assert strict_json(response.content)["hits"]["hits"][0]["_id"] == "precise"


@pytest.mark.parametrize("ext", [{}, {"ext": {"rerank": {"enabled": False}}}], ids=["reranked", "ext-stripped"])
def test_the_search_body_the_proxy_rewrites_keeps_the_clients_numbers(proxy, windowed_index, opensearch_url, ext):
    """Item 4, the same bug class on the request side: `min_score: 1e400` was re-serialised as null (a 400)."""
    body = json.dumps({"query": {"match": {"text": "wing"}}, **ext}).encode()[:-1] + b', "min_score": 1e400}'
    direct = requests.post(f"{opensearch_url}/{windowed_index}/_search", headers=JSON, timeout=30,
                           data=body.replace(b', "ext": {"rerank": {"enabled": false}}', b""))
    served = requests.post(f"{proxy.url}/{windowed_index}/_search", data=body, headers=JSON, timeout=30)
    assert direct.status_code == 200 and direct.json()["hits"]["total"]["value"] == 0
    assert served.status_code == 200, served.text[:300]
    assert served.json()["hits"] == direct.json()["hits"]


@pytest.mark.parametrize("accept", ["gzip, deflate", "deflate, gzip", "gzip;q=0", "deflate", "gzip;q=0.5, deflate;q=1",
                                    "x-gzip", "identity", "br"])
def test_reranked_responses_are_compressed_as_the_node_compresses(proxy, windowed_index, opensearch_url, accept):
    """Item 6: `gzip, deflate` got deflate where the node gives gzip; `gzip;q=0` still got gzip; `deflate` got none."""
    url = f"/{windowed_index}/_search?size=3"
    direct = requests.post(opensearch_url + url, json=MATCH, headers={"Accept-Encoding": accept}, timeout=30)
    served = requests.post(proxy.url + url, json=MATCH, headers={"Accept-Encoding": accept}, timeout=30)
    assert served.headers["X-Rerank"] == "reranked"
    assert served.headers.get("Content-Encoding") == direct.headers.get("Content-Encoding")
    assert len(served.json()["hits"]["hits"]) == 3  # and it decodes


def test_a_star_accept_encoding_gets_a_coding_the_client_can_decode(proxy, windowed_index):
    """Item 6: `*` got no compression (the node answers snappy, which the proxy replaces by gzip)."""
    served = requests.post(f"{proxy.url}/{windowed_index}/_search?size=3", json=MATCH,
                           headers={"Accept-Encoding": "*"}, timeout=30)
    assert served.headers.get("Content-Encoding") == "gzip" and len(served.json()["hits"]["hits"]) == 3


def raw_answer(url: str, data: bytes) -> bytes:
    """Send exact bytes on a fresh connection; the first response (head and Content-Length body)."""
    import socket

    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out and (chunk := conn.recv(65536)):
            out += chunk
        head = out.partition(b"\r\n\r\n")[0].lower()
        length = int(head.partition(b"content-length:")[2].split(b"\r\n")[0] or 0)
        while len(out.partition(b"\r\n\r\n")[2]) < length and (chunk := conn.recv(65536)):
            out += chunk
    return out


def test_no_server_or_date_header(proxy, windowed_index, opensearch_url):
    """Item 7: every response carried `Server: Python/3.11 aiohttp/...` and `Date` (a version fingerprint)."""
    answers = [requests.get(proxy.url + "/", timeout=30),
               requests.post(f"{proxy.url}/{windowed_index}/_search", json=MATCH, timeout=30),
               requests.get(proxy.url + "/_rerank/health", timeout=30),
               requests.get(proxy.url + "/no-such-index-i14/_search", timeout=30)]
    assert answers[1].headers["X-Rerank"] == "reranked"
    for answer in answers:
        assert "Server" not in answer.headers and "Date" not in answer.headers, answer.headers
    direct = requests.get(opensearch_url + "/", timeout=30)
    assert "Server" not in direct.headers and "Date" not in direct.headers


def test_an_unknown_expectation_gets_417_as_from_the_node(proxy, opensearch_url):
    """Item 7: `Expect: 999-bogus` got 200 where the node answers 417."""
    direct = requests.get(opensearch_url + "/", headers={"Expect": "999-bogus"}, timeout=30)
    served = requests.get(proxy.url + "/", headers={"Expect": "999-bogus"}, timeout=30)
    assert direct.status_code == served.status_code == 417
    assert served.content == direct.content == b""


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Authorization: Basic c2VjcmV0\r\n\r\n",
                                  b"GARBAGE c2VjcmV0\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: c2VjcmV0\r\n\r\n"])
def test_malformed_http_gets_the_engines_json_error_and_no_echo(proxy, opensearch_url, data):
    """Item 7: malformed HTTP got aiohttp's text/plain 400, which echoed the bad bytes."""
    direct = raw_answer(opensearch_url, data)
    served = raw_answer(proxy.url, data)
    assert b" 400 " in direct.split(b"\r\n")[0] and b" 400 " in served.split(b"\r\n")[0]
    head, _, body = served.partition(b"\r\n\r\n")
    assert b"content-type: application/json; charset=utf-8" in head.lower()
    error = json.loads(body)
    assert error["status"] == 400 and error["error"]["type"] == "illegal_argument_exception"
    assert b"c2VjcmV0" not in served  # nothing the client sent comes back
