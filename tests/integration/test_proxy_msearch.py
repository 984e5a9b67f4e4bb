"""`_msearch` is reranked search by search, as `_search` would be (issue 14 item 9)."""

import json
import threading

import pytest
import requests

from es_rerank.proxy.settings import IndexRule
from tests.proxy_support import GatedScorer, SlowScorer, TermOverlapScorer, running_proxy, settings_for
from tests.support.waiting import wait_until

INDEX = "test-i14-msearch"
PLAIN = "test-i14-msearch-plain"
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def indices(os_client):
    for name in (INDEX, PLAIN):
        os_client.indices.delete(index=name, ignore=[404])
        os_client.indices.create(index=name, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
        # BM25 prefers the short documents; the scorer prefers those holding every query word.
        body = "".join(json.dumps({"index": {"_id": str(k)}}) + "\n" +
                       json.dumps({"text": "wing" if k % 3 else "wing lift drag " + "filler " * k}) + "\n"
                       for k in range(30))
        os_client.bulk(body=body, index=name, refresh=True)
    yield INDEX
    for name in (INDEX, PLAIN):
        os_client.indices.delete(index=name, ignore=[404])


@pytest.fixture(scope="module")
def proxy(opensearch_url, indices):
    scorer = TermOverlapScorer()
    with running_proxy(settings_for(opensearch_url, IndexRule(INDEX, fields=("text",), window=20)), scorer) as p:
        yield p


def ndjson(*lines) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def hits(response) -> list:
    return [(h["_id"], h["_score"]) for h in response["hits"]["hits"]]


def test_each_search_is_reranked_as_search_would_rerank_it(proxy, indices, opensearch_url):
    first = {"query": {"match": {"text": "wing lift drag"}}, "size": 5}
    second = {"query": {"match": {"text": "wing drag"}}, "size": 3, "from": 2}
    body = ndjson({"index": INDEX}, first, {}, second, {"index": PLAIN}, first)
    served = requests.post(f"{proxy.url}/{INDEX}/_msearch", data=body, headers=NDJSON, timeout=30)
    assert served.status_code == 200, served.text[:300]
    assert served.headers["X-Rerank"] == "reranked,reranked,skipped"
    responses = served.json()["responses"]
    assert [r["status"] for r in responses] == [200, 200, 200]
    for response, query in zip(responses, (first, second)):
        alone = requests.post(f"{proxy.url}/{INDEX}/_search", json=query, timeout=30)
        assert alone.headers["X-Rerank"] == "reranked"
        assert hits(response) == hits(alone.json())
    direct = requests.post(f"{opensearch_url}/{PLAIN}/_search", json=first, timeout=30).json()
    assert hits(responses[2]) == hits(direct)
    bm25 = requests.post(f"{opensearch_url}/{INDEX}/_search", json=first, timeout=30).json()
    assert hits(responses[0]) != hits(bm25)  # the model's order, not BM25's


def test_msearch_keeps_what_search_keeps(proxy, indices, opensearch_url):
    """Switched off by the header: byte for byte as the node answers, apart from `took`."""
    body = ndjson({"index": INDEX}, {"query": {"match": {"text": "wing"}}, "size": 2})
    served = requests.post(f"{proxy.url}/_msearch", data=body, headers={**NDJSON, "X-Rerank": "off"}, timeout=30)
    direct = requests.post(f"{opensearch_url}/_msearch", data=body, headers=NDJSON, timeout=30)
    assert served.headers.get("X-Rerank") is None
    assert [hits(r) for r in served.json()["responses"]] == [hits(r) for r in direct.json()["responses"]]


def test_a_malformed_msearch_is_answered_by_the_node(proxy, opensearch_url):
    body = b'{"index": "' + INDEX.encode() + b'"}\n{"query": {"match_all": {}}}'  # no final newline
    served = requests.post(f"{proxy.url}/_msearch", data=body, headers=NDJSON, timeout=30)
    direct = requests.post(f"{opensearch_url}/_msearch", data=body, headers=NDJSON, timeout=30)
    assert served.status_code == direct.status_code
    assert served.json()["error"]["type"] == direct.json()["error"]["type"]


def test_each_search_falls_back_on_its_own(opensearch_url, indices):
    """A search whose model call misses its deadline gets its BM25 page; the other search is still reranked."""
    rules = (IndexRule(INDEX, fields=("text",), window=20, deadline_ms=60_000),
             IndexRule(PLAIN, fields=("text",), window=20, deadline_ms=1))
    query = {"query": {"match": {"text": "wing lift drag"}}, "size": 5}
    with running_proxy(settings_for(opensearch_url, *rules), SlowScorer(0.3)) as proxy:
        body = ndjson({"index": INDEX}, query, {"index": PLAIN}, query)
        served = requests.post(f"{proxy.url}/_msearch", data=body, headers=NDJSON, timeout=60)
        assert served.status_code == 200, served.text[:300]
        assert served.headers["X-Rerank"] == "reranked,fallback"
        bm25 = requests.post(f"{opensearch_url}/{PLAIN}/_search", json=query, timeout=30).json()
        assert hits(served.json()["responses"][1]) == hits(bm25)
        assert proxy.context.metrics.fallbacks.value(("timeout",)) == 1


def test_the_searches_of_one_msearch_share_one_model_call(opensearch_url, indices):
    """A held `_search` keeps the model busy while the `_msearch`'s three windows queue behind it;
    once released, the three go to the model together, in one call of 3 x 20 pairs."""
    scorer = GatedScorer()
    settings = settings_for(opensearch_url, IndexRule(INDEX, fields=("text",), window=20, deadline_ms=60000))
    with running_proxy(settings, scorer) as proxy:
        answers = {}

        def send(name, url, **kwargs):
            answers[name] = requests.post(url, timeout=120, **kwargs)

        held = threading.Thread(target=send, args=("search", f"{proxy.url}/{INDEX}/_search"),
                                kwargs={"json": {"query": {"match": {"text": "wing"}}}})
        held.start()
        assert scorer.entered.wait(60), "the held search never reached the model"
        body = ndjson({}, {"query": {"match": {"text": "wing"}}}, {}, {"query": {"match": {"text": "wing lift"}}},
                      {}, {"query": {"match": {"text": "wing drag"}}})
        many = threading.Thread(target=send, args=("msearch", f"{proxy.url}/{INDEX}/_msearch"),
                                kwargs={"data": body, "headers": NDJSON})
        many.start()
        batcher = proxy.context.batcher
        wait_until(lambda: len(batcher._jobs) == 3, "the three windows to queue behind the held call")  # read, not patched
        scorer.release()
        held.join(120)
        many.join(120)
    assert answers["search"].headers["X-Rerank"] == "reranked"
    assert answers["msearch"].headers["X-Rerank"] == "reranked,reranked,reranked"
    assert scorer.calls[1:] == [20, 60]  # after the warm-up: the held search, then the three at once
