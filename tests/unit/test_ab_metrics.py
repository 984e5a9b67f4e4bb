import math

import pytest

from es_rerank.evaluation.metrics import MEASURES, per_query_metrics, rank_scores


QRELS = {"q1": {"a": 2, "b": 0, "c": 1}, "q2": {"x": 1}, "q3": {"y": 1, "z": 1}}


def dcg(gains):
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def test_values_match_hand_computed_definitions():
    run = {"q1": ["b", "c", "a"], "q2": ["m", "n", "x"], "q3": ["y"]}
    values = per_query_metrics(QRELS, run)
    assert values["nDCG@10"]["q1"] == pytest.approx(dcg([0, 1, 2]) / dcg([2, 1]))
    assert values["MRR@10"] == {"q1": 0.5, "q2": pytest.approx(1 / 3), "q3": 1.0}
    assert values["Recall@100"] == {"q1": 1.0, "q2": 1.0, "q3": 0.5}
    # AP: precision at each relevant hit, divided by the number of relevant documents
    assert values["MAP"]["q1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert values["MAP"]["q3"] == pytest.approx(1 / 2)


def test_queries_without_hits_score_zero_and_unjudged_run_queries_are_ignored():
    values = per_query_metrics(QRELS, {"q1": [], "other": ["a"]})
    for name in MEASURES:
        assert values[name] == {"q1": 0.0, "q2": 0.0, "q3": 0.0}


def test_served_order_is_evaluated_even_when_ids_would_sort_differently():
    # Equal raw scores would let an evaluator re-sort by id; ranks fix the served order.
    assert per_query_metrics({"q": {"a": 1}}, {"q": ["z", "a"]})["MRR@10"]["q"] == 0.5
    assert per_query_metrics({"q": {"z": 1}}, {"q": ["z", "a"]})["MRR@10"]["q"] == 1.0


def test_cutoffs_apply():
    run = {"q": [f"n{i}" for i in range(10)] + ["rel"]}
    values = per_query_metrics({"q": {"rel": 1}}, run)
    assert values["nDCG@10"]["q"] == 0.0 and values["MRR@10"]["q"] == 0.0
    assert values["Recall@100"]["q"] == 1.0


def test_rank_scores_strictly_decrease():
    scores = list(rank_scores(["c", "a", "b"]).values())
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3


def test_unknown_metric_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="expected some of"):
        per_query_metrics(QRELS, {}, ["P@5"])
