"""The proxy in front of a secured node (TLS with a private CA, basic auth, document- and
field-level security), with an online A/B test running.

The proxy holds no credentials: its enlarged BM25 `_search` carries the caller's own
Authorization header, so every arm sees exactly what the caller may see, and a caller the node
refuses is refused through the proxy too, outside the experiment.
"""

import json
from contextlib import contextmanager
from dataclasses import replace

import pytest
import requests

from es_rerank.proxy.online_ab.assignment import OnlineAbConfig, assign
from es_rerank.evaluation.protocol import QUERY_ID_HEADER, VARIANT_HEADER
from es_rerank.proxy.settings import IndexRule, UpstreamSettings
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for
from tests.support.security_config import HIDDEN_FIELD, INDEX_A, INDEX_B, SEED_DOCS

EXPERIMENT = "online-secure"
QUERY = {"query": {"match": {"body": "reranking"}}, "size": 10}
PUBLIC_A = {doc_id for doc_id, doc in SEED_DOCS[INDEX_A].items() if doc["visibility"] == "public"}
HIDDEN_WORD = b"tangerine"   # in every document's hidden field, nowhere else


@contextmanager
def secured_proxy(cluster, tmp_path, upstream: UpstreamSettings | None = None, mode: str = "split"):
    config = OnlineAbConfig(split=0.5, mode=mode, key_header="X-Session", experiment=EXPERIMENT,
                            log_path=tmp_path / "decisions.jsonl", secret="s")
    upstream = upstream or UpstreamSettings(cluster.url, ca_file=cluster.ca_file)
    settings = replace(settings_for(cluster.url, IndexRule("secure-*", fields=("title", "body"), window=20)),
                       upstream=upstream, online_ab=config)
    with running_proxy(settings, TermOverlapScorer()) as proxy:
        yield proxy


def as_user(cluster, name: str) -> dict:
    return {"Authorization": cluster.accounts[name].authorization}


def keys_in_each_arm() -> dict[str, str]:
    found: dict[str, str] = {}
    for i in range(100):
        found.setdefault(assign(f"key-{i}", 0.5, EXPERIMENT), f"key-{i}")
    return found


def log_lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]


def test_each_arm_searches_with_the_callers_credentials_and_security_holds(secure_node, tmp_path):
    served = []
    with secured_proxy(secure_node, tmp_path) as proxy:
        for variant, key in keys_in_each_arm().items():
            for user, visible in (("reader-a", set(SEED_DOCS[INDEX_A])), ("restricted-a", PUBLIC_A)):
                response = requests.post(f"{proxy.url}/{INDEX_A}/_search", json=QUERY, timeout=30,
                                         headers={**as_user(secure_node, user), "X-Session": key})
                assert response.status_code == 200, response.text
                assert response.headers[VARIANT_HEADER] == variant
                hits = response.json()["hits"]["hits"]
                assert {hit["_id"] for hit in hits} == visible
                if user == "restricted-a":   # field-level security: the proxy's window request got no more
                    assert HIDDEN_WORD not in response.content
                    assert all(HIDDEN_FIELD not in hit["_source"] for hit in hits)
                served.append(response.headers[QUERY_ID_HEADER])
    assert [line["query_id"] for line in log_lines(tmp_path)] == served


def test_refused_callers_stay_refused_and_outside_the_experiment(secure_node, tmp_path):
    with secured_proxy(secure_node, tmp_path, mode="interleave") as proxy:
        anonymous = requests.post(f"{proxy.url}/{INDEX_A}/_search", json=QUERY, timeout=30,
                                  headers={"X-Session": "key-1"})
        forbidden = requests.post(f"{proxy.url}/{INDEX_B}/_search", json=QUERY, timeout=30,
                                  headers={**as_user(secure_node, "reader-a"), "X-Session": "key-1"})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "security_exception"
    for response in (anonymous, forbidden):
        assert VARIANT_HEADER not in response.headers and HIDDEN_WORD not in response.content
    assert log_lines(tmp_path) == []


def test_the_nodes_certificate_is_checked_unless_told_otherwise(secure_node, tmp_path):
    with secured_proxy(secure_node, tmp_path, upstream=UpstreamSettings(secure_node.url)) as proxy:
        untrusted = requests.post(f"{proxy.url}/{INDEX_A}/_search", json=QUERY, timeout=30,
                                  headers=as_user(secure_node, "reader-a"))
    assert untrusted.status_code == 502
    assert "certificate" in untrusted.json()["error"]["reason"].lower()
    with secured_proxy(secure_node, tmp_path, upstream=UpstreamSettings(secure_node.url, verify=False)) as proxy:
        unchecked = requests.post(f"{proxy.url}/{INDEX_A}/_search", json=QUERY, timeout=30,
                                  headers=as_user(secure_node, "reader-a"))
    assert unchecked.status_code == 200
    assert {hit["_id"] for hit in unchecked.json()["hits"]["hits"]} == set(SEED_DOCS[INDEX_A])


@pytest.mark.parametrize("path", ["/", f"/{INDEX_A}/_doc/a-public-1", "/_cat/indices"])
def test_pass_through_over_tls_relays_the_nodes_answer(secure_node, tmp_path, path):
    with secured_proxy(secure_node, tmp_path) as proxy:
        direct = secure_node.call("GET", path, user="reader-a")
        relayed = requests.get(proxy.url + path, headers=as_user(secure_node, "reader-a"), timeout=30)
    assert relayed.status_code == direct.status
    if direct.status == 200 and path != "/_cat/indices":
        assert relayed.json() == direct.json()
