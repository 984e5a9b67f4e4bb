"""OnnxScorer on a real CPU export of MiniLM-L6 with a fresh one-logit head."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from es_rerank.errors import ModelError, ScoringError
from es_rerank.scoring.cross_encoder import OnnxScorer, Scorer, score
from es_rerank.scoring.token_batches import EncodedBatch
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401


@pytest.fixture(scope="module")
def scifact_pairs(data_dir):
    """Real (query, document) pairs: judged and random SciFact documents of 3 test queries."""
    from es_rerank.data.candidates import sample_from_qrels

    return sample_from_qrels(data_dir / "scifact", n_queries=3, k=8).windows()


@pytest.fixture(scope="module")
def scorer(minilm_export):
    return OnnxScorer.load(minilm_export, device="cpu", batch_size=16, variant="fp32", threads=2)


def flatten(items):
    queries = [item.query for item in items for _ in item.docs]
    documents = [doc for item in items for doc in item.docs]
    return queries, documents


def test_fp32_export_matches_pytorch_within_1e_4(scorer, one_logit_checkpoint, scifact_pairs):
    from es_rerank.export.torch_scorer import TorchScorer

    reference = TorchScorer.load(one_logit_checkpoint, scorer.encoder, device="cpu", dtype="fp32",
                                 attn_implementation="eager", input_names=scorer.meta.input_names, batch_size=16)
    queries, documents = flatten(scifact_pairs)
    expected = reference.score_pairs(queries, documents)
    got = scorer.score_pairs(queries, documents)
    assert isinstance(scorer, Scorer)
    assert got.dtype == np.float32 and got.shape == (len(documents),)
    assert np.max(np.abs(got - expected)) < 1e-4
    assert np.std(expected) > 1e-3  # the comparison is not between constants


def test_scores_do_not_depend_on_batch_size_or_order(minilm_export, scorer, scifact_pairs):
    queries, documents = flatten(scifact_pairs)
    base = scorer.score_pairs(queries, documents)
    for batch_size in (1, 5, 64):
        other = OnnxScorer.load(minilm_export, device="cpu", batch_size=batch_size, variant="fp32", threads=2)
        np.testing.assert_allclose(other.score_pairs(queries, documents), base, atol=1e-5, rtol=0)
    order = np.random.default_rng(0).permutation(len(documents))
    shuffled = scorer.score_pairs([queries[i] for i in order], [documents[i] for i in order])
    np.testing.assert_allclose(shuffled, base[order], atol=1e-5, rtol=0)


def test_edge_texts_score(scorer):
    assert score(scorer, "anything", []).shape == (0,)
    assert scorer.score_pairs([], []).dtype == np.float32
    huge = "Bone density was measured in older adults. " * 30000
    documents = ["", huge, "Müller über 東京 — ça va? 😴", "   "]
    scores = scorer.score_pairs(["vitamin d fractures", "vitamin d fractures", "café", ""], documents)
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
    # A huge document is its first tokens: scoring it equals scoring a prefix long enough to fill the budget.
    prefix = huge[:20000]
    np.testing.assert_allclose(score(scorer, "vitamin d fractures", [prefix]), scores[1:2], atol=1e-6)


def test_safe_to_call_from_several_threads(scorer, scifact_pairs):
    queries, documents = flatten(scifact_pairs)
    expected = scorer.score_pairs(queries, documents)
    results, errors = {}, []

    def work(i):
        try:
            results[i] = scorer.score_pairs(queries, documents)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results.values():
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_a_runtime_failure_is_a_scoring_error(scorer):
    # Token id far outside the vocabulary: ONNX Runtime's Gather fails on it for real.
    bad = np.array([[101, 10_000_000, 102]], dtype=np.int64)
    batch = EncodedBatch(bad, np.ones_like(bad), np.zeros_like(bad), np.array([0]))
    with pytest.raises(ScoringError, match="ONNX Runtime failed scoring a batch of 1 pairs x 3 tokens"):
        scorer.score_batch(batch)


def test_default_variant_on_cpu_is_int8_when_exported(minilm_export):
    assert OnnxScorer.load(minilm_export, device="cpu").variant.name == "int8"


def copy_export(minilm_export, tmp_path):
    target = tmp_path / "export"
    shutil.copytree(minilm_export, target)
    return target


def edit_meta(directory, change):
    path = directory / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_missing_model_file_is_a_clear_error(minilm_export, tmp_path):
    broken = copy_export(minilm_export, tmp_path)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model file .*model\.onnx named by meta\.json is missing"):
        OnnxScorer.load(broken, device="cpu", variant="fp32")


def test_missing_meta_or_tokenizer_is_a_clear_error(minilm_export, tmp_path):
    broken = copy_export(minilm_export, tmp_path)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer file .*tokenizer\.json named by meta\.json is missing"):
        OnnxScorer.load(broken, device="cpu")
    (broken / "meta.json").unlink()
    with pytest.raises(ModelError, match="meta.json is missing; .* is not an es-rerank export"):
        OnnxScorer.load(broken, device="cpu")


def test_meta_with_wrong_input_names_is_refused(minilm_export, tmp_path):
    broken = copy_export(minilm_export, tmp_path)
    edit_meta(broken, lambda meta: meta.update(input_names=["input_ids", "attention_mask"]))
    with pytest.raises(ModelError, match=r"model\.onnx takes inputs \['attention_mask', 'input_ids', "
                                         r"'token_type_ids'\] but meta\.json lists \['input_ids', 'attention_mask'\]"):
        OnnxScorer.load(broken, device="cpu", variant="fp32")


def test_meta_disagreeing_on_dtype_is_refused(minilm_export, tmp_path):
    broken = copy_export(minilm_export, tmp_path)
    shutil.copy(broken / "model_int8.onnx", broken / "model.onnx")  # the fp32 entry now points at an int8 graph
    with pytest.raises(ModelError,
                       match="model.onnx is labelled dtype 'int8' but meta.json says variant 'fp32' is 'float32'"):
        OnnxScorer.load(broken, device="cpu", variant="fp32")


def test_unknown_variant_and_bad_arguments(minilm_export):
    with pytest.raises(ModelError, match=r"this export has no 'fp16' model; it has \['fp32', 'int8'\]"):
        OnnxScorer.load(minilm_export, device="cpu", variant="fp16")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        OnnxScorer.load(minilm_export, batch_size=0)
    with pytest.raises(ValueError, match="device must be one of"):
        OnnxScorer.load(minilm_export, device="gpu")
