"""Candidates files: the real pairs the scorer benchmark and the export parity check carry
to machines without OpenSearch."""

from __future__ import annotations

import pytest

from es_rerank.data.candidates import QueryCandidates, read_candidates, sample_from_qrels, write_candidates
from es_rerank.data.beir import read_qrels
from es_rerank.errors import DatasetError


def test_round_trip_keeps_texts_and_order(tmp_path):
    items = [QueryCandidates("1", "café au lait", ("Müller über 東京", ""), ("d1", "d2")),
             QueryCandidates("2", "q", ("only",), ("d3",))]
    for name in ("c.jsonl", "c.jsonl.gz"):
        assert read_candidates(write_candidates(tmp_path / name, items)) == items


def test_malformed_lines_say_where_and_what(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "q", "docs": ["a"]}\n{"query": "q", "docs": "not a list"}\n')
    with pytest.raises(DatasetError, match=r'bad.jsonl:2: expected \{"query": str, "docs": \[str, ...\]\}'):
        read_candidates(path)
    path.write_text("\n")
    with pytest.raises(DatasetError, match="holds no queries"):
        read_candidates(path)


def test_qrels_sample_holds_judged_documents_first(data_dir):
    items = sample_from_qrels(data_dir / "scifact", n_queries=3, k=10, seed=0)
    qrels = read_qrels(data_dir / "scifact", "test")
    assert len(items) == 3 and all(len(item.docs) == 10 for item in items)
    for item in items:
        judged = list(qrels[item.query_id])
        assert list(item.doc_ids[:len(judged)]) == judged[:10]
        assert len(set(item.doc_ids)) == 10
    assert sample_from_qrels(data_dir / "scifact", n_queries=3, k=10, seed=0) == items
