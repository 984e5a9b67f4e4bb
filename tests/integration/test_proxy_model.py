"""`es-rerank serve --model EXPORT` as users run it: a real ONNX export reranks a real SciFact window."""

import json

import numpy as np
import pytest
import requests

from es_rerank.scoring.rerank import rerank_hits
from es_rerank.engine.bm25_query import bm25_body, hits_from_response
from tests.support.served_cli import served_export
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)

QUERY = "0-dimensional biomaterials show inductive properties"


@pytest.fixture(scope="module")
def served(minilm_export, opensearch_url, scifact_index):
    with served_export(opensearch_url, minilm_export, scifact_index) as url:
        yield url


def test_a_real_export_reranks_the_window(served, minilm_export, opensearch_url, scifact_index):
    from es_rerank.scoring.cross_encoder import OnnxScorer

    body = bm25_body(QUERY, size=10)
    response = requests.post(f"{served}/{scifact_index}/_search", data=json.dumps(body),
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    window = requests.post(f"{opensearch_url}/{scifact_index}/_search", json={**body, "size": 20}).json()
    want = rerank_hits(OnnxScorer.load(minilm_export, device="cpu"), QUERY, hits_from_response(window), ("title", "text"))
    hits = response.json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [hit.doc_id for hit, _ in want[:10]]
    np.testing.assert_allclose([h["_score"] for h in hits], [s for _, s in want[:10]], atol=1e-4)
