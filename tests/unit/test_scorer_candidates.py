"""The one candidates file: the real pairs that fusion fitting, the scorer benchmark and the
export parity check carry to machines without OpenSearch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from es_rerank.data.beir import read_qrels
from es_rerank.data.candidates import CandidateSet, QueryCandidates, read_candidates, sample_from_qrels, write_candidates
from es_rerank.errors import DatasetError


def test_round_trip_keeps_texts_scores_and_order(tmp_path):
    cands = CandidateSet({"models": {}}, {"d1": "Müller über 東京", "d2": "", "d3": "only"},
                         [QueryCandidates("1", "café au lait", ["d1", "d2"], {"bm25": np.array([2.5, 1.0])}),
                          QueryCandidates("2", "q", ["d3"], {"bm25": np.array([0.1])})])
    for name in ("c.jsonl", "c.jsonl.gz"):
        write_candidates(cands, tmp_path / name)
        back = read_candidates(tmp_path / name)
        assert back.windows() == cands.windows()
        assert [q.scores["bm25"].tolist() for q in back.queries] == [[2.5, 1.0], [0.1]]


def test_malformed_lines_say_where_and_what(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = CandidateSet({}, {"d": "t"}, [QueryCandidates("1", "q", ["d"])])
    write_candidates(good, path)
    path.write_text(path.read_text() + '{"type": "query", "id": "2", "text": "q", "doc_ids": ["d"], '
                    '"scores": {"bm25": [1.0, 2.0]}}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:4: bm25 scores must be 1 finite numbers"):
        read_candidates(path)
    path.write_text("\n")
    with pytest.raises(DatasetError, match="is empty"):
        read_candidates(path)


def test_an_older_inline_file_is_named_and_not_misread(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"query_id": "1", "query": "q", "doc_ids": ["d"], "docs": ["a"]}) + "\n")
    with pytest.raises(DatasetError, match="older candidates file") as caught:
        read_candidates(path)
    assert "write it again" in str(caught.value)


def test_qrels_sample_holds_judged_documents_first(data_dir):
    items = sample_from_qrels(data_dir / "scifact", n_queries=3, k=10, seed=0).windows()
    qrels = read_qrels(data_dir / "scifact", "test")
    assert len(items) == 3 and all(len(item.docs) == 10 for item in items)
    for item in items:
        judged = list(qrels[item.query_id])
        assert list(item.doc_ids[:len(judged)]) == judged[:10]
        assert len(set(item.doc_ids)) == 10
    assert sample_from_qrels(data_dir / "scifact", n_queries=3, k=10, seed=0).windows() == items
