"""Choosing fusion weights with the one-standard-error rule: the most cautious setting the dev split
cannot tell from the best, and what `fit-fusion --select one-se` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from es_rerank.errors import ConfigError
from es_rerank.scoring.fusion import FusionWeights, load_weights
from es_rerank.data.candidates import CandidateSet, QueryCandidates, write_candidates
from es_rerank.evaluation.fusion_fit import (ce_share, curve_json, fit_weights, input_spreads, mean_ndcg10,
                                             per_query_ndcg10, ranking_run)
from tests.conftest import run_cli


def noisy(queries: int = 60, seed: int = 3) -> tuple[CandidateSet, dict]:
    """Relevance follows a hidden score; ce sees it with little noise, bm25 and dense with more."""
    rng = np.random.default_rng(seed)
    result, qrels, docs = [], {}, {}
    for q in range(queries):
        ids = [f"d{q}-{i}" for i in range(20)]
        hidden = rng.normal(0.0, 1.0, 20)
        scores = {"ce": hidden + rng.normal(0.0, 0.6, 20), "bm25": 5 + 2 * (hidden + rng.normal(0.0, 1.2, 20)),
                  "dense": 0.4 + 0.1 * (hidden + rng.normal(0.0, 1.2, 20))}
        top = np.argsort(-hidden)[:3]
        qrels[str(q)] = {ids[top[0]]: 2, ids[top[1]]: 1, ids[top[2]]: 1}
        result.append(QueryCandidates(str(q), f"query {q}", ids, scores))
        docs.update({doc_id: f"text of {doc_id}" for doc_id in ids})
    meta = {"dataset": "synthetic", "split": "train", "depth": 20, "fields": ["title", "text"], "models": {}}
    return CandidateSet(meta, docs, result), qrels


def test_one_se_takes_the_least_cross_encoder_among_settings_within_one_standard_error():
    cands, qrels = noisy()
    best = fit_weights(cands, qrels, None, ("zscore", "minmax"), 0.1)
    robust = fit_weights(cands, qrels, None, ("zscore", "minmax"), 0.1, select="one-se")
    assert best.best is best.top and robust.top == best.top  # same curve, same highest setting
    chosen, top = robust.best, robust.top
    assert chosen.ce_share < top.ce_share  # it really leaned less on the cross-encoder
    assert chosen.ndcg10 >= top.ndcg10 - chosen.stderr  # and the dev split cannot tell it from the best
    eligible = [p for p in robust.curve if p.ndcg10 >= top.ndcg10 - p.stderr]
    assert chosen.ce_share == pytest.approx(min(p.ce_share for p in eligible))
    assert top.stderr == 0.0 and all(p.stderr >= 0 for p in robust.curve)


def test_per_query_values_average_to_the_aggregate_and_the_standard_error_is_paired():
    cands, qrels = noisy(queries=30)
    weights = FusionWeights(ce=0.5, bm25=0.5)
    values = per_query_ndcg10(qrels, ranking_run(cands, weights))
    assert values.shape == (30,)
    assert values.mean() == pytest.approx(mean_ndcg10(qrels, ranking_run(cands, weights)))
    result = fit_weights(cands, qrels, ("ce", "bm25"), ("zscore",), 0.5, select="one-se")
    top_values = per_query_ndcg10(qrels, ranking_run(cands, result.top.weights))
    for point in result.curve:
        diff = per_query_ndcg10(qrels, ranking_run(cands, point.weights)) - top_values
        assert point.stderr == pytest.approx(diff.std(ddof=1) / np.sqrt(diff.size))


def test_the_cross_encoder_share_counts_the_spread_each_norm_leaves():
    cands, _ = noisy(queries=10)
    assert input_spreads(cands, ("ce", "bm25"), "zscore") == pytest.approx({"ce": 1.0, "bm25": 1.0})
    minmax = input_spreads(cands, ("ce", "bm25", "dense"), "minmax")
    assert all(0 < value < 0.5 for value in minmax.values())
    weights = FusionWeights(ce=0.5, bm25=0.5, norm="minmax")
    assert ce_share(weights, minmax) == pytest.approx(minmax["ce"] / (minmax["ce"] + minmax["bm25"]))
    assert ce_share(FusionWeights(ce=0.0, bm25=1.0), {"ce": 1.0, "bm25": 1.0}) == 0.0


def test_without_a_cross_encoder_both_rules_agree_and_a_bad_rule_is_refused():
    cands, qrels = noisy(queries=20)
    assert fit_weights(cands, qrels, ("bm25", "dense"), ("zscore",), 0.1, select="one-se").best.weights == \
        fit_weights(cands, qrels, ("bm25", "dense"), ("zscore",), 0.1).best.weights
    with pytest.raises(ConfigError, match="selection must be one of best, one-se, got 'max'"):
        fit_weights(cands, qrels, None, ("zscore",), 0.1, select="max")


def test_fit_fusion_one_se_writes_the_chosen_and_the_highest_setting(tmp_path):
    cands, qrels = noisy()
    scored = tmp_path / "dev.jsonl.gz"
    write_candidates(cands, scored)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, judged in qrels.items() for d, g in judged.items()))
    out, curve = tmp_path / "w.yaml", tmp_path / "c.json"
    result = run_cli("fit-fusion", str(scored), "--qrels", str(tmp_path), "--step", "0.1", "--select", "one-se",
                     "--out", str(out), "--curve", str(curve), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "chosen by one-se" in result.stdout
    recipe = yaml.safe_load(out.read_text())
    assert recipe["search"]["selection"].startswith("smallest cross-encoder share")
    assert recipe["dev_ndcg10"]["highest"] >= recipe["dev_ndcg10"]["fused"]
    assert "--select one-se" in recipe["reproduce"][-1]
    data = json.loads(curve.read_text())
    assert data["selection"] == "one-se" and data["best"]["weights"] == load_weights(out).as_dict()
    assert {"stderr_vs_highest", "ce_share"} <= data["curve"][0].keys()
    assert curve_json(fit_weights(cands, qrels, None, ("zscore",), 0.5)).keys() == {
        "metric", "queries", "inputs", "norms", "step", "baselines", "best", "curve"}  # best: unchanged format
