"""The online A/B pieces together, as the proxy drives them: arm, page, log line, click, report."""

import asyncio
import json
import random

import pytest
from aiohttp import ClientSession, web

from es_rerank.proxy.online_ab.assignment import OnlineAbConfig
from es_rerank.proxy.online_ab.decision_log import validate_decision
from es_rerank.proxy.online_ab.arms import OnlineAb, new_query_id, response_headers
from es_rerank.proxy.online_ab.report import read_logs, summarise
from es_rerank.evaluation.protocol import EVENTS_PATH, QUERY_ID_HEADER, VARIANT_HEADER
from es_rerank.cli.ab_serve_options import online_ab_config
from es_rerank.errors import ConfigError

WINDOW = 20


def simulate(ab: OnlineAb, users: int, seed: int = 0):
    """Users search; the model puts the one relevant document first, BM25 has it at rank 6.

    Each user clicks the relevant hit when it is on the 10-hit page, and sometimes the top hit.
    Returns the click events a browser would send.
    """
    rng = random.Random(seed)
    events = []
    for user in range(users):
        decision = ab.decide({"X-User": f"user-{user}"}, "10.0.0.1")
        relevant = 5                                   # BM25 position of the relevant document
        reranked = [relevant] + [p for p in range(WINDOW) if p != relevant]
        positions, teams = ab.page(decision, reranked, start=0, size=10, seed_text=f"idx|query {user % 7}")
        query_id = new_query_id()
        hit_ids = [f"doc-{p}" for p in positions]
        ab.record(query_id=query_id, decision=decision, hit_ids=hit_ids, teams=teams, latency_ms=rng.uniform(5, 50),
                  index="idx", start=0, query_text=f"query {user % 7}")
        clicked = [hit_ids.index(f"doc-{relevant}") + 1] if f"doc-{relevant}" in hit_ids else []
        if rng.random() < 0.2:
            clicked.append(1)
        for ordinal in clicked:
            events.append({"action_name": "click", "query_id": query_id, "client_id": f"user-{user}",
                           "event_attributes": {"object": {"object_id": hit_ids[ordinal - 1]},
                                                "position": {"ordinal": ordinal}}})
    return events


async def post_events(ab: OnlineAb, events):
    app = web.Application()
    app.router.add_post(EVENTS_PATH, ab.events_handler())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{EVENTS_PATH}"
    try:
        async with ClientSession() as session:
            for start in range(0, len(events), 50):
                async with session.post(url, json=events[start:start + 50]) as response:
                    assert response.status == 200, await response.text()
    finally:
        await runner.cleanup()


def test_interleaving_detects_the_better_ranker_end_to_end(tmp_path):
    config = OnlineAbConfig(split=1.0, mode="interleave", key_header="X-User", log_path=tmp_path / "d.jsonl",
                            events_path=tmp_path / "e.jsonl", secret="k")
    ab = OnlineAb(config)
    events = simulate(ab, 300)
    asyncio.run(post_events(ab, events))
    ab.close()
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == 300
    for line in lines:
        record = json.loads(line)
        assert validate_decision(record) == []
        assert "user_query" not in record and not record["client_id"].startswith("user-")
    summary = summarise(read_logs([tmp_path / "d.jsonl", tmp_path / "e.jsonl"]))
    inter = summary["interleaving"]
    assert inter["searches"] == 300 and inter["wins"] > 3 * inter["losses"]
    assert inter["p_binomial"] < 1e-6 and summary["unmatched_clicks"] == 0


def test_split_arms_show_the_better_ranker_in_mrr(tmp_path):
    config = OnlineAbConfig(split=0.5, key_header="X-User", log_path=tmp_path / "d.jsonl", log_query_text=True)
    ab = OnlineAb(config)
    asyncio.run(post_events(ab, simulate(ab, 400)))
    ab.close()
    summary = summarise(read_logs([tmp_path / "d.jsonl"]))  # events went into the decision log
    rerank, bm25 = summary["variants"]["rerank"], summary["variants"]["bm25"]
    assert 150 < rerank["searches"] < 250 and rerank["searches"] + bm25["searches"] == 400
    assert rerank["mrr_ci"][0] > bm25["mrr_ci"][1]  # 1.0-ish against about 1/6
    assert summary["split"]["mrr_delta"] > 0.5 and summary["split"]["p_mrr_welch"] < 1e-6
    first = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert first["user_query"].startswith("query ")


def test_pages_of_one_interleaved_search_neither_repeat_nor_skip():
    ab = OnlineAb(OnlineAbConfig(split=1.0, mode="interleave"))
    decision = ab.decide({}, "192.0.2.1")
    reranked = random.Random(3).sample(range(WINDOW), WINDOW)
    pages = [ab.page(decision, reranked, start, 5, "idx|q") for start in range(0, WINDOW, 5)]
    positions = [p for page, _ in pages for p in page]
    assert sorted(positions) == list(range(WINDOW))
    whole, teams = ab.page(decision, reranked, 0, WINDOW, "idx|q")
    assert positions == whole and [t for _, page_teams in pages for t in page_teams] == teams


def test_single_arms_serve_their_own_order():
    ab = OnlineAb(OnlineAbConfig(split=1.0))
    rerank = ab.decide({}, "x")
    assert ab.page(rerank, [2, 0, 1], 0, 2, "s") == ([2, 0], ["rerank", "rerank"])
    bm25 = OnlineAb(OnlineAbConfig(split=0.0)).decide({}, "x")
    assert ab.page(bm25, [2, 0, 1], 1, 5, "s") == ([1, 2], ["bm25", "bm25"])


def test_response_headers_carry_the_arm_and_query_id():
    ab = OnlineAb(OnlineAbConfig(split=1.0))
    headers = response_headers(ab.decide({}, "x"), "q-1")
    assert headers == {VARIANT_HEADER: "rerank", QUERY_ID_HEADER: "q-1"}


def test_serve_options_build_the_config(tmp_path):
    config = online_ab_config(0.25, "split", "X-User", "exp", tmp_path / "d.jsonl", None, False, "k")
    assert (config.split, config.key_header, config.events_path) == (0.25, "X-User", None)
    with pytest.raises(ConfigError, match="needs --ab-log"):
        online_ab_config(0.25, "split", None, "exp", None, None, False, "")
    with pytest.raises(ConfigError, match="need --ab-split"):
        online_ab_config(None, "split", None, "exp", tmp_path / "d.jsonl", None, False, "")
