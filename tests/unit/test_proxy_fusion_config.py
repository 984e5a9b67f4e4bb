"""Fusion and the per-index off switch in the proxy's settings and request planning (no I/O)."""

import json

import pytest

from es_rerank.proxy.settings import IndexRule, ProxySettings, UpstreamSettings, read_config_file, rules_from_mapping
from es_rerank.errors import ConfigError
from es_rerank.scoring.fusion import FusionWeights
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.plan import PassThrough, SearchRequest, plan_search
from tests.conftest import REPO, run_cli

DEFAULTS = IndexRule("*")
UPSTREAM = UpstreamSettings("http://127.0.0.1:9200")
RECIPE = REPO / "recipes" / "fusion" / "bm25_dense_minilm.yaml"
MATCH = {"query": {"match": {"text": "gene therapy"}}}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def plan(rule, body, path=None):
    settings = ProxySettings(UPSTREAM, rules=(rule,))
    request = SearchRequest("POST", path or f"/{rule.pattern}/_search", "", {}, json.dumps(body).encode())
    return plan_search(request, settings)


def test_config_reads_fusion_blocks_files_dense_models_and_the_off_switch(tmp_path):
    (tmp_path / "recipes").mkdir()
    write(tmp_path / "recipes", "w.yaml", "weights: {ce: 0.2, bm25: 0.4, dense: 0.4, norm: minmax}\n")
    config = write(tmp_path, "proxy.yaml", "indices:\n"
                   "  legal: {rerank: false}\n"
                   "  docs: {fusion: {ce: 0.6, bm25: 0.4}}\n"
                   "  'news-*': {fusion_file: recipes/w.yaml, dense_model: exports/dense}\n")
    legal, docs, news = rules_from_mapping(read_config_file(config), DEFAULTS, base_dir=tmp_path)
    assert legal.rerank is False and docs.rerank is True
    assert docs.fusion == FusionWeights(ce=0.6, bm25=0.4, dense=0.0, norm="zscore")
    assert news.fusion == FusionWeights(ce=0.2, bm25=0.4, dense=0.4, norm="minmax")
    assert news.dense_model == str(tmp_path / "exports" / "dense")  # relative to the config file's folder


def test_defaults_carry_the_cli_fusion_and_dense_model_to_every_config_rule():
    defaults = IndexRule("*", fusion=FusionWeights(ce=0.5, dense=0.5), dense_model="exports/dense")
    (rule,) = rules_from_mapping({"indices": {"docs": {"window": 20}}}, defaults)
    assert rule.fusion == defaults.fusion and rule.dense_model == "exports/dense" and rule.window == 20


@pytest.mark.parametrize("block, message", [
    ({"fusion": {"ce": "high"}}, "indices.docs.fusion.ce must be a number >= 0, got the string 'high'"),
    ({"fusion": {"ce": 1, "bm": 1}}, "indices.docs.fusion has unknown key(s) bm"),
    ({"fusion": {"ce": 0.5}, "fusion_file": "w.yaml"}, "index 'docs' has both fusion and fusion_file"),
    ({"fusion_file": "missing.yaml"}, "cannot read fusion weights from missing.yaml"),
    ({"rerank": "no"}, "rerank for 'docs' must be true or false, got 'no'"),
    ({"dense_model": 3}, "dense_model for 'docs' must be a directory name, got 3"),
    ({"fuson": {}}, "index 'docs' has unknown key(s) ['fuson']"),
])
def test_bad_fusion_config_says_what_is_wrong(block, message):
    with pytest.raises(ConfigError) as caught:
        rules_from_mapping({"indices": {"docs": block}}, DEFAULTS)
    assert message in str(caught.value)


def test_a_rule_that_needs_dense_scores_without_a_dense_model_is_refused():
    rule = IndexRule("docs", fusion=FusionWeights(ce=0.5, bm25=0.3, dense=0.2))
    with pytest.raises(ConfigError) as caught:
        ProxySettings(UPSTREAM, rules=(rule,))
    assert "index 'docs' fuses dense scores (fusion weight dense=0.2) but has no dense model" in str(caught.value)
    assert "--dense-model" in caught.value.hint
    ProxySettings(UPSTREAM, rules=(IndexRule("docs", fusion=rule.fusion, dense_model="d"),))  # fine with one
    ProxySettings(UPSTREAM, rules=(IndexRule("docs", fusion=rule.fusion, rerank=False),))  # off: nothing to score


def test_serve_refuses_dense_fusion_without_a_dense_model_before_loading_anything():
    result = run_cli("serve", "--index", "docs", "--fusion-file", str(RECIPE), "--port", "0", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "index 'docs' fuses dense scores (fusion weight dense=0.5) but has no dense model" in result.stderr


def test_an_exact_index_name_wins_over_a_pattern_so_one_index_can_be_switched_off():
    settings = ProxySettings(UPSTREAM, rules=(IndexRule("docs-*"), IndexRule("docs-legal", rerank=False)))
    assert settings.rule_for(["docs-legal"]).rerank is False
    assert settings.rule_for(["docs-news"]).rerank is True
    assert settings.rule_for(["docs-legal", "docs-news"]) is None  # mixed targets pass through


def test_a_switched_off_index_passes_through_without_ext_rerank():
    skipped = plan(IndexRule("legal", rerank=False), {**MATCH, "ext": {"rerank": {"window": 5}}})
    assert isinstance(skipped, PassThrough) and skipped.reason == "reranking switched off for this index"
    assert json.loads(skipped.body) == MATCH  # OpenSearch would refuse the unknown ext.rerank


def test_the_index_fusion_weights_reach_the_rerank_spec_and_a_request_can_change_them():
    rule = IndexRule("docs", fusion=FusionWeights(ce=0.6, bm25=0.4), dense_model="d")
    assert plan(rule, MATCH).spec.fusion == rule.fusion
    assert plan(rule, MATCH).spec.dense_model == "d"
    changed = plan(rule, {**MATCH, "ext": {"rerank": {"fusion": {"dense": 0.5, "norm": "minmax"}}}}).spec.fusion
    assert changed == FusionWeights(ce=0.6, bm25=0.4, dense=0.5, norm="minmax")  # left-out keys from the index
    assert plan(IndexRule("docs"), MATCH).spec.fusion is None  # no weights: the cross-encoder order, as before
    ce_based = plan(IndexRule("docs"), {**MATCH, "ext": {"rerank": {"fusion": {"bm25": 1}}}}).spec.fusion
    assert ce_based == FusionWeights(ce=1.0, bm25=1.0)


@pytest.mark.parametrize("fusion, reason", [
    ({"ce": "high"}, "ext.rerank.fusion.ce must be a number >= 0, got the string 'high'"),
    ([0.5, 0.5], "ext.rerank.fusion must be an object with keys ce, bm25, dense, norm; got a list"),
    ({"ce": 0, "bm25": 0}, "fusion weights ce, bm25 and dense are all 0"),
    ({"norm": "l2"}, "fusion norm must be one of zscore, minmax, got 'l2'"),
    ({"dense": 0.3}, "ext.rerank.fusion gives dense weight 0.3 but index 'docs' has no dense model"),
])
def test_a_bad_fusion_override_is_a_400_saying_what_is_wrong(fusion, reason):
    with pytest.raises(ProxyHTTPError) as caught:
        plan(IndexRule("docs"), {**MATCH, "ext": {"rerank": {"fusion": fusion}}})
    assert caught.value.status == 400 and caught.value.error_type == "illegal_argument_exception"
    assert reason in caught.value.reason
