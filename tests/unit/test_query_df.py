"""lab.gpu.query_df: the share of a corpus's documents holding each query word, and the cut query."""

import pytest

from lab.gpu.query_df import cut_query, document_frequencies, main


def test_the_cut_keeps_the_words_that_tell_documents_apart_and_never_empties_a_query():
    corpus = ["information services in libraries", "information on drug use", "libraries and their users",
              "non-users of information services", "information retrieval"]
    total, counts = document_frequencies(corpus, {"information", "libraries", "non", "users", "drug"})
    share = {w: n / total for w, n in counts.items()}
    assert share == {"drug": 0.2, "information": 0.8, "libraries": 0.4, "non": 0.2, "users": 0.4}
    assert cut_query("INFORMATION on NON-USERS of LIBRARIES", share, 0.3) == "on NON of"
    assert cut_query("information libraries", share, 0.1) == "libraries"  # the rarest word stays
    assert cut_query("", share, 0.1) == ""


def test_no_candidates_is_refused_with_what_to_do(tmp_path, capsys):
    (tmp_path / "cands").mkdir()
    with pytest.raises(SystemExit, match="unpack the carry"):
        main(["--candidates", str(tmp_path / "cands"), "--data", str(tmp_path), "--out", str(tmp_path / "df.json")])
    assert not (tmp_path / "df.json").exists()
