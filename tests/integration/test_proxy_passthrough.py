"""Pass-through against the real node: opensearch-py unchanged, bytes and headers relayed, no resends.

Contract lines 1-5.
"""

import gzip
import json
import logging
import socket

import pytest
import requests

from es_rerank.proxy.settings import IndexRule, UpstreamSettings
from es_rerank.engine.client import make_client
from tests.proxy_support import (BackgroundApp, RawUpstream, TermOverlapScorer, capture_app, running_proxy,
                                 settings_for)

INDEX = "proxy-pass"
DOCS = [{"title": f"title {k}", "text": f"gene therapy note {k} " + "cells " * (k % 4), "year": 2000 + k % 5}
        for k in range(30)]
DROP = {"date", "server", "connection", "keep-alive"}


@pytest.fixture(scope="module")
def docs_index(os_client):
    os_client.indices.delete(index=f"{INDEX}*", ignore=[404])
    os_client.indices.create(index=INDEX, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                                "mappings": {"properties": {"year": {"type": "integer"}}}})
    lines = "".join(json.dumps({"index": {"_id": str(k)}}) + "\n" + json.dumps(d) + "\n" for k, d in enumerate(DOCS))
    os_client.bulk(body=lines, index=INDEX, refresh=True)
    yield INDEX
    os_client.indices.delete(index=f"{INDEX}*", ignore=[404])
    os_client.indices.delete_index_template(name="proxy-tpl", ignore=[404])


@pytest.fixture(scope="module")
def proxy(opensearch_url, docs_index):
    with running_proxy(settings_for(opensearch_url, IndexRule(docs_index, window=20)), TermOverlapScorer()) as p:
        yield p


