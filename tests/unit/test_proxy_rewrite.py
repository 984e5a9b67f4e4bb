"""Response rewriting: window order, page cut, scores, stripping the proxy's own fields, provenance."""

import copy

import numpy as np
import pytest

from es_rerank.proxy.plan import RerankSpec
from es_rerank.proxy.rewrite import bm25_page, hit_text, reranked_page, window_texts


def response(n=6):
    return {"took": 4, "timed_out": False, "_shards": {"total": 1},
            "hits": {"total": {"value": 42, "relation": "eq"}, "max_score": 10.0,
                     "hits": [{"_index": "i", "_id": f"d{k}", "_score": 10.0 - k, "_source": {"text": f"t{k}"},
                               "highlight": {"text": [f"<em>t{k}</em>"]}} for k in range(n)]},
            "aggregations": {"years": {"buckets": [{"key": 2020, "doc_count": 3}]}}}


def spec(**kw):
    values = dict(query_text="q", fields=("text",), window=4, start=0, size=10, deadline_s=1.0)
    values.update(kw)
    return RerankSpec(**values)


def test_window_is_reordered_and_the_tail_keeps_bm25_order():
    scores = np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32)
    page = reranked_page(response(), spec(), scores)
    assert [h["_id"] for h in page["hits"]["hits"]] == ["d1", "d2", "d3", "d0", "d4", "d5"]
    assert [h["_score"] for h in page["hits"]["hits"]] == [0.4, 0.3, 0.2, 0.1, 6.0, 5.0]
    assert page["hits"]["max_score"] == 0.4


def test_everything_else_is_kept():
    original = response()
    page = reranked_page(original, spec(size=3), np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32))
    assert original == response()  # input not mutated
    for key in ("took", "timed_out", "_shards", "aggregations"):
        assert page[key] == original[key]
    assert page["hits"]["total"] == original["hits"]["total"]
    assert list(page["hits"]) == list(original["hits"])  # same key order
    assert page["hits"]["hits"][0]["highlight"] == {"text": ["<em>t1</em>"]}


def test_pages_concatenate_to_the_full_order_without_repeats():
    scores = np.array([0.5, 0.9, 0.1, 0.7], dtype=np.float32)
    full = [h["_id"] for h in reranked_page(response(), spec(size=6), scores)["hits"]["hits"]]
    pages = []
    for start in range(0, 6, 2):
        pages += [h["_id"] for h in reranked_page(response(), spec(start=start, size=2), scores)["hits"]["hits"]]
    assert pages == full and len(set(full)) == 6


def test_equal_scores_keep_bm25_order():
    page = reranked_page(response(), spec(), np.zeros(4, dtype=np.float32))
    assert [h["_id"] for h in page["hits"]["hits"]][:4] == ["d0", "d1", "d2", "d3"]


def test_scores_are_written_as_float32_decimals():
    page = reranked_page(response(), spec(size=1), np.array([0.1, 0, 0, 0], dtype=np.float32))
    assert page["hits"]["hits"][0]["_score"] == 0.1


def test_wrong_score_count_is_an_error():
    with pytest.raises(ValueError, match="expected 4 scores"):
        reranked_page(response(), spec(), np.zeros(3, dtype=np.float32))


def test_bm25_fallback_page():
    page = bm25_page(response(), spec(start=2, size=2))
    assert [(h["_id"], h["_score"]) for h in page["hits"]["hits"]] == [("d2", 8.0), ("d3", 7.0)]
    assert page["hits"]["max_score"] == 10.0


def test_fields_added_for_scoring_are_stripped():
    data = response(2)
    data["hits"]["hits"][0]["fields"] = {"text": ["t0"], "year": [2020]}
    data["hits"]["hits"][1]["fields"] = {"text": ["t1"]}
    page = reranked_page(data, spec(window=2, text_source="fields", added_fields=("text",)),
                         np.array([0.0, 1.0], dtype=np.float32))
    assert "fields" not in page["hits"]["hits"][0]
    assert page["hits"]["hits"][1]["fields"] == {"year": [2020]}


def test_provenance_reports_bm25_score_and_rank():
    page = reranked_page(response(), spec(provenance=True, size=5), np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32))
    first, last = page["hits"]["hits"][0], page["hits"]["hits"][-1]
    assert first["_rerank"] == {"bm25_score": 9.0, "bm25_rank": 2, "reranked": True}
    assert last["_rerank"] == {"bm25_score": 6.0, "bm25_rank": 5, "reranked": False}


def test_texts_missing_fields_and_lists():
    data = response(3)
    data["hits"]["hits"][0]["_source"] = {}
    data["hits"]["hits"][1]["_source"] = {"text": ["a", "b"], "title": "T"}
    assert window_texts(data, spec(fields=("title", "text"))) == ["", "T a b", "t2"]
    assert hit_text({"fields": {"text": ["x", "y"]}}, spec(text_source="fields")) == "x y"
    assert hit_text({"_id": "no source"}, spec()) == ""


def test_untouched_input_copy():
    data = response()
    snapshot = copy.deepcopy(data)
    bm25_page(data, spec(provenance=True))
    assert data == snapshot
