"""The secured test node itself (security plugin, TLS, basic auth), talked to directly.

These prove the fixture enforces what the proxy's access-control tests will rely on: the
same requests through the proxy must be refused or filtered exactly the same way.
"""

import ssl
import urllib.error
import urllib.request

import pytest

from tests.support.https import call
from tests.support.security_config import HIDDEN_FIELD, INDEX_A, INDEX_B, SEED_DOCS, Account

MATCH_ALL = {"size": 100, "query": {"match_all": {}}}
PUBLIC_A = {doc_id for doc_id, doc in SEED_DOCS[INDEX_A].items() if doc["visibility"] == "public"}
HIDDEN_WORD = "tangerine"  # in every document's hidden field, nowhere else


def hit_ids(reply) -> set[str]:
    assert reply.status == 200, reply.body[:300]
    return {hit["_id"] for hit in reply.json()["hits"]["hits"]}


@pytest.mark.parametrize("path", ["/", f"/{INDEX_A}/_search", f"/{INDEX_B}/_doc/b-1", "/_cat/indices"])
def test_requests_without_credentials_get_a_basic_challenge(secure_node, path):
    reply = secure_node.call("GET", path)
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Basic ")
    assert HIDDEN_WORD.encode() not in reply.body


def test_a_wrong_password_is_refused(secure_node):
    wrong = Account("reader-a", secure_node.accounts["reader-a"].password + "x", ())
    reply = call(secure_node.url, "POST", f"/{INDEX_A}/_search", ca_file=secure_node.ca_file, account=wrong)
    assert reply.status == 401


def test_only_tls_with_the_test_ca_is_served(secure_node):
    plain = secure_node.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(plain + "/", timeout=10)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(secure_node.url + "/", timeout=10, context=ssl.create_default_context())


def test_reader_a_reads_index_a_in_full(secure_node):
    reply = secure_node.call("POST", f"/{INDEX_A}/_search", user="reader-a", body=MATCH_ALL)
    assert hit_ids(reply) == set(SEED_DOCS[INDEX_A])
    assert all(HIDDEN_FIELD in hit["_source"] for hit in reply.json()["hits"]["hits"])


@pytest.mark.parametrize("method,path,body", [
    ("POST", f"/{INDEX_B}/_search", MATCH_ALL),
    ("POST", f"/{INDEX_A},{INDEX_B}/_search", MATCH_ALL),
    ("POST", "/secure-*/_search", MATCH_ALL),
    ("GET", f"/{INDEX_B}/_count", None),
    ("GET", f"/{INDEX_B}/_doc/b-1", None),
])
def test_reader_a_is_forbidden_index_b(secure_node, method, path, body):
    reply = secure_node.call(method, path, user="reader-a", body=body)
    assert reply.status == 403
    assert reply.json()["error"]["type"] == "security_exception"
    assert b"index b" not in reply.body and HIDDEN_WORD.encode() not in reply.body


def test_reader_a_gets_per_item_errors_for_index_b_in_msearch(secure_node):
    lines = f'{{"index":"{INDEX_A}"}}\n{{"size":100}}\n{{"index":"{INDEX_B}"}}\n{{"size":100}}\n'
    reply = secure_node.call("POST", "/_msearch", user="reader-a", body=lines)
    allowed, forbidden = reply.json()["responses"]
    assert {hit["_id"] for hit in allowed["hits"]["hits"]} == set(SEED_DOCS[INDEX_A])
    assert forbidden["status"] == 403 and "hits" not in forbidden


def test_document_level_security_hides_restricted_documents(secure_node):
    # A large window and an explicit total must not reveal them either.
    body = {**MATCH_ALL, "size": 1000, "track_total_hits": True}
    reply = secure_node.call("POST", f"/{INDEX_A}/_search", user="restricted-a", body=body)
    assert hit_ids(reply) == PUBLIC_A
    assert reply.json()["hits"]["total"]["value"] == len(PUBLIC_A)
    assert secure_node.call("GET", f"/{INDEX_A}/_count", user="restricted-a").json()["count"] == len(PUBLIC_A)
    hidden = secure_node.call("GET", f"/{INDEX_A}/_doc/a-restricted-1", user="restricted-a")
    assert hidden.status == 404 and hidden.json()["found"] is False
    aggs = secure_node.call("POST", f"/{INDEX_A}/_search", user="restricted-a", body={
        "size": 0, "aggs": {"visibility": {"terms": {"field": "visibility"}}}}).json()
    assert [b["key"] for b in aggs["aggregations"]["visibility"]["buckets"]] == ["public"]


@pytest.mark.parametrize("body", [
    MATCH_ALL,
    {**MATCH_ALL, "_source": [HIDDEN_FIELD, "title"]},       # what a proxy adding fields would send
    {**MATCH_ALL, "_source": {"includes": [HIDDEN_FIELD]}},
    {**MATCH_ALL, "fields": [HIDDEN_FIELD, "*"]},
    {**MATCH_ALL, "highlight": {"fields": {HIDDEN_FIELD: {}}}},
])
def test_field_level_security_hides_the_secret_field(secure_node, body):
    reply = secure_node.call("POST", f"/{INDEX_A}/_search", user="restricted-a", body=body)
    assert hit_ids(reply) == PUBLIC_A
    assert HIDDEN_WORD.encode() not in reply.body
    for hit in reply.json()["hits"]["hits"]:
        assert HIDDEN_FIELD not in hit.get("_source", {}) and HIDDEN_FIELD not in hit.get("fields", {})


def test_field_level_security_hides_the_field_from_queries_and_mappings(secure_node):
    query = {"query": {"match": {HIDDEN_FIELD: HIDDEN_WORD}}}
    assert hit_ids(secure_node.call("POST", f"/{INDEX_A}/_search", user="restricted-a", body=query)) == set()
    assert hit_ids(secure_node.call("POST", f"/{INDEX_A}/_search", user="reader-a", body=query)) == set(SEED_DOCS[INDEX_A])
    mapping = secure_node.call("GET", f"/{INDEX_A}/_mapping", user="restricted-a").json()
    assert HIDDEN_FIELD not in mapping[INDEX_A]["mappings"]["properties"]
    got = secure_node.call("GET", f"/{INDEX_A}/_doc/a-public-1?_source_includes={HIDDEN_FIELD}", user="restricted-a")
    assert got.json()["found"] is True and got.json()["_source"] == {}


def test_admin_sees_every_document_and_field(secure_node):
    reply = secure_node.call("POST", f"/{INDEX_A},{INDEX_B}/_search", user="admin", body=MATCH_ALL)
    assert hit_ids(reply) == set(SEED_DOCS[INDEX_A]) | set(SEED_DOCS[INDEX_B])
    assert reply.body.count(HIDDEN_WORD.encode()) == len(SEED_DOCS[INDEX_A]) + len(SEED_DOCS[INDEX_B])
    info = secure_node.call("GET", "/_plugins/_security/authinfo", user="admin").json()
    assert info["user_name"] == "admin" and "all_access" in info["roles"]
