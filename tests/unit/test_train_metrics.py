"""The torch-free nDCG@10 / MRR@10 used on the GPU machine agree with ir_measures (trec_eval)."""

from __future__ import annotations

import random

import ir_measures
import pytest

from es_rerank.evaluation.ir_metrics import mrr_at_k, ndcg_at_k, summary


def reference(qrels, rankings, measure):
    run = {qid: {doc: float(len(docs) - i) for i, doc in enumerate(docs)} for qid, docs in rankings.items()}
    values = {qid: 0.0 for qid in qrels}
    for m in ir_measures.iter_calc([ir_measures.parse_measure(measure)], qrels, run):
        values[m.query_id] = m.value
    return values


def random_case(rng: random.Random):
    docs = [f"d{i}" for i in range(30)]
    qrels, rankings = {}, {}
    for q in range(40):
        judged = rng.sample(docs, rng.randint(1, 8))
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        if rng.random() < 0.9:  # some judged queries get no ranking at all
            rankings[f"q{q}"] = rng.sample(docs, rng.randint(0, 25))
    return qrels, rankings


@pytest.mark.parametrize("seed", range(5))
def test_per_query_values_equal_ir_measures(seed):
    qrels, rankings = random_case(random.Random(seed))
    mine_ndcg, mine_mrr = ndcg_at_k(rankings, qrels, 10), mrr_at_k(rankings, qrels, 10)
    ref_ndcg, ref_mrr = reference(qrels, rankings, "nDCG@10"), reference(qrels, rankings, "RR@10")
    assert mine_ndcg == pytest.approx(ref_ndcg, abs=1e-9)
    assert mine_mrr == pytest.approx(ref_mrr, abs=1e-9)


def test_summary_means_over_every_judged_query():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    assert summary({"a": ["x"]}, qrels) == {"ndcg@10": 0.5, "mrr@10": 0.5, "queries": 2}


def test_k_is_checked():
    with pytest.raises(ValueError, match="positive int"):
        ndcg_at_k({}, {}, 0)
