"""Groups and run files: reading, resuming after an interrupted write, and their errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from es_rerank.errors import DatasetError
from es_rerank.data.mining import Group, _resume_point, read_groups, read_run, write_run
from es_rerank.types import Hit


def write_groups(path: Path, groups: list[Group], tail: str = "") -> None:
    path.write_text("".join(g.to_json() + "\n" for g in groups) + tail)


def test_groups_round_trip_plain_and_gzipped(tmp_path):
    groups = [Group("1", ("a",), ("b", "c")), Group("2", ("d", "e"), ())]
    write_groups(tmp_path / "g.jsonl", groups)
    assert read_groups(tmp_path / "g.jsonl") == groups
    with gzip.open(tmp_path / "g.jsonl.gz", "wt") as handle:
        handle.write((tmp_path / "g.jsonl").read_text())
    assert read_groups(tmp_path / "g.jsonl.gz") == groups


def test_an_interrupted_last_line_is_cut_off_before_resuming(tmp_path):
    path = tmp_path / "g.jsonl"
    write_groups(path, [Group("1", ("a",), ("b",))], tail='{"qid":"2","pos":["x"],"ne')
    done, truncated = _resume_point(path)
    assert done == {"1"} and truncated
    assert path.read_text() == Group("1", ("a",), ("b",)).to_json() + "\n"
    assert _resume_point(path) == ({"1"}, False)


def test_a_bad_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"qid":"1","pos":["a"],"neg":[]}\nnot json\n{"qid":"2","pos":["a"],"neg":[]}\n')
    with pytest.raises(DatasetError, match="g.jsonl:2: malformed group line"):
        read_groups(path)


def test_runs_round_trip_in_rank_order(tmp_path):
    run = {"q1": [Hit("d1", 3.5), Hit("d2", 1.25)], "q2": [Hit("d3", 0.5)]}
    write_run(run, tmp_path / "run.tsv.gz")
    assert {q: [(h.doc_id, h.score) for h in hits] for q, hits in read_run(tmp_path / "run.tsv.gz").items()} == \
        {"q1": [("d1", 3.5), ("d2", 1.25)], "q2": [("d3", 0.5)]}


def test_a_malformed_run_line_names_its_line(tmp_path):
    (tmp_path / "run.tsv").write_text("q1 Q0 d1 1 2.0 bm25\nq1 Q0 d2 two 1.0 bm25\n")
    with pytest.raises(DatasetError, match="run.tsv:2"):
        read_run(tmp_path / "run.tsv")
