"""The online A/B inside the proxy, end to end against the real node (SciFact, read only).

The proxy scores with the term-overlap scorer of tests/proxy_support.py, a real deterministic
relevance model, so each arm's order is recomputed here from a direct OpenSearch search.
Covers: assignment per key (header, then client address), the variant header, interleaved
pages and the teams in the log, one complete log line per search, click events, and
`es-rerank ab report` on the logs the proxy wrote.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from es_rerank.proxy.online_ab.assignment import OnlineAbConfig, assign, pseudonym
from es_rerank.proxy.online_ab.decision_log import validate_decision
from es_rerank.evaluation.protocol import EVENTS_PATH, QUERY_ID_HEADER, VARIANT_HEADER
from es_rerank.proxy.settings import IndexRule
from es_rerank.data.beir import read_qrels, read_queries
from es_rerank.errors import ScoringError
from es_rerank.scoring.rerank import order_by_scores
from es_rerank.types import Hit
from tests.conftest import run_cli
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for

WINDOW = 30
FIELDS = ("title", "text")
EXPERIMENT = "online-ab-test"
SECRET = "online-ab-test-secret"
KEY_HEADER = "X-Session"


@pytest.fixture(scope="module")
def queries(data_dir) -> list[str]:
    """A dozen judged SciFact test queries."""
    texts = read_queries(data_dir / "scifact")
    judged = read_qrels(data_dir / "scifact", "test")
    return [texts[qid] for qid in sorted(judged, key=str) if qid in texts][:12]


def search_body(text: str, start: int = 0, size: int = 10, **extra) -> dict:
    return {"query": {"multi_match": {"query": text, "fields": list(FIELDS)}}, "from": start, "size": size, **extra}


def search(base: str, index: str, text: str, start: int = 0, size: int = 10, headers=None, **extra):
    return requests.post(f"{base}/{index}/_search", json=search_body(text, start, size, **extra),
                         headers=headers or {}, timeout=60)


def bm25_window(opensearch_url: str, index: str, text: str, size: int = WINDOW) -> list[dict]:
    """BM25's hits straight from OpenSearch."""
    response = search(opensearch_url, index, text, 0, size)
    assert response.status_code == 200, response.text
    return response.json()["hits"]["hits"]


def model_order(opensearch_url: str, index: str, text: str) -> list[str]:
    """The BM25 window ordered by the scorer (ties keep BM25 order): the rerank arm's list."""
    hits = [Hit(h["_id"], h["_score"], h["_source"]) for h in bm25_window(opensearch_url, index, text)]
    scores = TermOverlapScorer().score_pairs([text] * len(hits), [hit.text(FIELDS) for hit in hits])
    return [hit.doc_id for hit, _ in order_by_scores(hits, scores)]


def ids(response) -> list[str]:
    return [hit["_id"] for hit in response.json()["hits"]["hits"]]


def read_lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines log, each required to be one complete JSON object."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last line was cut short"
    return [json.loads(line) for line in text.splitlines()]


@contextmanager
def ab_proxy(opensearch_url: str, index: str, config: OnlineAbConfig, scorer=None):
    """An in-process proxy running `config`; the logs are flushed and closed when the block ends."""
    settings = settings_for(opensearch_url, IndexRule(index, fields=FIELDS, window=WINDOW, deadline_ms=30000),
                            online_ab=config)
    with running_proxy(settings, scorer or TermOverlapScorer()) as proxy:
        yield proxy


def ab_config(tmp_path: Path, **values) -> OnlineAbConfig:
    base = OnlineAbConfig(split=0.5, key_header=KEY_HEADER, experiment=EXPERIMENT,
                          log_path=tmp_path / "decisions.jsonl", events_path=tmp_path / "events.jsonl", secret=SECRET)
    return replace(base, **values)


