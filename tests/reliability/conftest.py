"""Fixtures for the reliability tests: a proxy with tight limits over the real node, and a decoy upstream."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from es_rerank.proxy.settings import IndexRule, LimitSettings, ProxySettings, ServerSettings, UpstreamSettings
from es_rerank.proxy.server import ProxyThread
from lab.reliability.abuse_target import SMUGGLED_INDEX, AbuseTarget
from lab.reliability.decoy import DecoyServer
from lab.reliability.scorers import TermOverlapScorer

LIMITS = LimitSettings(max_body_bytes=1 << 20, max_json_depth=100, body_timeout_s=2.0)


def _delete_smuggled(opensearch_url: str) -> None:
    request = urllib.request.Request(f"{opensearch_url}/{SMUGGLED_INDEX}", method="DELETE")
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise


@pytest.fixture(scope="session")
def abuse_target(opensearch_url, cranfield_index):
    """The proxy (term-overlap scorer, 1 MiB body limit, 2 s body timeout) reranking the Cranfield index."""
    _delete_smuggled(opensearch_url)  # a run interrupted by a real smuggling failure may have left it
    settings = ProxySettings(UpstreamSettings(opensearch_url), rules=(IndexRule(cranfield_index),),
                             limits=LIMITS, server=ServerSettings(port=0))
    with DecoyServer() as decoy, ProxyThread(settings, TermOverlapScorer()) as proxy:
        proxy.context.batcher.warm.wait(30)
        yield AbuseTarget(proxy.url, opensearch_url, cranfield_index, "wing lift", decoy,
                          LIMITS.max_body_bytes, LIMITS.body_timeout_s)
    _delete_smuggled(opensearch_url)
