"""`es-rerank serve --ab-split ...` as users run it: a real ONNX export (made from the packaged
MiniLM), the real node, an interleaved A/B test, its logs, clicks and `es-rerank ab report`."""

import json

import requests

from es_rerank.proxy.online_ab.decision_log import validate_decision
from es_rerank.evaluation.protocol import EVENTS_PATH, QUERY_ID_HEADER, VARIANT_HEADER
from es_rerank.proxy.server import serve_subprocess
from es_rerank.scoring.rerank import order_by_scores
from es_rerank.types import Hit
from tests.conftest import run_cli
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)

WINDOW = 20
FIELDS = ("title", "text")
QUERY = "0-dimensional biomaterials show inductive properties"


def test_serve_runs_an_interleaved_ab_test_with_a_real_export(minilm_export, opensearch_url, scifact_index, tmp_path):
    from es_rerank.scoring.cross_encoder import OnnxScorer

    decisions, events = tmp_path / "decisions.jsonl", tmp_path / "events.jsonl"
    args = ["--model", str(minilm_export), "--device", "cpu", "--index", scifact_index, "--window", str(WINDOW),
            "--deadline-ms", "30000", "--ab-split", "1", "--ab-mode", "interleave", "--ab-key-header", "X-Session",
            "--ab-log", str(decisions), "--ab-events-log", str(events), "--ab-log-query-text",
            "--ab-secret", "serve-test-secret"]
    body = {"query": {"multi_match": {"query": QUERY, "fields": list(FIELDS)}}, "size": 10}
    with serve_subprocess(opensearch_url, args) as url:
        response = requests.post(f"{url}/{scifact_index}/_search", json=body, headers={"X-Session": "alice"},
                                 timeout=120)
        assert response.status_code == 200, response.text
        hit_ids = [hit["_id"] for hit in response.json()["hits"]["hits"]]
        click = {"action_name": "click", "query_id": response.headers[QUERY_ID_HEADER],
                 "event_attributes": {"object": {"object_id": hit_ids[0]}, "position": {"ordinal": 1}}}
        assert requests.post(url + EVENTS_PATH, json=click, timeout=30).json()["accepted"] == 1
    assert response.headers[VARIANT_HEADER] == "interleave" and response.headers["X-Rerank"] == "interleaved"

    # SIGTERM drained the proxy: both logs are complete on disk.
    (line,) = [json.loads(text) for text in decisions.read_text().splitlines()]
    assert validate_decision(line) == [] and line["user_query"] == QUERY
    assert line["query_response_hit_ids"] == hit_ids
    teams = line["query_attributes"]["teams"]
    # The rerank team's picks follow the real model's order over the BM25 window.
    window = requests.post(f"{opensearch_url}/{scifact_index}/_search", json={**body, "size": WINDOW},
                           timeout=30).json()["hits"]["hits"]
    texts = [Hit(hit["_id"], hit["_score"], hit["_source"]).text(FIELDS) for hit in window]
    scorer = OnnxScorer.load(minilm_export, device="cpu")
    model = [hit["_id"] for hit, _ in order_by_scores(window, scorer.score_pairs([QUERY] * len(texts), texts))]
    bm25 = [hit["_id"] for hit in window]
    placed = set()
    for doc, team in zip(hit_ids, teams):
        assert doc == next(d for d in (model if team == "rerank" else bm25) if d not in placed), (doc, team)
        placed.add(doc)
    assert set(teams) == {"rerank", "bm25"}

    report = run_cli("ab", "report", str(decisions), "--events", str(events), "--json")
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["variants"]["interleave"]["clicked_searches"] == 1
    inter = summary["interleaving"]
    assert (inter["wins"], inter["losses"]) == ((1, 0) if teams[0] == "rerank" else (0, 1))