def test_split_serves_each_key_one_arm_from_the_header_else_the_client_address(
        opensearch_url, scifact_index, queries, tmp_path):
    users = [f"user-{i}" for i in range(10)]
    arm = {user: assign(user, 0.5, EXPERIMENT) for user in users}
    assert set(arm.values()) == {"bm25", "rerank"}  # these keys cover both arms
    served = []
    with ab_proxy(opensearch_url, scifact_index, ab_config(tmp_path)) as proxy:
        for i, user in enumerate(users):
            for text in (queries[i], queries[i + 1]):   # one user, two searches: the same arm
                response = search(proxy.url, scifact_index, text, headers={KEY_HEADER: user})
                assert response.status_code == 200, response.text
                assert response.headers[VARIANT_HEADER] == arm[user]
                if arm[user] == "bm25":
                    assert response.headers["X-Rerank"] == "bm25"
                    assert ids(response) == [h["_id"] for h in bm25_window(opensearch_url, scifact_index, text, 10)]
                else:
                    assert response.headers["X-Rerank"] == "reranked"
                    assert ids(response) == model_order(opensearch_url, scifact_index, text)[:10]
                served.append((user, response.headers[QUERY_ID_HEADER], ids(response)))
        # Without the header, or with a blank one, the client address is the key.
        by_address = assign("127.0.0.1", 0.5, EXPERIMENT)
        for headers in ({}, {KEY_HEADER: ""}):
            response = search(proxy.url, scifact_index, queries[0], headers=headers)
            assert response.headers[VARIANT_HEADER] == by_address
            served.append(("127.0.0.1", response.headers[QUERY_ID_HEADER], ids(response)))
    lines = {line["query_id"]: line for line in read_lines(tmp_path / "decisions.jsonl")}
    assert len(lines) == len(served)
    for key, query_id, hit_ids in served:
        line = lines[query_id]
        variant = assign(key, 0.5, EXPERIMENT)
        assert line["client_id"] == pseudonym(key, SECRET) and key not in json.dumps(line)
        assert line["query_attributes"]["variant"] == variant
        assert line["query_response_hit_ids"] == hit_ids
        assert line["query_attributes"]["teams"] == [variant] * len(hit_ids)


def test_the_arm_of_a_key_survives_a_restart(opensearch_url, scifact_index, queries, tmp_path):
    users = [f"restart-{i}" for i in range(8)]
    arms = []
    for run in range(2):   # two proxy processes, as two replicas or a restart
        with ab_proxy(opensearch_url, scifact_index, ab_config(tmp_path / str(run))) as proxy:
            arms.append([search(proxy.url, scifact_index, queries[0], headers={KEY_HEADER: u}).headers[VARIANT_HEADER]
                         for u in users])
    assert arms[0] == arms[1] and len(set(arms[0])) == 2


def test_searches_outside_the_experiment_get_no_variant_and_no_log_line(
        opensearch_url, scifact_index, queries, tmp_path):
    with ab_proxy(opensearch_url, scifact_index, ab_config(tmp_path, split=1.0)) as proxy:
        outside = [
            search(proxy.url, scifact_index, queries[0], headers={"X-Rerank": "off", KEY_HEADER: "u"}),
            search(proxy.url, scifact_index, queries[0], ext={"rerank": {"enabled": False}}),
            search(proxy.url, scifact_index, queries[0], sort=[{"_id": "asc"}]),
            requests.get(f"{proxy.url}/{scifact_index}/_count", timeout=30),
        ]
        inside = search(proxy.url, scifact_index, queries[0], headers={KEY_HEADER: "u"})
    for response in outside:
        assert response.status_code == 200, response.text
        assert VARIANT_HEADER not in response.headers and QUERY_ID_HEADER not in response.headers
    assert inside.headers[VARIANT_HEADER] == "rerank"
    assert [line["query_id"] for line in read_lines(tmp_path / "decisions.jsonl")] == [inside.headers[QUERY_ID_HEADER]]


