import json

import pytest
from scipy.stats import binomtest, fisher_exact

from es_rerank.proxy.online_ab.decision_log import decision_record
from es_rerank.proxy.online_ab.report import read_logs, render_online_table, summarise
from tests.conftest import run_cli


def search(query_id, variant, hits, offset=0, teams=None):
    return decision_record(query_id=query_id, client_hash="h", variant=variant, hit_ids=hits,
                           teams=teams or [variant] * len(hits), latency_ms=10.0, index="scifact", offset=offset)


def click(query_id, object_id, ordinal=None, action="click"):
    attributes = {"object": {"object_id": object_id}}
    if ordinal:
        attributes["position"] = {"ordinal": ordinal}
    return {"action_name": action, "query_id": query_id, "timestamp": "2025-01-01T00:00:00.000Z",
            "event_attributes": attributes}


TEAMS = ["rerank", "bm25", "rerank", "bm25"]
DECISIONS = [
    search("b1", "bm25", ["a", "b", "c"]), search("b2", "bm25", ["a"]), search("b3", "bm25", ["a", "b"]),
    search("b4", "bm25", ["k", "l"], offset=10),
    search("r1", "rerank", ["a", "b"]), search("r2", "rerank", ["a", "b", "c"]), search("r3", "rerank", ["a"]),
    search("i1", "interleave", list("wxyz"), teams=TEAMS), search("i2", "interleave", list("wxyz"), teams=TEAMS),
    search("i3", "interleave", list("wxyz"), teams=TEAMS), search("i4", "interleave", list("wxyz"), teams=TEAMS),
    search("i5", "interleave", list("wxyz"), teams=TEAMS),
]
EVENTS = [
    click("b1", "b"), click("b1", "b"), click("b3", "a"), click("b4", "k"),
    click("r1", "a"), click("r2", "c"), click("r2", "a"),
    click("i1", "w"), click("i2", "x"), click("i3", "w"), click("i3", "x"), click("i5", "gone", ordinal=3),
    click("nope", "a"), click("b2", "not-shown"), click("r3", "a", action="impression"),
]


@pytest.fixture
def logs(tmp_path):
    decisions, events = tmp_path / "decisions.jsonl", tmp_path / "events.jsonl"
    decisions.write_text("".join(json.dumps(d) + "\n" for d in DECISIONS)
                         + "{broken\n" + json.dumps({"query_response_hit_ids": []}) + "\n")
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return decisions, events


def test_summary_per_variant(logs):
    contents = read_logs(list(logs))
    assert len(contents.bad_lines) == 2 and "not JSON" in contents.bad_lines[0]
    summary = summarise(contents)
    assert summary["searches"] == 12 and summary["unmatched_clicks"] == 2 and summary["bad_lines"] == 2
    bm25, rerank = summary["variants"]["bm25"], summary["variants"]["rerank"]
    assert (bm25["searches"], bm25["clicked_searches"], bm25["clicks"]) == (4, 3, 3)
    assert bm25["ctr"] == 0.75
    assert bm25["mrr"] == pytest.approx((1 / 2 + 0 + 1 + 1 / 11) / 4)
    assert (rerank["clicked_searches"], rerank["ctr"]) == (2, pytest.approx(2 / 3))
    assert rerank["mrr"] == pytest.approx(2 / 3)
    wilson = binomtest(3, 4).proportion_ci(method="wilson")
    assert bm25["ctr_ci"] == pytest.approx([wilson.low, wilson.high])
    assert bm25["mrr_ci"][0] <= bm25["mrr"] <= bm25["mrr_ci"][1]
    split = summary["split"]
    assert split["ctr_delta"] == pytest.approx(2 / 3 - 3 / 4)
    assert split["p_ctr_fisher"] == pytest.approx(fisher_exact([[2, 1], [3, 1]]).pvalue)


def test_interleaving_outcomes_and_binomial_test(logs):
    inter = summarise(read_logs(list(logs)))["interleaving"]
    # i1 click w (rerank) win; i2 click x (bm25) loss; i3 both tie; i4 none; i5 ordinal 3 (rerank) win
    assert (inter["searches"], inter["with_clicks"]) == (5, 4)
    assert (inter["wins"], inter["ties"], inter["losses"]) == (2, 1, 1)
    assert inter["p_binomial"] == pytest.approx(binomtest(2, 3, 0.5).pvalue)
    assert inter["preference"] == pytest.approx((2 + 0.5) / 4 - 0.5)


def test_table_and_json_from_the_command_line(logs):
    decisions, events = logs
    table = run_cli("ab", "report", str(decisions), "--events", str(events))
    assert table.returncode == 0, table.stderr
    assert "12 searches" in table.stdout and "rerank 2 wins, 1 ties, 1 losses" in table.stdout
    assert "bm25" in table.stdout and "0.7500" in table.stdout
    assert "skipped decisions.jsonl:13: not JSON" in table.stderr
    as_json = run_cli("ab", "report", str(decisions), "--events", str(events), "--json")
    assert json.loads(as_json.stdout)["variants"]["bm25"]["clicked_searches"] == 3


def test_interleaved_searches_served_as_bm25_fallbacks_are_left_out():
    from es_rerank.proxy.online_ab.report import LogContents

    fallback = decision_record(query_id="f1", client_hash="h", variant="interleave", hit_ids=list("wxyz"),
                               teams=["bm25"] * 4, latency_ms=3.0, index="i", fallback=True)
    inter = summarise(LogContents.from_records([fallback, click("f1", "w")]))["interleaving"]
    assert (inter["searches"], inter["fallbacks_left_out"], inter["losses"]) == (0, 1, 0)


def test_empty_log_says_so(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert "no searches in the log" in render_online_table(summarise(read_logs([path])))
