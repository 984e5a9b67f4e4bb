import asyncio
import gzip
import json

import pytest
from aiohttp import ClientSession, web

from es_rerank.proxy.online_ab.assignment import pseudonym
from es_rerank.proxy.online_ab.decision_log import JsonLinesWriter
from es_rerank.proxy.online_ab.events import EventError, make_events_handler, parse_events, validate_event
from es_rerank.evaluation.protocol import EVENTS_PATH

CLICK = {"action_name": "click", "query_id": "6f1c", "client_id": "browser-7", "session_id": "s-1",
         "timestamp": "2025-03-01T10:00:00+02:00", "message": "free text with an e-mail@example.com",
         "event_attributes": {"object": {"object_id": "4983", "object_id_field": "_id", "title": "x"},
                              "position": {"ordinal": 2}, "browser": "secret stuff"}}


def test_click_is_normalised_and_stripped_of_free_form_data():
    event = validate_event(CLICK, secret="k")
    assert event == {
        "application": "es-rerank", "action_name": "click", "query_id": "6f1c",
        "timestamp": "2025-03-01T08:00:00.000Z",
        "client_id": pseudonym("browser-7", "k"), "session_id": pseudonym("s-1", "k"),
        "event_attributes": {"object": {"object_id": "4983", "object_id_field": "_id"}, "position": {"ordinal": 2}},
    }


def test_non_click_actions_need_no_object():
    assert validate_event({"action_name": "impression", "query_id": "q"}, "k")["action_name"] == "impression"


@pytest.mark.parametrize("event, message", [
    ({"query_id": "q"}, "action_name is required"),
    ({"action_name": "click"}, "query_id is required"),
    ({"action_name": "click", "query_id": 5}, "query_id must be a string"),
    ({"action_name": "click", "query_id": "q"}, "needs event_attributes.object.object_id"),
    ({"action_name": "click", "query_id": "q", "event_attributes": {"object": {"object_id": ""}}}, "non-empty"),
    ({"action_name": "click", "query_id": "q", "event_attributes": {"object": {"object_id": "a"},
                                                                  "position": {"ordinal": 0}}}, "positive integer"),
    ({"action_name": "click", "query_id": "q", "timestamp": "noon",
      "event_attributes": {"object": {"object_id": "a"}}}, "not ISO 8601"),
    ({"action_name": "x" * 101, "query_id": "q"}, "longer than 100"),
    (["not", "an", "object"], "expected a JSON object"),
])
def test_invalid_events_say_what_is_wrong(event, message):
    with pytest.raises(EventError, match=message):
        validate_event(event, "k")


def test_body_parsing_is_all_or_nothing_and_bounded():
    good = {"action_name": "click", "query_id": "q", "event_attributes": {"object": {"object_id": "a"}}}
    assert len(parse_events(json.dumps([good, good]).encode(), "k")) == 2
    with pytest.raises(EventError, match="event 2: query_id is required"):
        parse_events(json.dumps([good, {"action_name": "click"}]).encode(), "k")
    with pytest.raises(EventError, match="not JSON"):
        parse_events(b"{", "k")
    with pytest.raises(EventError, match="at most 3"):
        parse_events(json.dumps([good] * 4).encode(), "k", max_events=3)


async def _serve_and_post(tmp_path, requests):
    writer = JsonLinesWriter(tmp_path / "events.jsonl")
    app = web.Application()
    app.router.add_post(EVENTS_PATH, make_events_handler(writer, secret="k", max_bytes=4096))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    answers = []
    try:
        async with ClientSession() as session:
            for body, headers in requests:
                async with session.post(f"http://127.0.0.1:{port}{EVENTS_PATH}", data=body, headers=headers) as resp:
                    answers.append((resp.status, await resp.json()))
    finally:
        await runner.cleanup()
        writer.close()
    return answers, [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def test_handler_over_http_stores_valid_events_and_rejects_bad_ones(tmp_path):
    json_headers = {"Content-Type": "application/json"}
    requests = [
        (json.dumps(CLICK).encode(), json_headers),
        (gzip.compress(json.dumps([CLICK, CLICK]).encode()), {**json_headers, "Content-Encoding": "gzip"}),
        (json.dumps({"action_name": "click"}).encode(), json_headers),
        (b"[" + b" " * 5000 + b"]", json_headers),
    ]
    answers, stored = asyncio.run(_serve_and_post(tmp_path, requests))
    assert answers[0] == (200, {"accepted": 1, "dropped": 0})
    assert answers[1] == (200, {"accepted": 2, "dropped": 0})
    status, body = answers[2]
    assert status == 400 and body["status"] == 400
    assert body["error"]["type"] == "parse_exception" and "query_id is required" in body["error"]["reason"]
    assert answers[3][0] == 413 and answers[3][1]["error"]["type"] == "content_too_long_exception"
    assert len(stored) == 3 and all(event["query_id"] == "6f1c" for event in stored)
    assert all("message" not in event and "browser-7" not in json.dumps(event) for event in stored)