def test_interleaved_pages_neither_repeat_nor_skip_and_the_log_names_each_hits_team(
        opensearch_url, scifact_index, queries, tmp_path):
    text = queries[2]
    config = ab_config(tmp_path, split=1.0, mode="interleave")
    with ab_proxy(opensearch_url, scifact_index, config) as proxy:
        pages = [search(proxy.url, scifact_index, text, start, 10, headers={KEY_HEADER: "reader-7"})
                 for start in range(0, WINDOW, 10)]
        again = search(proxy.url, scifact_index, text, 0, 10, headers={KEY_HEADER: "reader-7"})
        across = search(proxy.url, scifact_index, text, WINDOW - 5, 10, headers={KEY_HEADER: "reader-7"})
        shown = search(proxy.url, scifact_index, text, 0, 3, headers={KEY_HEADER: "reader-7"},
                       ext={"rerank": {"provenance": True}})
    for response in pages + [again, across, shown]:
        assert response.status_code == 200, response.text
        assert response.headers[VARIANT_HEADER] == "interleave" and response.headers["X-Rerank"] == "interleaved"
    merged = [doc for page in pages for doc in ids(page)]
    bm25 = [h["_id"] for h in bm25_window(opensearch_url, scifact_index, text, WINDOW + 5)]
    model = model_order(opensearch_url, scifact_index, text)
    assert len(merged) == len(set(merged)) == WINDOW and set(merged) == set(bm25[:WINDOW])
    assert merged != model and merged != bm25[:WINDOW]   # really a mix of both
    assert ids(again) == merged[:10]                      # the same user gets the same merge every time
    scores = [hit["_score"] for page in pages for hit in page.json()["hits"]["hits"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == WINDOW
    assert {page.json()["hits"]["max_score"] for page in pages} == {scores[0]}

    lines = {line["query_id"]: line for line in read_lines(tmp_path / "decisions.jsonl")}
    teams = []
    for page in pages:
        line = lines[page.headers[QUERY_ID_HEADER]]
        assert line["query_response_hit_ids"] == ids(page)
        teams += line["query_attributes"]["teams"]
    # Team draft, checked pick by pick: a team picks its best hit not yet placed, and the team
    # with fewer picks goes next.
    placed, picks = set(), {"rerank": 0, "bm25": 0}
    for doc, team in zip(merged, teams):
        ranking = model if team == "rerank" else bm25[:WINDOW]
        assert doc == next(d for d in ranking if d not in placed), (doc, team)
        assert picks[team] <= picks["bm25" if team == "rerank" else "rerank"]
        placed.add(doc)
        picks[team] += 1
    assert min(picks.values()) >= WINDOW // 2 - 1
    # A page across the window's end: the merge, then BM25's next hits, which both teams share.
    line = lines[across.headers[QUERY_ID_HEADER]]
    assert ids(across) == merged[-5:] + bm25[WINDOW:WINDOW + 5]
    assert line["query_attributes"]["teams"] == teams[-5:] + ["shared"] * 5
    assert [hit["_rerank"]["team"] for hit in shown.json()["hits"]["hits"]] == teams[:3]


@pytest.mark.parametrize("log_text", [False, True], ids=["without-query-text", "with-query-text"])
def test_each_search_appends_one_complete_line(opensearch_url, scifact_index, queries, tmp_path, log_text):
    config = ab_config(tmp_path, split=0.5, log_query_text=log_text)
    searches = [(f"user-{i % 9}", queries[i % len(queries)], 10 * (i % 3)) for i in range(36)]

    def one(args):
        user, text, start = args
        response = search(proxy.url, scifact_index, text, start, 10, headers={KEY_HEADER: user})
        return response.headers[QUERY_ID_HEADER], text, start, ids(response)

    with ab_proxy(opensearch_url, scifact_index, config) as proxy:
        with ThreadPoolExecutor(8) as pool:   # concurrent searches must not tear lines apart
            served = list(pool.map(one, searches))
    lines = read_lines(tmp_path / "decisions.jsonl")
    assert len(lines) == len(searches)
    by_id = {line["query_id"]: line for line in lines}
    for query_id, text, start, hit_ids in served:
        line = by_id[query_id]
        assert validate_decision(line) == []
        attributes = line["query_attributes"]
        assert attributes["index"] == scifact_index and attributes["from"] == start
        assert attributes["latency_ms"] > 0 and attributes["fallback"] is False
        assert line["query_response_hit_ids"] == hit_ids
        assert line["timestamp"].endswith("Z") and line["application"] == "es-rerank"
        if log_text:
            assert line["user_query"] == text
        else:
            assert "user_query" not in line and text not in json.dumps(line)


class FailsAfterWarmUp(TermOverlapScorer):
    """Fault injection: a model that passes its warm-up call and then fails on every search."""

    def score_pairs(self, queries, documents):
        if self.calls:
            raise ScoringError("injected failure after warm-up")
        return super().score_pairs(queries, documents)


def test_a_model_failure_serves_bm25_and_logs_the_search_as_a_fallback(
        opensearch_url, scifact_index, queries, tmp_path):
    with ab_proxy(opensearch_url, scifact_index, ab_config(tmp_path, split=1.0, mode="interleave"),
                  FailsAfterWarmUp()) as proxy:
        response = search(proxy.url, scifact_index, queries[0], headers={KEY_HEADER: "u"})
    assert response.status_code == 200
    assert response.headers["X-Rerank"] == "fallback" and response.headers[VARIANT_HEADER] == "interleave"
    assert ids(response) == [h["_id"] for h in bm25_window(opensearch_url, scifact_index, queries[0], 10)]
    (line,) = read_lines(tmp_path / "decisions.jsonl")
    assert line["query_attributes"]["fallback"] is True
    assert line["query_attributes"]["teams"] == ["bm25"] * 10


def test_click_events_with_the_response_id_go_to_the_events_log(opensearch_url, scifact_index, queries, tmp_path):
    with ab_proxy(opensearch_url, scifact_index, ab_config(tmp_path)) as proxy:
        response = search(proxy.url, scifact_index, queries[0], headers={KEY_HEADER: "u"})
        query_id, hit_ids = response.headers[QUERY_ID_HEADER], ids(response)
        click = {"action_name": "click", "query_id": query_id, "client_id": "browser-1",
                 "timestamp": "2025-01-01T10:00:00Z",
                 "event_attributes": {"object": {"object_id": hit_ids[2]}, "position": {"ordinal": 3}}}
        accepted = requests.post(proxy.url + EVENTS_PATH, json=click, timeout=30)
        broken = requests.post(proxy.url + EVENTS_PATH, json={"action_name": "click"}, timeout=30)
        wrong_method = requests.get(proxy.url + EVENTS_PATH, timeout=30)
        metrics = requests.get(proxy.url + "/_rerank/metrics", timeout=30).text
    assert accepted.status_code == 200 and accepted.json() == {"accepted": 1, "dropped": 0}
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "parse_exception" and "query_id" in broken.json()["error"]["reason"]
    assert wrong_method.status_code == 405 and wrong_method.json()["status"] == 405
    variant = response.headers[VARIANT_HEADER]
    assert f'es_rerank_ab_searches_total{{variant="{variant}"}} 1' in metrics
    assert "es_rerank_ab_log_dropped 0" in metrics
    (event,) = read_lines(tmp_path / "events.jsonl")
    assert event["query_id"] == query_id and event["action_name"] == "click"
    assert event["event_attributes"]["object"]["object_id"] == hit_ids[2]
    assert event["client_id"] == pseudonym("browser-1", SECRET)
    assert [line["query_id"] for line in read_lines(tmp_path / "decisions.jsonl")] == [query_id]


def test_the_events_endpoint_exists_only_during_an_ab_test(opensearch_url, scifact_index):
    settings = settings_for(opensearch_url, IndexRule(scifact_index))
    with running_proxy(settings, TermOverlapScorer()) as proxy:
        response = requests.post(proxy.url + EVENTS_PATH, json={"action_name": "click", "query_id": "q"}, timeout=30)
    assert response.status_code == 404
    assert "--ab-split" in response.json()["error"]["reason"]


def test_ab_report_summarises_logs_written_through_the_proxy(opensearch_url, scifact_index, queries, tmp_path):
    """Users click the hit the scorer likes best whenever it is on their page; the report must count that."""
    favourite = {text: model_order(opensearch_url, scifact_index, text)[0] for text in queries}
    expected = {"bm25": [], "rerank": [], "interleave": []}   # reciprocal rank of the click (0: none) per search
    interleaved_clicks = []                                    # (query id, clicked rank)
    for mode in ("split", "interleave"):
        config = ab_config(tmp_path, mode=mode, log_path=tmp_path / f"{mode}.jsonl")
        events = []
        with ab_proxy(opensearch_url, scifact_index, config) as proxy:
            for i in range(24):
                text = queries[i % len(queries)]
                response = search(proxy.url, scifact_index, text, headers={KEY_HEADER: f"{mode}-user-{i}"})
                variant, query_id = response.headers[VARIANT_HEADER], response.headers[QUERY_ID_HEADER]
                hit_ids = ids(response)
                if favourite[text] not in hit_ids:
                    expected[variant].append(0.0)
                    continue
                rank = hit_ids.index(favourite[text]) + 1
                expected[variant].append(1.0 / rank)
                events.append({"action_name": "click", "query_id": query_id,
                               "event_attributes": {"object": {"object_id": favourite[text]},
                                                    "position": {"ordinal": rank}}})
                if variant == "interleave":
                    interleaved_clicks.append((query_id, rank))
            posted = requests.post(proxy.url + EVENTS_PATH, json=events, timeout=30)
            assert posted.status_code == 200 and posted.json()["accepted"] == len(events)
    teams = {line["query_id"]: line["query_attributes"]["teams"] for line in read_lines(tmp_path / "interleave.jsonl")}
    credited = [teams[query_id][rank - 1] for query_id, rank in interleaved_clicks]

    logs = [str(tmp_path / "split.jsonl"), str(tmp_path / "interleave.jsonl"),
            "--events", str(tmp_path / "events.jsonl")]
    result = run_cli("ab", "report", *logs, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["searches"] == 48 and summary["bad_lines"] == 0 and summary["unmatched_clicks"] == 0
    assert summary["events"] == sum(1 for reciprocal in expected.values() for r in reciprocal if r)
    for variant, reciprocal in expected.items():
        got = summary["variants"][variant]
        assert got["searches"] == len(reciprocal)
        assert got["clicked_searches"] == sum(1 for r in reciprocal if r)
        assert got["mrr"] == pytest.approx(sum(reciprocal) / len(reciprocal))
        assert got["ctr_ci"][0] <= got["ctr"] <= got["ctr_ci"][1]
    assert summary["variants"]["rerank"]["mrr"] == 1.0   # the rerank arm always shows the favourite first
    inter = summary["interleaving"]
    assert (inter["wins"], inter["losses"], inter["ties"]) == (credited.count("rerank"), credited.count("bm25"), 0)
    table = run_cli("ab", "report", *logs)
    assert table.returncode == 0, table.stderr
    assert "interleave" in table.stdout and "rerank" in table.stdout
