"""A bug in the scoring path is a bug: logged with its traceback, counted in es_rerank_bugs_total{stage}
and answered as OpenSearch answers an internal error, never served as a designed BM25 fallback.

The buggy scorer is a fake only to inject the fault; the node, the proxy and the searches are real.
"""

import json
import logging

import pytest
import requests

from es_rerank.proxy.settings import IndexRule
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

MATCH = {"query": {"match": {"text": "breast cancer prognosis"}}, "size": 10}
BUG_LOG = "proxy bug in stage score"


class KeyErrorScorer(TermOverlapScorer):
    """A scorer with a plain programming error: it looks up a feature its inputs never had."""

    def score_pairs(self, queries, documents):
        features = {"input_ids": [queries, documents]}
        return features["token_type_ids"]


@pytest.fixture
def buggy_proxy(opensearch_url, scifact_index):
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index, window=30)), KeyErrorScorer()) as proxy:
        yield proxy


def designed_fallbacks(proxy) -> float:
    return sum(proxy.context.metrics.fallbacks.value((reason,)) for reason in ("error", "oom", "timeout"))


def bug_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "es_rerank.proxy" and BUG_LOG in r.getMessage()]


def test_a_scorer_bug_is_a_500_in_opensearch_shape_logged_and_counted(buggy_proxy, scifact_index, caplog):
    caplog.set_level(logging.ERROR, logger="es_rerank.proxy")
    response = requests.post(f"{buggy_proxy.url}/{scifact_index}/_search", json=MATCH, timeout=30)
    assert response.status_code == 500
    assert response.json() == {"error": {"root_cause": [{"type": "proxy_internal_exception",
                                                         "reason": "the rerank proxy failed unexpectedly; see its log"}],
                                         "type": "proxy_internal_exception",
                                         "reason": "the rerank proxy failed unexpectedly; see its log"},
                               "status": 500}
    assert "X-Rerank" not in response.headers and "X-Rerank-Reason" not in response.headers  # not a fallback
    assert designed_fallbacks(buggy_proxy) == 0
    assert buggy_proxy.context.metrics.bugs.value(("score",)) == 1
    metrics = requests.get(buggy_proxy.url + "/_rerank/metrics", timeout=30).text
    assert 'es_rerank_bugs_total{stage="score"} 1' in metrics
    [record] = bug_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert "token_type_ids" in caplog.text and "in score_pairs" in caplog.text  # the traceback reaches the scorer


def test_in_an_msearch_the_bug_fails_its_own_search_and_the_others_are_served(buggy_proxy, scifact_index,
                                                                           opensearch_url, caplog):
    caplog.set_level(logging.ERROR, logger="es_rerank.proxy")
    plain = {**MATCH, "ext": {"rerank": {"enabled": False}}}
    body = "".join(json.dumps(line) + "\n" for line in ({"index": scifact_index}, MATCH, {"index": scifact_index}, plain))
    served = requests.post(f"{buggy_proxy.url}/_msearch", data=body, timeout=30,
                           headers={"Content-Type": "application/x-ndjson"})
    assert served.status_code == 200, served.text[:300]
    assert served.headers["X-Rerank"] == "error,skipped"
    failed, other = served.json()["responses"]
    assert failed["status"] == 500 and failed["error"]["type"] == "proxy_internal_exception"
    assert failed["error"]["root_cause"] == [{"type": "proxy_internal_exception", "reason": failed["error"]["reason"]}]
    direct = requests.post(f"{opensearch_url}/{scifact_index}/_search", json=MATCH, timeout=30).json()
    assert [h["_id"] for h in other["hits"]["hits"]] == [h["_id"] for h in direct["hits"]["hits"]]
    assert designed_fallbacks(buggy_proxy) == 0
    assert buggy_proxy.context.metrics.bugs.value(("score",)) == 1
    [record] = bug_records(caplog)
    assert record.exc_info is not None and record.exc_info[0] is KeyError
