"""Drop-in fidelity of the reranking proxy against the real node (issue 14, items 3-7).

Each test names the item it pins; each failed before its fix.
"""

import json

import pytest
import requests

from es_rerank.config import IndexRule
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

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
