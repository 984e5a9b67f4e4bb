"""Model faults injected through FaultScorer in-process: NaN scores, errors and out-of-memory give the BM25 page."""

import json

import pytest
import requests

from es_rerank.proxy.settings import IndexRule, ProxySettings, ServerSettings, UpstreamSettings
from es_rerank.proxy.server import ProxyThread
from lab.reliability.scorers import FaultScorer, TermOverlapScorer, write_fault

BODY = {"query": {"match": {"text": "boundary layer transition"}}, "from": 10, "size": 10}


@pytest.mark.parametrize("fault, reason", [("nan", "error"), ("error", "error"), ("oom", "oom")])
def test_bad_model_output_falls_back_to_the_bm25_page(opensearch_url, cranfield_index, tmp_path, fault, reason):
    control = tmp_path / "fault"
    settings = ProxySettings(UpstreamSettings(opensearch_url), rules=(IndexRule(cranfield_index, window=30),),
                             server=ServerSettings(port=0))
    with ProxyThread(settings, FaultScorer(TermOverlapScorer(), control)) as proxy:
        proxy.context.batcher.warm.wait(30)
        write_fault(control, fault)
        response = requests.post(f"{proxy.url}/{cranfield_index}/_search", data=json.dumps(BODY),
                                 headers={"Content-Type": "application/json"}, timeout=30)
    direct = requests.post(f"{opensearch_url}/{cranfield_index}/_search", json=BODY, timeout=30)
    assert response.status_code == 200
    assert (response.headers["X-Rerank"], response.headers["X-Rerank-Reason"]) == ("fallback", reason)
    assert [h["_id"] for h in response.json()["hits"]["hits"]] == [h["_id"] for h in direct.json()["hits"]["hits"]]
    assert all(isinstance(h["_score"], float) for h in response.json()["hits"]["hits"])
