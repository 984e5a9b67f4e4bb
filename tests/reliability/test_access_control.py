"""Access control through the proxy, against OpenSearch's security plugin (TLS, basic auth, DLS, FLS).

The proxy runs as its own process (debug logging to a file) in front of the secured node,
reranking `secure-*` with a rule that scores on the hidden field too, so it enlarges windows
and asks the fields API for `secret` whenever the client filters `_source`. Whatever the
proxy adds, a user must see exactly what OpenSearch would show them directly: no more.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from lab.reliability.proxy_process import ProxyProcess, ProxySpec, free_port
from lab.reliability.rawhttp import exchange
from tests.support.https import Reply
from tests.support.security_config import HIDDEN_FIELD, INDEX_A, INDEX_B, SEED_DOCS

HIDDEN_WORD = b"tangerine"
PUBLIC_A = {doc_id for doc_id, doc in SEED_DOCS[INDEX_A].items() if doc["visibility"] == "public"}
MATCH = {"query": {"match": {"body": "reranking"}}, "size": 100}


@pytest.fixture(scope="module")
def secure_proxy(secure_node, tmp_path_factory):
    """The proxy in front of the secured node; yields (proxy url, path of its log)."""
    work = tmp_path_factory.mktemp("secure-proxy")
    spec = ProxySpec(upstream=secure_node.url, index="secure-*", port=free_port(), fault_file=str(work / "fault"),
                     log_file=str(work / "proxy.log"), fields=("title", "body", HIDDEN_FIELD), window=50,
                     deadline_ms=2000, ca_file=str(secure_node.ca_file), log_level="DEBUG")
    proxy = ProxyProcess(spec, work / "spec.json")
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.terminate()


def send(base: str, method: str, path: str, *, authorization: str | None = None, body=None,
         ca_file=None, headers: dict | None = None) -> Reply:
    """One request with an exact Authorization header (or none); never raises on an HTTP status."""
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        all_headers["Content-Type"] = "application/x-ndjson" if isinstance(body, str) else "application/json"
    if authorization is not None:
        all_headers["Authorization"] = authorization
    request = urllib.request.Request(base + path, data=data, method=method, headers=all_headers)
    context = None
    if base.startswith("https"):
        import ssl

        context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def both(secure_node, proxy, method, path, *, user=None, authorization=None, body=None, headers=None):
    """(direct reply, proxied reply) for the same request (directly without ext.rerank, which only the proxy knows)."""
    if user is not None:
        authorization = secure_node.accounts[user].authorization
    plain = {k: v for k, v in body.items() if k != "ext"} if isinstance(body, dict) else body
    direct = send(secure_node.url, method, path, authorization=authorization, body=plain, ca_file=secure_node.ca_file,
                  headers=headers)
    proxied = send(proxy.url, method, path, authorization=authorization, body=body, headers=headers)
    return direct, proxied


def ids(reply: Reply) -> set[str]:
    return {hit["_id"] for hit in reply.json()["hits"]["hits"]}


def wrong_password(secure_node) -> str:
    account = secure_node.accounts["reader-a"]
    return "Basic " + base64.b64encode(f"{account.name}:{account.password}x".encode()).decode()


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/", None),
    ("POST", f"/{INDEX_A}/_search", MATCH),             # reranked when authorised
    ("GET", f"/{INDEX_A}/_search?q=reranking", None),
    ("POST", f"/{INDEX_B}/_search", MATCH),
    ("GET", "/_cat/indices", None),
    ("GET", f"/{INDEX_A}/_count", None),
    ("PUT", f"/{INDEX_A}/_doc/new", {"title": "x"}),
])
@pytest.mark.parametrize("credentials", ["none", "wrong_password", "malformed"])
def test_unauthenticated_requests_fail_through_the_proxy_exactly_as_directly(secure_node, secure_proxy, method,
                                                                            path, body, credentials):
    authorization = {"none": None, "wrong_password": wrong_password(secure_node), "malformed": "Basic !!!"}[credentials]
    direct, proxied = both(secure_node, secure_proxy, method, path, authorization=authorization, body=body)
    assert direct.status == 401
    assert (proxied.status, proxied.body) == (direct.status, direct.body)
    assert proxied.headers.get("www-authenticate") == direct.headers.get("www-authenticate")
    assert HIDDEN_WORD not in proxied.body


@pytest.mark.parametrize("method,path,body,headers", [
    ("POST", f"/{INDEX_B}/_search", MATCH, None),                               # reranked path
    ("POST", f"/{INDEX_B}/_search", MATCH, {"X-Rerank": "off"}),                # pass-through
    ("GET", f"/{INDEX_B}/_search?q=reranking&size=50", None, None),
    ("POST", f"/{INDEX_A},{INDEX_B}/_search", MATCH, None),                     # multi-index
    ("POST", "/secure-*/_search", MATCH, None),                                 # wildcard
    ("POST", "/secure-*/_search", {**MATCH, "_source": False}, None),          # fields API added by the proxy
    ("POST", f"/{INDEX_B}/_search?scroll=1m", MATCH, None),
    ("GET", f"/{INDEX_B}/_count", None, None),
    ("GET", f"/{INDEX_B}/_doc/b-1", None, None),
    ("POST", "/_mget", {"docs": [{"_index": INDEX_B, "_id": "b-1"}]}, None),
])
def test_reader_a_cannot_read_index_b_through_the_proxy(secure_node, secure_proxy, method, path, body, headers):
    direct, proxied = both(secure_node, secure_proxy, method, path, user="reader-a", body=body, headers=headers)
    assert proxied.status == direct.status
    assert HIDDEN_WORD not in proxied.body and b"index b" not in proxied.body
    if direct.status == 200 and b'"hits"' in direct.body:
        assert ids(proxied) == ids(direct) and not ids(proxied) & set(SEED_DOCS[INDEX_B])
    elif direct.status >= 400:
        assert proxied.json()["error"]["type"] == direct.json()["error"]["type"]


def test_reader_a_gets_the_same_per_item_refusal_in_msearch(secure_node, secure_proxy):
    lines = f'{{"index":"{INDEX_A}"}}\n{{"size":100}}\n{{"index":"{INDEX_B}"}}\n{{"size":100}}\n'
    direct, proxied = both(secure_node, secure_proxy, "POST", "/_msearch", user="reader-a", body=lines)
    allowed, forbidden = proxied.json()["responses"]
    assert forbidden["status"] == 403 and "hits" not in forbidden
    assert {h["_id"] for h in allowed["hits"]["hits"]} == set(SEED_DOCS[INDEX_A])
    assert HIDDEN_WORD in direct.body and proxied.body.count(HIDDEN_WORD) == direct.body.count(HIDDEN_WORD)


@pytest.mark.parametrize("body", [
    MATCH,
    {**MATCH, "_source": False},                                   # proxy adds fields: [title, body, secret]
    {**MATCH, "_source": ["title"]},
    {**MATCH, "_source": {"includes": [HIDDEN_FIELD]}},
    {**MATCH, "fields": [HIDDEN_FIELD, "*"]},
    {**MATCH, "highlight": {"fields": {HIDDEN_FIELD: {}}}},
    {**MATCH, "ext": {"rerank": {"fields": [HIDDEN_FIELD], "provenance": True}}},
    {**MATCH, "ext": {"rerank": {"query_text": "tangerine launch code", "window": 500}}},
    {"query": {"match": {"body": "restricted"}}, "size": 1000, "track_total_hits": True},
    {"query": {"match": {HIDDEN_FIELD: "tangerine"}}, "size": 10},
    {"query": {"match_all": {}}, "size": 3, "from": 1},
    {**MATCH, "aggs": {"v": {"terms": {"field": "visibility"}}}},
])
def test_dls_and_fls_hold_although_the_proxy_enlarges_windows_and_adds_fields(secure_node, secure_proxy, body):
    direct, proxied = both(secure_node, secure_proxy, "POST", f"/{INDEX_A}/_search", user="restricted-a", body=body)
    assert proxied.status == direct.status == 200, proxied.body[:300]
    assert HIDDEN_WORD not in proxied.body
    assert b"a-restricted" not in proxied.body
    assert ids(proxied) == ids(direct) and ids(proxied) <= PUBLIC_A
    assert proxied.json()["hits"]["total"] == direct.json()["hits"]["total"]
    for hit in proxied.json()["hits"]["hits"]:
        assert HIDDEN_FIELD not in hit.get("_source", {}) and HIDDEN_FIELD not in hit.get("fields", {})
    if "aggs" in body:
        assert proxied.json()["aggregations"] == direct.json()["aggregations"]


def test_the_proxy_reranks_for_authorised_users(secure_node, secure_proxy):
    direct, proxied = both(secure_node, secure_proxy, "POST", f"/{INDEX_A}/_search", user="reader-a", body=MATCH)
    assert proxied.headers.get("x-rerank") == "reranked"
    assert ids(proxied) == ids(direct) == set(SEED_DOCS[INDEX_A])


def test_credentials_never_appear_in_the_proxys_logs_or_metrics(secure_node, secure_proxy):
    # Traffic that makes the proxy log: authorised and refused requests, errors of its own and upstream errors.
    for user in secure_node.accounts:
        both(secure_node, secure_proxy, "POST", f"/{INDEX_A},{INDEX_B}/_search", user=user, body=MATCH)
        send(secure_proxy.url, "POST", f"/{INDEX_A}/_search", authorization=secure_node.accounts[user].authorization,
             body={**MATCH, "ext": {"rerank": {"window": "bad"}}})
        send(secure_proxy.url, "GET", f"/{INDEX_A}/../_cluster/settings",
             authorization=secure_node.accounts[user].authorization)
    send(secure_proxy.url, "GET", "/", authorization=wrong_password(secure_node))
    # Malformed requests whose bad line is the Authorization header itself (aiohttp quotes bad lines).
    credentials = secure_node.accounts["reader-a"].authorization.encode()
    for bad in (credentials + b"\x01", credentials + b"A" * 9000, credentials + b"\r\n folded"):
        exchange(secure_proxy.url, b"GET / HTTP/1.1\r\nHost: proxy\r\nAuthorization: " + bad + b"\r\n\r\n")
    metrics = send(secure_proxy.url, "GET", "/_rerank/metrics").body
    log = open(secure_proxy.spec.log_file, "rb").read()
    assert b"DEBUG" in log or b"INFO" in log  # the log is really there and being written
    secrets = [wrong_password(secure_node).encode()]
    for account in secure_node.accounts.values():
        secrets += [account.password.encode(), account.authorization.encode(), account.authorization.split()[1].encode()]
    for secret in secrets:
        assert secret not in log and secret not in metrics
