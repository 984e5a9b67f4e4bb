import gzip
import json

import pytest

from es_rerank.data.beir import (BadLine, Document, check_qrels, iter_corpus, iter_corpus_docs, read_qrels,
                                read_queries, relevant)
from es_rerank.errors import DatasetError


def write_corpus(path, lines, gz=False):
    data = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write(data)
    else:
        (path / "corpus.jsonl").write_text(data, encoding="utf-8")


DOC1 = json.dumps({"_id": "d1", "title": "Tïtle", "text": "Body one"})
DOC2 = json.dumps({"_id": 2, "title": None, "text": "Body two"})


@pytest.mark.parametrize("gz", [False, True])
def test_corpus_reads_plain_and_gzip(tmp_path, gz):
    write_corpus(tmp_path, [DOC1, "", DOC2], gz=gz)
    docs = dict(iter_corpus_docs(tmp_path))
    assert docs == {"d1": Document("d1", "Tïtle", "Body one"), "2": Document("2", "", "Body two")}


@pytest.mark.parametrize("bad, reason", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"title": "no id"}', '"_id"'),
    ('{"_id": "x", "text": 5}', "must be strings"),
])
def test_malformed_corpus_line_reports_its_number(tmp_path, bad, reason):
    write_corpus(tmp_path, [DOC1, DOC2, bad])
    items = list(iter_corpus(tmp_path))
    assert isinstance(items[2], BadLine)
    assert items[2].line_no == 3 and reason in items[2].reason
    with pytest.raises(DatasetError, match=r"corpus.jsonl:3"):
        list(iter_corpus_docs(tmp_path))


def test_truncated_gzip_is_a_clear_error(tmp_path):
    write_corpus(tmp_path, [DOC1] * 2000, gz=True)
    data = (tmp_path / "corpus.jsonl.gz").read_bytes()
    (tmp_path / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read"):
        list(iter_corpus(tmp_path))


def test_missing_corpus_names_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="no corpus.jsonl or corpus.jsonl.gz"):
        list(iter_corpus(tmp_path))


def test_queries_and_malformed_query(tmp_path):
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what"}\n{"_id": "q2"}\n')
    with pytest.raises(DatasetError, match="queries.jsonl:2"):
        read_queries(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what"}\n')
    assert read_queries(tmp_path) == {"q1": "what"}


def test_qrels_header_crlf_and_grades(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t0\r\n")
    qrels = read_qrels(tmp_path, "test")
    assert qrels == {"q1": {"d1": 1, "d2": 0}}
    assert relevant(qrels, "q1") == {"d1"}


def test_qrels_bad_line_and_missing_split(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td1\n")
    with pytest.raises(DatasetError, match="test.tsv:1: expected 3"):
        read_qrels(tmp_path, "test")
    with pytest.raises(DatasetError, match="available splits: test"):
        read_qrels(tmp_path, "dev")


def test_check_qrels_reports_unknown_ids():
    report = check_qrels({"q1": {"d1": 1, "dX": 1}, "qX": {"d1": 1}}, {"q1"}, {"d1"})
    assert report.unknown_queries == {"qX"} and report.unknown_docs == {"dX"}
    assert not report.ok and "unknown query" in report.describe()


def test_real_scifact_counts(data_dir):
    docs = dict(iter_corpus_docs(data_dir / "scifact"))
    queries = read_queries(data_dir / "scifact")
    test = read_qrels(data_dir / "scifact", "test")
    assert len(docs) == 5183 and len(queries) == 1109 and len(test) == 300
    assert check_qrels(test, queries, set(docs)).ok