def raw_request(url, data: bytes, timeout=10.0) -> bytes:
    """Send exact bytes to the proxy and return everything it answers until it closes."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def same_headers(a, b):
    def norm(headers):
        return {k.lower(): v for k, v in headers.items() if k.lower() not in DROP}
    assert norm(a) == norm(b)


def without_took(data):
    if isinstance(data, dict):
        return {k: without_took(v) for k, v in data.items() if k != "took"}
    if isinstance(data, list):
        return [without_took(v) for v in data]
    return data


NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
BYTE_EXACT = [
    ("GET", f"/{INDEX}/_doc/3?pretty", None, {}),
    ("GET", f"/{INDEX}/_doc/missing", None, {}),
    ("GET", f"/_cat/indices/{INDEX}?h=index,docs.count&v", None, {}),
    ("GET", f"/{INDEX}/_mapping", None, {}),
    ("POST", f"/{INDEX}/_count", b'{"query": {"match": {"text": "cells"}}}', JSON),
    ("POST", "/_mget", json.dumps({"docs": [{"_index": INDEX, "_id": "1"}, {"_index": INDEX, "_id": "x"}]}).encode(), JSON),
    ("POST", "/proxy-missing/_search", b'{"query": {"match": {"text": "x"}}}', JSON),
    ("POST", f"/{INDEX}/_search", b'{"query": {"nonsense": {}}}', JSON),
    ("PUT", "/_index_template/proxy-tpl", json.dumps({"index_patterns": ["proxy-tpl-*"]}).encode(), JSON),
    ("GET", "/_index_template/proxy-tpl", None, {}),
    ("PUT", f"/{INDEX}/_doc/3", json.dumps(DOCS[3]).encode(), JSON),
]


@pytest.mark.parametrize("method, path, body, headers", BYTE_EXACT)
def test_responses_are_relayed_byte_for_byte(proxy, opensearch_url, method, path, body, headers):
    direct = requests.request(method, opensearch_url + path, data=body, headers=headers)
    through = requests.request(method, proxy.url + path, data=body, headers=headers)
    assert through.status_code == direct.status_code
    if not path.endswith("/_doc/3"):  # re-indexing bumps _version, so the two PUT answers differ there only
        assert through.content == direct.content
    same_headers(through.headers, direct.headers)


@pytest.mark.parametrize("path, status", [(f"/{INDEX}", 200), ("/proxy-missing", 404), (f"/{INDEX}/_doc/1", 200)])
def test_head_answers_headers_and_no_body(proxy, opensearch_url, path, status):
    direct = requests.head(opensearch_url + path)
    through = requests.head(proxy.url + path)
    assert through.status_code == direct.status_code == status
    assert through.content == b""
    same_headers(through.headers, direct.headers)


def test_ndjson_msearch_and_skipped_searches_match_direct(proxy, opensearch_url):
    # On a configured index _msearch is reranked like _search (test_proxy_msearch); switched off it matches.
    body = (json.dumps({"index": INDEX}) + "\n" + json.dumps({"query": {"match": {"text": "gene"}}}) + "\n").encode()
    direct = requests.post(opensearch_url + "/_msearch", data=body, headers=NDJSON)
    through = requests.post(proxy.url + "/_msearch", data=body, headers={**NDJSON, "X-Rerank": "off"})
    assert through.status_code == 200
    assert without_took(through.json()) == without_took(direct.json())


def test_opensearch_py_works_unchanged_with_http_compress(proxy, opensearch_url):
    client = make_client(proxy.url, http_compress=True)
    direct = make_client(opensearch_url, http_compress=True)
    crud = f"{INDEX}-crud"
    assert client.indices.create(index=crud, body={"settings": {"number_of_replicas": 0}})["acknowledged"]
    assert client.index(index=crud, id="a", body={"text": "hello gene"}, refresh=True)["result"] == "created"
    assert client.get(index=crud, id="a")["_source"] == {"text": "hello gene"}
    assert client.exists(index=crud, id="a") and not client.exists(index=crud, id="nope")
    assert client.indices.exists(index=crud) and not client.indices.exists(index="proxy-missing")
    bulk = "".join(json.dumps({"index": {"_id": str(k)}}) + "\n" + json.dumps({"text": f"doc {k}"}) + "\n"
                   for k in range(5))
    assert client.bulk(body=bulk, index=crud, refresh=True)["errors"] is False
    assert client.count(index=crud)["count"] == 6
    assert client.delete(index=crud, id="a", refresh=True)["result"] == "deleted"
    assert client.cat.indices(index=crud, h="index,docs.count") == direct.cat.indices(index=crud, h="index,docs.count")
    assert client.mget(index=crud, body={"ids": ["1", "2"]})["docs"][1]["_source"] == {"text": "doc 2"}
    query = {"query": {"match": {"text": "gene"}}, "size": 5}
    reranked = client.search(index=INDEX, body=query)  # a configured index: reranked, compressed both ways
    assert len(reranked["hits"]["hits"]) == 5
    assert without_took(client.search(index=crud, body=query)) == without_took(direct.search(index=crud, body=query))
    assert client.indices.delete(index=crud)["acknowledged"] and not direct.indices.exists(index=crud)


def ties_unordered(hits):
    """(score, ids) per run of equal scores, the ids sorted: the engine does not promise an order
    among equal scores across two scroll contexts (a segment merge between them can change it).

    >>> ties_unordered([(2.0, "b"), (2.0, "a"), (1.0, "c")])
    [(2.0, ['a', 'b']), (1.0, ['c'])]
    """
    runs = []
    for score, doc_id in hits:
        if runs and runs[-1][0] == score:
            runs[-1][1].append(doc_id)
        else:
            runs.append((score, [doc_id]))
    return [(score, sorted(ids)) for score, ids in runs]


def test_scroll_through_the_proxy(proxy, opensearch_url):
    def scroll_hits(client):
        page = client.search(index=INDEX, scroll="1m", body={"query": {"match": {"text": "gene"}}, "size": 7})
        hits, scroll_id = [], page["_scroll_id"]
        while page["hits"]["hits"]:
            hits += [(h["_score"], h["_id"]) for h in page["hits"]["hits"]]
            page = client.scroll(scroll_id=scroll_id, scroll="1m")
            scroll_id = page["_scroll_id"]
        client.clear_scroll(scroll_id=scroll_id)
        return hits

    through = scroll_hits(make_client(proxy.url, http_compress=True))
    ids = [doc_id for _, doc_id in through]
    assert len(ids) == len(DOCS) and len(set(ids)) == len(DOCS)
    assert ties_unordered(through) == ties_unordered(scroll_hits(make_client(opensearch_url)))


def test_point_in_time_through_the_proxy(proxy, opensearch_url):
    client = make_client(proxy.url, http_compress=True)
    pit = client.create_pit(index=INDEX, keep_alive="1m")["pit_id"]
    try:
        body = {"pit": {"id": pit, "keep_alive": "1m"}, "query": {"match": {"text": "gene"}}, "size": 10,
                "sort": [{"_score": "desc"}, {"year": "asc"}]}
        through = client.search(body=body)
        direct = make_client(opensearch_url).search(body=body)
        assert [h["_id"] for h in through["hits"]["hits"]] == [h["_id"] for h in direct["hits"]["hits"]]
        after = client.search(body={**body, "search_after": through["hits"]["hits"][-1]["sort"]})
        assert not {h["_id"] for h in after["hits"]["hits"]} & {h["_id"] for h in through["hits"]["hits"]}
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def test_gzip_request_bodies_are_accepted(proxy, os_client):
    bulk = (json.dumps({"index": {"_index": f"{INDEX}-gz", "_id": "g"}}) + "\n" + json.dumps({"text": "zipped"}) + "\n")
    relayed = requests.post(proxy.url + "/_bulk?refresh=true", data=gzip.compress(bulk.encode()),
                            headers={**NDJSON, "Content-Encoding": "gzip"})
    assert relayed.status_code == 200 and relayed.json()["errors"] is False
    assert os_client.get(index=f"{INDEX}-gz", id="g")["_source"] == {"text": "zipped"}
    search = gzip.compress(json.dumps({"query": {"match": {"text": "gene"}}, "size": 3}).encode())
    reranked = requests.post(f"{proxy.url}/{INDEX}/_search", data=search, headers={**JSON, "Content-Encoding": "gzip"})
    assert reranked.status_code == 200 and reranked.headers["X-Rerank"] == "reranked"
    assert len(reranked.json()["hits"]["hits"]) == 3


def test_without_a_model_searches_pass_through_with_ext_rerank_removed(opensearch_url, docs_index):
    body = {"query": {"match": {"text": "gene"}}, "size": 4}
    with running_proxy(settings_for(opensearch_url, IndexRule(docs_index))) as proxy:
        plain = requests.post(f"{proxy.url}/{docs_index}/_search", json=body)
        knobs = requests.post(f"{proxy.url}/{docs_index}/_search", json={**body, "ext": {"rerank": {"window": 9}}})
        ready = requests.get(proxy.url + "/_rerank/ready").json()
    direct = requests.post(f"{opensearch_url}/{docs_index}/_search", json=body)
    for response in (plain, knobs):
        assert response.status_code == 200 and "X-Rerank" not in response.headers
        assert without_took(response.json()) == without_took(direct.json())
    assert ready["ready"] and ready["model"] == "none: reranking is off"


def test_upstream_errors_keep_their_status_and_body(proxy, opensearch_url):
    for path, body in ((f"/{INDEX}/_search", b'{"query": {"match": {"text": {"bogus": 1}}}}'),
                       ("/proxy-missing/_search", b'{"query": {"match": {"text": "x"}}}'),
                       (f"/{INDEX}/_search?size=-5", b'{"query": {"match": {"text": "x"}}}')):
        direct = requests.post(opensearch_url + path, data=body, headers=JSON)
        through = requests.post(proxy.url + path, data=body, headers=JSON)
        assert direct.status_code >= 400
        assert (through.status_code, through.content) == (direct.status_code, direct.content)


def counted(upstream_url: str):
    """Settings for a test that counts what reaches upstream: the engine named, so no start-up `GET /` asks it."""
    return settings_for(upstream_url, upstream=UpstreamSettings(upstream_url, engine="opensearch"))


def test_client_headers_reach_upstream_as_sent_and_nothing_is_added():
    seen = []
    with BackgroundApp(capture_app(seen)) as upstream, running_proxy(counted(upstream.url)) as proxy:
        sent = {"Authorization": "Basic dXNlcjpzM2NyZXQ=", "X-Opaque-Id": "job-7",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "X-Custom": "a, b",
                "Host": "evil.example:9200"}
        requests.get(proxy.url + "/any/path?x=%2B1", headers=sent)
        raw_request(proxy.url, b"GET /plain HTTP/1.1\r\nHost: client.example\r\nConnection: close\r\n\r\n")
    first, second = seen
    headers = {k.decode().lower(): v.decode() for k, v in first["headers"]}
    for name, value in sent.items():
        if name != "Host":
            assert headers[name.lower()] == value
    assert headers["host"] == upstream.url.split("//")[1]  # the fixed upstream, not the client's Host
    assert first["path"] == "/any/path?x=%2B1"
    assert [k.decode().lower() for k, _ in second["headers"]] == ["host"]  # nothing added to a bare request


def test_opensearch_echoes_opaque_id_through_the_proxy(proxy):
    response = requests.get(proxy.url + f"/{INDEX}/_count", headers={"X-Opaque-Id": "trace-me"})
    assert response.headers["X-Opaque-Id"] == "trace-me"


def test_credentials_are_never_logged(caplog):
    secret = "c2VjcmV0LXBhc3N3b3Jk"
    caplog.set_level(logging.DEBUG, logger="es_rerank")
    with RawUpstream() as dropping, running_proxy(settings_for(dropping.url)) as proxy:
        response = requests.post(proxy.url + "/x/_doc", json={"a": 1}, headers={"Authorization": f"Basic {secret}"})
    assert response.status_code == 502
    assert caplog.records and secret not in caplog.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_request_is_never_sent_twice(method):
    with RawUpstream() as dropping, running_proxy(counted(dropping.url)) as proxy:
        for _ in range(2):  # the second reuses nothing: the first connection was dropped
            response = requests.request(method, proxy.url + "/proxy-x/_doc/1", json={"a": 1})
            assert response.status_code == 502
            assert response.json()["error"]["type"] == "upstream_unavailable_exception"
        assert len(dropping.requests) == 2


def test_auto_id_index_through_the_proxy_writes_once(proxy, os_client):
    target = f"{INDEX}-once"
    for _ in range(3):
        assert requests.post(f"{proxy.url}/{target}/_doc?refresh=true", json={"n": 1}).status_code == 201
    assert os_client.count(index=target)["count"] == 3


def test_the_proxy_tells_opensearch_from_its_answers_and_answers_in_its_shape(proxy):
    assert proxy.context.upstream.engine.known and proxy.context.upstream.engine.current == "opensearch"
    own = requests.get(proxy.url + "/_rerank/nope")
    assert own.status_code == 404 and own.json()["error"]["type"] == "resource_not_found_exception"
    assert own.headers["Content-Type"] == "application/json; charset=UTF-8" and "X-Elastic-Product" not in own.headers
