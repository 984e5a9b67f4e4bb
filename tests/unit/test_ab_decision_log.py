import json
import threading

import pytest

from es_rerank.proxy.online_ab.decision_log import JsonLinesWriter, decision_record, validate_decision
from es_rerank.errors import ConfigError


def record(**overrides):
    values = dict(query_id="q-1", client_hash="c0ffee", variant="interleave", hit_ids=["d1", "d2", "d3"],
                  teams=["rerank", "bm25", "rerank"], latency_ms=17.25, index="scifact", offset=10)
    values.update(overrides)
    return decision_record(**values)


def test_record_follows_ubi_names_and_is_complete():
    line = record()
    assert validate_decision(line) == []
    assert line["application"] == "es-rerank" and line["object_id_field"] == "_id"
    assert line["query_response_id"] == line["query_id"] == "q-1"
    assert line["client_id"] == "c0ffee"
    assert line["query_response_hit_ids"] == ["d1", "d2", "d3"]
    assert line["query_attributes"] == {"variant": "interleave", "teams": ["rerank", "bm25", "rerank"],
                                        "latency_ms": 17.25, "index": "scifact", "from": 10, "fallback": False}
    assert line["timestamp"].endswith("Z")


def test_query_text_only_when_enabled():
    assert "user_query" not in record()
    assert record(query_text="gene therapy")["user_query"] == "gene therapy"


def test_builder_rejects_inconsistent_input():
    with pytest.raises(ValueError, match="parallel"):
        record(teams=["rerank"])
    with pytest.raises(ValueError, match="variant"):
        record(variant="champion")


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("client_id"), "missing client_id"),
    (lambda r: r["query_attributes"].pop("latency_ms"), "missing query_attributes.latency_ms"),
    (lambda r: r["query_attributes"]["teams"].pop(), "parallel"),
    (lambda r: r.update(timestamp="yesterday"), "not ISO 8601"),
    (lambda r: r.update(timestamp="2025-01-01T00:00:00"), "no time zone"),
    (lambda r: r["query_attributes"].update(variant="x"), "variant must be one of"),
])
def test_validation_catches_incomplete_lines(mutate, message):
    line = record()
    mutate(line)
    assert any(message in problem for problem in validate_decision(line))


def test_writer_lines_from_many_threads_are_whole_and_parseable(tmp_path):
    path = tmp_path / "logs" / "decisions.jsonl"
    writer = JsonLinesWriter(path)

    def work(thread_no):
        for i in range(250):
            writer.append(record(query_id=f"{thread_no}-{i}", query_text="ünïcode \"quoted\"\nnewline"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000 == writer.written and writer.dropped == 0
    parsed = [json.loads(line) for line in lines]
    assert all(validate_decision(item) == [] for item in parsed)
    assert len({item["query_id"] for item in parsed}) == 2000
    assert parsed[0]["user_query"] == "ünïcode \"quoted\"\nnewline"


def test_writer_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"old": 1}\n')
    writer = JsonLinesWriter(path)
    writer.append({"new": 2})
    writer.flush()
    assert path.read_text().splitlines() == ['{"old": 1}', '{"new":2}']
    writer.close()


def test_a_full_queue_drops_instead_of_blocking(tmp_path):
    writer = JsonLinesWriter(tmp_path / "d.jsonl", max_pending=1)
    results = [writer.append({"i": i}) for i in range(2000)]
    writer.close()
    assert writer.written + writer.dropped == 2000 and results.count(False) == writer.dropped


def test_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot open log file"):
        JsonLinesWriter(blocker / "sub" / "d.jsonl")
