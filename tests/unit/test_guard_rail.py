"""The guard rail's decisions from verdicts recorded in real export directories (files on disk)."""

from __future__ import annotations

import json

import pytest

from es_rerank.proxy.settings import IndexRule
from es_rerank.errors import ModelError
from es_rerank.scoring.fusion import FusionWeights, load_weights
from es_rerank.proxy.guard_rail import SAFE_FUSION, VERDICTS_FILE, Verdict, guard_rules, record_verdict, recorded_verdict
from tests.conftest import REPO

HARM = Verdict("scifact", "test", 300, 0.6775, 0.4200, -0.2575, 0.0002, True)
WIN = Verdict("scifact", "test", 300, 0.6775, 0.7258, 0.0483, 0.0001, False)
CE_ONLY = FusionWeights(ce=1.0, bm25=0.0, dense=0.0)


def test_the_safe_fusion_is_the_committed_bm25_dense_recipe():
    assert load_weights(REPO / "recipes" / "fusion" / "bm25_dense_minilm.yaml") == SAFE_FUSION
    assert not SAFE_FUSION.needs_ce


def test_a_recorded_verdict_reads_back_and_other_indices_are_kept(tmp_path):
    record_verdict(tmp_path, HARM)
    record_verdict(tmp_path, Verdict("other", "dev", 9, 0.5, 0.6, 0.1, 0.2, False))
    record_verdict(tmp_path, WIN)  # replaces the first one
    assert recorded_verdict(tmp_path, "scifact") == WIN
    assert recorded_verdict(tmp_path, "other").queries == 9
    assert recorded_verdict(tmp_path, "nope") is None


def test_a_harmful_cross_encoder_falls_back_to_the_bi_encoder_fusion(tmp_path):
    ce, dense = tmp_path / "ce", tmp_path / "dense"
    ce.mkdir(), dense.mkdir()
    record_verdict(ce, HARM)
    rules, lines = guard_rules([IndexRule("scifact", dense_model=str(dense)), IndexRule("cranfield")], ce, False)
    assert rules[0].rerank and rules[0].fusion == SAFE_FUSION
    assert "not served" in lines[0] and "BM25 fused with the bi-encoder instead" in lines[0]
    assert rules[1] == IndexRule("cranfield")  # no verdict there: served as configured, with a warning
    assert "no A/B of this model is recorded" in lines[1]


def test_the_fallback_is_refused_too_where_its_own_verdict_shows_harm(tmp_path):
    ce, dense = tmp_path / "ce", tmp_path / "dense"
    ce.mkdir(), dense.mkdir()
    record_verdict(ce, HARM)
    record_verdict(dense, HARM)
    (rule,), lines = guard_rules([IndexRule("scifact", fusion=CE_ONLY, dense_model=str(dense))], ce, False)
    assert not rule.rerank and "serving BM25" in lines[0]


def test_a_harmful_bi_encoder_fusion_is_judged_by_the_bi_encoder_export(tmp_path):
    record_verdict(tmp_path, HARM)
    (rule,), lines = guard_rules([IndexRule("scifact", fusion=SAFE_FUSION, dense_model=str(tmp_path))], None, False)
    assert not rule.rerank and "significantly below BM25" in lines[0]


def test_allow_harm_and_a_winning_verdict_serve_the_model(tmp_path):
    record_verdict(tmp_path, HARM)
    (rule,), lines = guard_rules([IndexRule("scifact")], tmp_path, True)
    assert rule == IndexRule("scifact") and "despite harm (--allow-harm)" in lines[0]
    record_verdict(tmp_path, WIN)
    (rule,), lines = guard_rules([IndexRule("scifact")], tmp_path, False)
    assert rule == IndexRule("scifact") and "the model is served: nDCG@10 0.7258" in lines[0]


def test_a_malformed_verdict_file_says_how_to_fix_it(tmp_path):
    (tmp_path / VERDICTS_FILE).write_text("[1, 2]")
    with pytest.raises(ModelError, match="JSON object keyed by index") as raised:
        recorded_verdict(tmp_path, "scifact")
    assert "--record-verdict" in raised.value.hint
    (tmp_path / VERDICTS_FILE).write_text(json.dumps({"scifact": {"index": "scifact"}}))
    with pytest.raises(ModelError, match="malformed"):
        recorded_verdict(tmp_path, "scifact")
