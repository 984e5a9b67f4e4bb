import io

import pytest

from es_rerank.data.trec import save_run, validate_run, write_run
from es_rerank.errors import ConfigError


def lines(run, tag="t"):
    out = io.StringIO()
    write_run(out, run, tag)
    return out.getvalue().splitlines()


def test_written_run_is_valid_and_keeps_served_scores():
    written = lines({"q1": [("d1", 9.5), ("d2", 9.5), ("d3", 1.0)], "q2": [("d9", 0.25)]})
    assert validate_run(written) == []
    assert written[0] == "q1 Q0 d1 1 9.5 t"
    assert [line.split()[3] for line in written] == ["1", "2", "3", "1"]


def test_scores_out_of_order_are_replaced_by_ranks():
    written = lines({"q": [("a", 1.0), ("b", 5.0), ("c", 0.5)]})
    assert [line.split()[4] for line in written] == ["3.0", "2.0", "1.0"]
    assert validate_run(written) == []


def test_ids_with_whitespace_cannot_be_written():
    with pytest.raises(ConfigError, match="whitespace"):
        lines({"q": [("bad id", 1.0)]})
    with pytest.raises(ConfigError, match="run tag"):
        lines({"q": [("a", 1.0)]}, tag="two words")


@pytest.mark.parametrize("bad, message", [
    (["q Q0 a 1 2.0"], "expected 6 columns"),
    (["q X a 1 2.0 t"], "must be Q0"),
    (["q Q0 a 2 2.0 t"], "rank 2 follows rank 0"),
    (["q Q0 a 1 1.0 t", "q Q0 b 2 2.0 t"], "above the previous"),
    (["q Q0 a 1 2.0 t", "q Q0 a 2 1.0 t"], "repeated"),
    (["q Q0 a 1 2.0 t", "p Q0 a 1 1.0 u"], "more than one run tag"),
    (["q Q0 a one 2.0 t"], "not a number"),
])
def test_validation_names_each_problem(bad, message):
    problems = validate_run(bad)
    assert problems and message in problems[0]


def test_save_run_creates_folders(tmp_path):
    path = save_run(tmp_path / "runs" / "bm25.trec", {"q": [("a", 1.0)]}, "bm25")
    assert path.read_text() == "q Q0 a 1 1.0 bm25\n"
