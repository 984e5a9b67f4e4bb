"""Every body the proxy relays is depth-checked before its bytes reach the node (issue 14, item 1).

Bodies over 1 MiB and chunked bodies used to stream through unread, so a deep query padded past
1 MiB reached OpenSearch and killed it. The deep bodies here nest unknown keys (`{"a": {"a": ...}}`),
which OpenSearch refuses harmlessly if one ever gets through: a regression fails the test and
leaves the shared node alive.
"""

import gzip
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from es_rerank.proxy.settings import IndexRule, LimitSettings
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

INDEX = "test-i14-deep"
CAP = 100
MIB = 1 << 20
JSON = "application/json"
NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
def deep_index(os_client):
    os_client.indices.delete(index=INDEX, ignore=[404])
    os_client.indices.create(index=INDEX, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    os_client.index(index=INDEX, id="1", body={"text": "wing lift"}, refresh=True)
    yield INDEX
    os_client.indices.delete(index=INDEX, ignore=[404])


@pytest.fixture(scope="module")
def proxy(opensearch_url, deep_index):
    limits = LimitSettings(max_body_bytes=8 * MIB, max_json_depth=CAP, body_timeout_s=30.0)
    # The index has no rule: its searches pass through, like _count, _bulk and _msearch.
    with running_proxy(settings_for(opensearch_url, IndexRule("test-i14-reranked"), limits=limits),
                       TermOverlapScorer()) as p:
        yield p


def nested(depth: int, pad: int = 0) -> bytes:
    """A JSON object `depth` levels deep in all (`{"query": {"a": ... {}}}`), `pad` spaces inside it."""
    inner = depth - 2
    return (b'{"query":' + b" " * pad + b'{"a":' * inner + b"{}" + b"}" * inner + b"}")


def body_for(path: str, depth: int, pad: int) -> tuple[bytes, str]:
    """The body a path takes, with one document nested `depth` deep: NDJSON lines for _bulk and _msearch."""
    if path.endswith("_bulk"):
        return b'{"index":{"_index":"' + INDEX.encode() + b'","_id":"x"}}\n{"t":1}\n' + nested(depth, pad) + b"\n", NDJSON
    if path.endswith("_msearch"):
        return b"{}\n" + nested(depth, pad) + b"\n", NDJSON
    return nested(depth, pad), JSON


def send(url, path, data: bytes, content_type: str, chunked: bool, encoding: str = ""):
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
    # A generator makes requests send Transfer-Encoding: chunked.
    payload = (data[k:k + 65536] for k in range(0, len(data), 65536)) if chunked else data
    return requests.post(url + path, data=payload, headers=headers, timeout=60)


def refused_by_proxy(response) -> bool:
    return response.status_code == 400 and "the proxy accepts at most" in response.text


def node_alive(opensearch_url):
    assert requests.get(opensearch_url + "/_cluster/health", timeout=30).status_code == 200


PATHS = [f"/{INDEX}/_count", f"/{INDEX}/_search", "/_bulk", "/_msearch", f"/{INDEX}/_validate/query"]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("path", PATHS)
def test_a_deep_body_padded_past_1_mib_never_reaches_the_node(proxy, opensearch_url, path, chunked):
    data, content_type = body_for(path, 10_000, MIB + 1000)
    response = send(proxy.url, path, data, content_type, chunked)
    assert refused_by_proxy(response), (response.status_code, response.text[:300])
    assert response.json()["error"]["type"] == "parsing_exception"
    node_alive(opensearch_url)


def test_a_gzip_body_is_checked_after_inflating(proxy, opensearch_url):
    data = gzip.compress(nested(5000, 2 * MIB))  # a few KiB on the wire, 2 MiB inflated
    for chunked in (False, True):
        response = send(proxy.url, f"/{INDEX}/_count", data, JSON, chunked, encoding="gzip")
        assert refused_by_proxy(response), (response.status_code, response.text[:300])
    node_alive(opensearch_url)


def test_a_large_shallow_bulk_streams_through_and_indexes(proxy, os_client):
    lines = "".join(json.dumps({"index": {"_index": INDEX, "_id": f"big-{k}"}}) + "\n"
                    + json.dumps({"text": "wing " * 200, "n": {"k": {"x": "]]]}}} [[[ {{{"}}}) + "\n" for k in range(1500))
    data = lines.encode()
    assert len(data) > MIB
    for chunked in (False, True):
        response = send(proxy.url, "/_bulk?refresh=true", data, NDJSON, chunked)
        assert response.status_code == 200 and response.json()["errors"] is False
    assert os_client.count(index=INDEX, body={"query": {"ids": {"values": [f"big-{k}" for k in range(1500)]}}})["count"] == 1500


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(depth=st.integers(3, 400), pad=st.sampled_from([0, 1000, MIB - 500, MIB + 10]),
       path=st.sampled_from(PATHS), chunked=st.booleans())
def test_property_refused_exactly_when_deeper_than_the_cap(proxy, opensearch_url, depth, pad, path, chunked):
    """Over body size x depth x path x chunked: past the cap the proxy answers; within it the node does."""
    data, content_type = body_for(path, depth, pad)
    response = send(proxy.url, path, data, content_type, chunked)
    if depth > CAP:
        assert refused_by_proxy(response), (depth, pad, path, chunked, response.status_code, response.text[:200])
    else:
        assert not refused_by_proxy(response), (depth, pad, path, chunked, response.text[:200])
    node_alive(opensearch_url)


def smile_nested(depth: int) -> bytes:
    """A Smile document `depth` objects deep (`{"query": {"a": ... {}}}`): header, then start/end-object tokens."""
    return b":)\n\x00" + b"\xfa\x84query" + b"\xfa\x80a" * (depth - 2) + b"\xfa\xfb" + b"\xfb" * (depth - 1)


def cbor_nested(depth: int) -> bytes:
    """A CBOR document `depth` maps deep (`{"query": {"a": ... {}}}`)."""
    return b"\xa1\x65query" + b"\xa1\x61a" * (depth - 2) + b"\xa0"


def yaml_nested(depth: int, flow: bool) -> bytes:
    if flow:
        return b"query: " + b"{a: " * (depth - 2) + b"{}" + b"}" * (depth - 2) + b"\n"
    return b"query:\n" + b"".join(b"  " * (k + 1) + b"a:\n" for k in range(depth - 2)) + b"  " * (depth - 1) + b"{}\n"


DEEP_OTHER_FORMATS = [("application/smile", smile_nested(5000)), ("application/cbor", cbor_nested(5000)),
                      ("application/yaml", yaml_nested(5000, flow=True)),
                      ("application/yaml", yaml_nested(2000, flow=False))]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("content_type, data", DEEP_OTHER_FORMATS, ids=["smile", "cbor", "yaml-flow", "yaml-block"])
def test_deep_yaml_cbor_and_smile_bodies_never_reach_the_node(proxy, opensearch_url, content_type, data, chunked):
    """OpenSearch parses these formats as it parses JSON, so a deep one is refused as a deep JSON body is."""
    response = send(proxy.url, f"/{INDEX}/_count", data, content_type, chunked)
    assert refused_by_proxy(response), (response.status_code, response.text[:300])
    node_alive(opensearch_url)


SHALLOW_OTHER_FORMATS = [("application/smile", b":)\n\x00\xfa\x84query\xfa\x88match_all\xfa\xfb\xfb\xfb"),
                         ("application/cbor", b"\xa1\x65query\xa1\x69match_all\xa0"),
                         ("application/yaml", b"query:\n  match_all: {}\n")]


@pytest.mark.parametrize("content_type, data", SHALLOW_OTHER_FORMATS, ids=["smile", "cbor", "yaml"])
def test_shallow_yaml_cbor_and_smile_bodies_are_answered_as_by_the_node(proxy, opensearch_url, content_type, data):
    direct = send(opensearch_url, f"/{INDEX}/_count", data, content_type, chunked=False)
    served = send(proxy.url, f"/{INDEX}/_count", data, content_type, chunked=True)
    assert direct.status_code == served.status_code == 200
    assert served.content == direct.content
