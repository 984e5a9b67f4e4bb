"""`es-rerank serve --model EXPORT` with cross-encoders of other families than BERT: a tiny random
RoBERTa (its own pair template, no token type ids) and DeBERTa-v2 (its graph drops the token type
ids its tokenizer makes) rerank a real SciFact window with the scores `OnnxScorer` gives."""

import json

import numpy as np
import pytest
import requests

from es_rerank.engine.bm25_query import bm25_body, hits_from_response
from es_rerank.scoring.cross_encoder import OnnxScorer
from es_rerank.scoring.rerank import rerank_hits
from tests.support.served_cli import served_export
from tests.support.tiny_cross_encoders import train_and_export, write_pair_collection

QUERY = "0-dimensional biomaterials show inductive properties"


@pytest.fixture(params=["roberta", "deberta-v2"])
def served(request, tmp_path, opensearch_url, scifact_index):
    _, _, export_dir, _ = train_and_export(request.param, tmp_path / request.param,
                                           write_pair_collection(tmp_path / "collection"))
    with served_export(opensearch_url, export_dir, scifact_index) as url:
        yield url, export_dir


def test_a_tiny_export_of_another_family_reranks_the_window(served, opensearch_url, scifact_index):
    url, export_dir = served
    body = bm25_body(QUERY, size=10)
    response = requests.post(f"{url}/{scifact_index}/_search", data=json.dumps(body),
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    window = requests.post(f"{opensearch_url}/{scifact_index}/_search", json={**body, "size": 20}).json()
    want = rerank_hits(OnnxScorer.load(export_dir, device="cpu"), QUERY, hits_from_response(window), ("title", "text"))
    hits = response.json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [hit.doc_id for hit, _ in want[:10]]
    np.testing.assert_allclose([h["_score"] for h in hits], [s for _, s in want[:10]], atol=1e-4)
