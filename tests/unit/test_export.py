"""`es-rerank export` on CPU: fused graphs, meta.json, parity gates, atomic writes, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from es_rerank.cli import main
from es_rerank.errors import ModelError
from es_rerank.export.parity import PARITY_THRESHOLDS, ParityThreshold
from es_rerank.export.parity_pairs import ParitySource
from es_rerank.export.pipeline import ExportSettings, export_checkpoint
from es_rerank.scoring.export_meta import read_meta
from es_rerank.scoring.cross_encoder import OnnxScorer
from tests.fixtures_export import MAX_LENGTH, minilm_export, one_logit_checkpoint, packaged_encoder  # noqa: F401

TINY_PARITY = ParitySource(queries=2, candidates=3)
ALWAYS_FAIL = {name: ParityThreshold(abs_dlogit=-1.0, rel_dlogit=0.0) for name in PARITY_THRESHOLDS}


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (torch is already imported) as `es-rerank ARGS` would."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_meta_json_describes_the_fused_models(minilm_export):
    meta = read_meta(minilm_export)
    assert (meta.max_length, meta.query_max_length) == (MAX_LENGTH, 64)
    assert meta.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert (meta.output_name, meta.output_activation) == ("logits", "identity")
    assert sorted(meta.variants) == ["fp32", "int8"]
    fp32, int8 = meta.variants["fp32"], meta.variants["int8"]
    assert fp32.fused_ops["Attention"] == 6 and fp32.fused_ops["EmbedLayerNormalization"] == 1
    assert int8.fused_ops["QAttention"] == 6
    assert fp32.parity["passed"] and int8.parity["passed"]
    assert meta.details["last_layer_nodes_on_first_token"] == 6  # output projection, FFN, two layer norms
    assert fp32.parity["max_abs_dlogit"] < 1e-4 and fp32.parity["top10_agreement"] == 1.0
    assert fp32.parity["source"].startswith("built-in sample pairs")
    assert len(fp32.parity["per_query"]) == 6 and fp32.parity["pairs"] == 72
    for name in ("model.onnx", "model_int8.onnx", "tokenizer.json"):
        assert (minilm_export / name).is_file()
    assert not [p for p in minilm_export.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_int8_stays_within_its_stated_bound(minilm_export, data_dir):
    """The int8 bound (es_rerank.export.parity): every |Δlogit| within one standard deviation of
    the fp32 logits, and >= 80% of the fp32 top 10 kept, here on real SciFact pairs."""
    from es_rerank.data.candidates import sample_from_qrels

    fp32 = OnnxScorer.load(minilm_export, device="cpu", variant="fp32", threads=2)
    int8 = OnnxScorer.load(minilm_export, device="cpu", variant="int8", threads=2)
    deltas, spreads, overlaps = [], [], []
    for item in sample_from_qrels(data_dir / "scifact", n_queries=3, k=20, seed=1).windows():
        queries = [item.query] * len(item.docs)
        ref, got = fp32.score_pairs(queries, list(item.docs)), int8.score_pairs(queries, list(item.docs))
        deltas.append(np.max(np.abs(ref - got)))
        spreads.append(ref)
        overlaps.append(len(set(np.argsort(-ref)[:10]) & set(np.argsort(-got)[:10])) / 10)
    spread = float(np.std(np.concatenate(spreads)))
    assert max(deltas) <= 1.0 * spread, (max(deltas), spread)
    assert np.mean(overlaps) >= 0.8, overlaps


def test_cli_export_then_a_failed_reexport_keeps_the_good_one(one_logit_checkpoint, tmp_path, capsys):
    out = tmp_path / "exports" / "minilm"
    code, stdout, err = run_main(capsys, "export", str(one_logit_checkpoint), str(out), "--device", "cpu",
                                 "--max-length", "32", "--query-max-length", "16", "--parity-queries", "2",
                                 "--parity-candidates", "3")
    assert code == 0, err
    assert "fp32" in stdout and "ok" in stdout and "parity fp32: max |Δlogit|" in err
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "model.onnx"}
    model_stat = (out / "model.onnx").stat()

    settings = ExportSettings(str(one_logit_checkpoint), out, device="cpu", max_length=32, query_max_length=16,
                              parity=TINY_PARITY,
                              overwrite=True)
    with pytest.raises(ModelError, match="parity check failed, nothing written: fp32: max"):
        export_checkpoint(settings, thresholds=ALWAYS_FAIL)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "model.onnx"} == before
    assert (out / "model.onnx").stat().st_mtime_ns == model_stat.st_mtime_ns
    assert [p.name for p in out.parent.iterdir()] == ["minilm"]  # no partial or old directories left

    code, _, err = run_main(capsys, "export", str(one_logit_checkpoint), str(out), "--device", "cpu")
    assert code == 2 and "exists and is not empty" in err and "--overwrite" in err


def test_the_first_token_last_layer_scores_as_the_whole_one_does(minilm_export, one_logit_checkpoint, tmp_path):
    whole = tmp_path / "whole"
    export_checkpoint(ExportSettings(str(one_logit_checkpoint), whole, device="cpu", fp16=False,
                                     max_length=MAX_LENGTH, parity=TINY_PARITY, first_token_last_layer=False))
    assert read_meta(whole).details["last_layer_nodes_on_first_token"] == 0
    queries = ["vitamin d deficiency and bone fractures"] * 3
    documents = ["Vitamin D supplements lowered hip fracture risk in older women.", "short", "bone " * 400]
    sliced_scores = OnnxScorer.load(minilm_export, device="cpu", variant="fp32").score_pairs(queries, documents)
    whole_scores = OnnxScorer.load(whole, device="cpu", variant="fp32").score_pairs(queries, documents)
    np.testing.assert_allclose(sliced_scores, whole_scores, atol=1e-5, rtol=0)


def test_force_writes_despite_failed_parity(one_logit_checkpoint, tmp_path):
    out = tmp_path / "forced"
    settings = ExportSettings(str(one_logit_checkpoint), out, device="cpu", max_length=32, query_max_length=16,
                              parity=TINY_PARITY,
                              force=True)
    export_checkpoint(settings, thresholds=ALWAYS_FAIL)
    parity = json.loads((out / "meta.json").read_text())["variants"]["fp32"]["parity"]
    assert parity["passed"] is False and parity["max_abs_dlogit_limit"] == -1.0


def test_a_plain_encoder_is_refused_with_how_to_get_one_logit(tmp_path, capsys):
    code, _, err = run_main(capsys, "export", str(packaged_encoder()), str(tmp_path / "out"), "--device", "cpu")
    assert code == 1
    assert "is a plain encoder (BertModel), not a sequence-classification model" in err
    assert "es-rerank train" in err and "num_labels=1" in err
    assert not (tmp_path / "out").exists()


def test_a_two_label_model_is_refused(tmp_path, capsys):
    checkpoint = tmp_path / "two-labels"
    checkpoint.mkdir()
    config = json.loads((packaged_encoder() / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], id2label={"0": "NO", "1": "YES"},
                  label2id={"NO": 0, "YES": 1})
    (checkpoint / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(capsys, "export", str(checkpoint), str(tmp_path / "out"), "--device", "cpu")
    assert code == 1
    assert "is a BertForSequenceClassification with 2 labels; a reranker scores with exactly one logit" in err
    assert "num_labels=1" in err


def test_max_length_over_512_is_refused(one_logit_checkpoint, tmp_path, capsys):
    code, _, err = run_main(capsys, "export", str(one_logit_checkpoint), str(tmp_path / "out"),
                            "--max-length", "1024")
    assert code == 2 and "1024 is not in the range 8<=x<=512" in err


def test_query_limit_must_leave_room_for_the_document(one_logit_checkpoint, tmp_path):
    settings = ExportSettings(str(one_logit_checkpoint), tmp_path / "out", device="cpu", max_length=32,
                              query_max_length=30)
    with pytest.raises(Exception, match="--query-max-length 30 leaves no room for the document; expected 1 to 28"):
        export_checkpoint(settings)
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_path_is_refused(tmp_path, capsys):
    code, _, err = run_main(capsys, "export", str(Path(tmp_path) / "nope"), str(tmp_path / "out"), "--device", "cpu")
    assert code == 1 and "does not exist" in err
