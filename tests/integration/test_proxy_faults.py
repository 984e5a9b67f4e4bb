"""When things go wrong: model faults, deadlines, overload, OpenSearch down, hostile or slow requests,
and the proxy's own endpoints. Contract lines 14-20 (SIGTERM is in test_proxy_sigterm.py).
"""

import json
import select
import socket
import threading
from dataclasses import replace

import pytest
import requests

from es_rerank.proxy.settings import IndexRule, LimitSettings, LoadSettings, UpstreamSettings
from es_rerank.errors import ScoringError
from tests.proxy_support import (BackgroundApp, GatedScorer, OutOfMemoryScorer, RaisingScorer, RawUpstream,
                                 TermOverlapScorer, WarmUpGatedScorer, running_proxy, settings_for)

MATCH = {"query": {"match": {"text": "breast cancer prognosis"}}}
JSON = {"Content-Type": "application/json"}


def search(base, index, body, params="", headers=None, timeout=30):
    return requests.post(f"{base}/{index}/_search{params}", data=json.dumps(body), headers={**JSON, **(headers or {})},
                         timeout=timeout)


def hit_ids(response):
    return [h["_id"] for h in response.json()["hits"]["hits"]]


def raw_exchange(url, data: bytes, timeout=10.0, then=None) -> bytes:
    """Send exact bytes; return the first complete response (headers and Content-Length body)."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        if then is not None:
            then(conn)
        return read_response(conn)


def read_response(conn) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def error_of(response):
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == response.status_code
    assert {"type", "reason"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("scorer, reason", [
    (RaisingScorer(), "error"),
    (RaisingScorer(RuntimeError("CUDA error: an illegal memory access")), "error"),
    (OutOfMemoryScorer(), "oom"),
])
def test_model_failures_give_the_bm25_page_with_200(opensearch_url, scifact_index, scorer, reason):
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index, window=30)), scorer) as proxy:
        for start in (0, 10):
            body = {**MATCH, "from": start, "size": 10}
            response = search(proxy.url, scifact_index, body)
            assert response.status_code == 200
            assert response.headers["X-Rerank"] == "fallback" and response.headers["X-Rerank-Reason"] == reason
            assert hit_ids(response) == hit_ids(search(opensearch_url, scifact_index, body))
        assert proxy.context.metrics.fallbacks.value((reason,)) == 2
        assert f'es_rerank_fallbacks_total{{reason="{reason}"}} 2' in requests.get(proxy.url + "/_rerank/metrics").text


def test_a_model_slower_than_the_deadline_falls_back_in_time(opensearch_url, scifact_index):
    rule = IndexRule(scifact_index, window=30, deadline_ms=150)
    scorer = GatedScorer()
    with running_proxy(settings_for(opensearch_url, rule), scorer) as proxy:
        try:
            response = search(proxy.url, scifact_index, MATCH)
            # The answer came while the model was still held inside its call: the deadline, not
            # the model, ended the rerank stage.
            assert scorer.entered.is_set() and not scorer.gate.is_set()
        finally:
            scorer.release()
    assert response.status_code == 200 and response.headers["X-Rerank-Reason"] == "timeout"
    assert hit_ids(response) == hit_ids(search(opensearch_url, scifact_index, MATCH))


def hold_one_search(proxy, index):
    """Start a search that stays in flight inside the gated model; returns its thread and result box."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(response=search(proxy.url, index, MATCH)))
    thread.start()
    return thread, box


@pytest.mark.parametrize("status", [429, 503])
def test_overload_is_shed_with_retry_after(opensearch_url, scifact_index, status):
    scorer = GatedScorer()
    load = LoadSettings(max_in_flight=1, overload="shed", shed_status=status, retry_after_s=2)
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index), load=load), scorer) as proxy:
        thread, box = hold_one_search(proxy, scifact_index)
        assert scorer.entered.wait(10)
        shed = search(proxy.url, scifact_index, MATCH)
        passthrough = requests.get(proxy.url + "/_cluster/health")  # pass-through is not bounded by reranks
        scorer.release()
        thread.join(10)
        assert shed.status_code == status and shed.headers["Retry-After"] == "2"
        assert error_of(shed)["type"] == "rejected_execution_exception"
        assert passthrough.status_code == 200
        assert box["response"].status_code == 200 and box["response"].headers["X-Rerank"] == "reranked"
        assert proxy.context.metrics.shed.value(("reject",)) == 1


def test_overload_degrades_to_bm25_when_configured(opensearch_url, scifact_index):
    scorer = GatedScorer()
    load = LoadSettings(max_in_flight=1, overload="degrade")
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index), load=load), scorer) as proxy:
        thread, _ = hold_one_search(proxy, scifact_index)
        assert scorer.entered.wait(10)
        degraded = search(proxy.url, scifact_index, {**MATCH, "ext": {"rerank": {"window": 50}}})
        scorer.release()
        thread.join(10)
        assert degraded.status_code == 200 and degraded.headers["X-Rerank"] == "degraded"
        assert hit_ids(degraded) == hit_ids(search(opensearch_url, scifact_index, MATCH))
        assert proxy.context.metrics.shed.value(("degrade",)) == 1


def test_opensearch_down_gives_502_in_opensearch_shape(scifact_index):
    with running_proxy(settings_for(closed_port_url(), IndexRule(scifact_index)), TermOverlapScorer()) as proxy:
        for response in (requests.get(proxy.url + "/"), search(proxy.url, scifact_index, MATCH),
                         requests.post(proxy.url + "/x/_doc", json={"a": 1})):
            assert response.status_code == 502
            assert error_of(response)["type"] == "upstream_unavailable_exception"
        ready = requests.get(proxy.url + "/_rerank/ready")
        assert ready.status_code == 503 and "OpenSearch is unreachable" in ready.json()["reasons"]
        assert proxy.context.metrics.upstream_errors.value(("connect",)) >= 3


def test_an_unanswered_connect_gives_504_after_the_connect_timeout():
    with socket.socket() as full:  # a listener whose accept queue is full drops further connection attempts
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        url = f"http://127.0.0.1:{full.getsockname()[1]}"
        with socket.create_connection(full.getsockname()):
            upstream = UpstreamSettings(url, connect_timeout_s=0.3, read_timeout_s=30)
            with running_proxy(replace(settings_for(url), upstream=upstream)) as proxy:
                response = requests.get(proxy.url + "/_cluster/health", timeout=60)
                assert proxy.context.metrics.upstream_errors.value(("timeout",)) == 1
    assert response.status_code == 504 and error_of(response)["type"] == "upstream_timeout_exception"


def test_a_stalled_opensearch_gives_504_after_the_read_timeout():
    with RawUpstream(stall_s=5) as stalled:
        settings = replace(settings_for(stalled.url), upstream=UpstreamSettings(stalled.url, read_timeout_s=0.5))
        with running_proxy(settings) as proxy:
            response = requests.get(proxy.url + "/_cluster/health", timeout=60)
    assert response.status_code == 504 and error_of(response)["type"] == "upstream_timeout_exception"


def test_a_served_hit_that_repeats_a_key_goes_back_as_opensearch_sent_it():
    # A real node never repeats a key in a hit; this upstream does in the hit the model ranks first,
    # which the proxy reads only when it builds the page (the other hits are not walked).
    from aiohttp import web

    hits = [b'{"_index":"docs","_id":"a","_score":3.0,"_source":{"text":"weather report"}}',
            b'{"_index":"docs","_id":"b","_score":2.0,"_source":{"text":"gene therapy trial"},"_id":"b"}']
    bodies = {name: b'{"took":1,"timed_out":false,"hits":{"total":{"value":2,"relation":"eq"},"max_score":3.0,'
                    b'"hits":[' + b",".join(chosen) + b']}}' for name, chosen in (("docs", hits), ("clean", hits[:1]))}

    async def answer(request):
        if "_settings" in request.path:
            return web.json_response({})
        return web.Response(body=bodies[request.path.split("/")[1]], content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    with BackgroundApp(app) as upstream, \
            running_proxy(settings_for(upstream.url, IndexRule("docs"), IndexRule("clean")), TermOverlapScorer()) as proxy:
        query = {"query": {"match": {"text": "gene therapy"}}}
        repeated = search(proxy.url, "docs", query)
        assert repeated.status_code == 200 and repeated.content == bodies["docs"]
        assert "X-Rerank" not in repeated.headers
        assert proxy.context.metrics.requests.value(("skipped",)) == 1
        clean = search(proxy.url, "clean", query)  # the same upstream, no repeated key: reranked as usual
        assert clean.status_code == 200 and clean.headers["X-Rerank"] == "reranked"


def test_a_body_cut_short_by_opensearch_is_not_passed_off_as_complete():
    size = 3 << 20  # large enough to be streamed rather than buffered
    cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size + b"x" * (1 << 20)
    with RawUpstream(reply=cut) as broken, running_proxy(settings_for(broken.url)) as proxy:
        with pytest.raises(requests.exceptions.RequestException):
            _ = requests.get(proxy.url + "/big/_doc/1", timeout=10).content  # reading the body raises
        assert requests.get(proxy.url + "/_rerank/health").status_code == 200


@pytest.fixture(scope="module")
def limited_proxy(opensearch_url, scifact_index):
    limits = LimitSettings(max_body_bytes=2000, max_json_depth=20, body_timeout_s=1.0)
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index), limits=limits),
                       TermOverlapScorer()) as proxy:
        yield proxy


def test_an_oversized_body_gets_413_before_it_is_sent(limited_proxy, scifact_index):
    head = (f"POST /{scifact_index}/_search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n\r\n").encode()
    answer = raw_exchange(limited_proxy.url, head, timeout=60)  # no body byte sent: the answer cannot wait for it
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"status":413' in answer and b"Connection: close" in answer
    bulk = requests.post(limited_proxy.url + "/_bulk", data=b"x" * 5000, headers={"Content-Type": "application/x-ndjson"})
    assert bulk.status_code == 413 and error_of(bulk)["type"] == "content_too_long_exception"


def test_an_oversized_chunked_body_is_cut_off(limited_proxy):
    def chunks():
        for _ in range(10):
            yield b"y" * 1000

    response = requests.post(limited_proxy.url + "/_bulk", data=chunks(), headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 413


def test_expect_continue_with_an_oversized_length_gets_413_not_100(limited_proxy):
    head = (b"PUT /proxy-x/_doc/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 9999999\r\nExpect: 100-continue\r\n\r\n")
    answer = raw_exchange(limited_proxy.url, head)
    assert answer.startswith(b"HTTP/1.1 413") and b"100 Continue" not in answer


def test_json_nesting_is_capped(limited_proxy, scifact_index):
    query = {"match": {"text": "x"}}
    for _ in range(25):
        query = {"bool": {"must": [query]}}
    response = search(limited_proxy.url, scifact_index, {"query": query})
    assert response.status_code == 400 and error_of(response)["type"] == "parsing_exception"


def test_malformed_json_gets_opensearchs_own_400(limited_proxy, opensearch_url, scifact_index):
    for body in (b'{"query": {"match": {"text": "x"}}', b'{"query": }', b"not json"):
        direct = requests.post(f"{opensearch_url}/{scifact_index}/_search", data=body, headers=JSON)
        through = requests.post(f"{limited_proxy.url}/{scifact_index}/_search", data=body, headers=JSON)
        assert direct.status_code == 400
        assert (through.status_code, through.content) == (direct.status_code, direct.content)


def test_a_slow_client_times_out_without_holding_up_others(opensearch_url, scifact_index):
    body = json.dumps(MATCH).encode()
    head = (f"POST /{scifact_index}/_search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    others = []

    def meanwhile(conn):
        conn.sendall(body[:10])  # then stall
        others.append(search(proxy.url, scifact_index, MATCH, timeout=60))
        others.append(unanswered(conn))

    limits = LimitSettings(body_timeout_s=10.0)  # far longer than a search, even on a loaded machine
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index), limits=limits),
                       TermOverlapScorer()) as proxy:
        answer = raw_exchange(proxy.url, head, timeout=60, then=meanwhile)
    assert answer.startswith(b"HTTP/1.1 408")
    assert others[0].status_code == 200 and others[1], "the other search waited for the stalled one"


def unanswered(conn) -> bool:
    """True while nothing has arrived on `conn` (nothing is read, so the later read still sees it)."""
    readable, _, _ = select.select([conn], [], [], 0)
    return not readable


def test_malformed_http_gets_400_and_a_closed_connection(limited_proxy):
    host, port = limited_proxy.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GARBAGE \x00\x01 nonsense\r\n\r\n")
        answer = read_response(conn)
        assert conn.recv(100) == b""  # closed by the proxy
    assert answer.split(b"\r\n")[0] in (b"HTTP/1.0 400 Bad Request", b"HTTP/1.1 400 Bad Request")


@pytest.mark.parametrize("path", ["/test-scifact/../_cluster/settings", "/test-scifact/%2e%2e/_cluster/settings",
                                  "/a\\..\\b"])
def test_dot_segments_and_backslashes_are_rejected(limited_proxy, path):
    answer = raw_exchange(limited_proxy.url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"illegal_argument_exception" in answer


def test_the_upstream_is_never_taken_from_host_or_an_absolute_target(limited_proxy, opensearch_url):
    direct = requests.get(opensearch_url + "/").json()["cluster_name"]
    answer = raw_exchange(limited_proxy.url, b"GET / HTTP/1.1\r\nHost: 10.255.255.1:9200\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and direct.encode() in answer
    absolute = raw_exchange(limited_proxy.url, b"GET http://10.255.255.1:9200/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert absolute.startswith(b"HTTP/1.1 400")


def test_health_ready_and_metrics(limited_proxy, scifact_index):
    assert requests.get(limited_proxy.url + "/_rerank/health").json() == {"status": "live"}
    ready = requests.get(limited_proxy.url + "/_rerank/ready")
    assert ready.status_code == 200 and ready.json()["model"] == "loaded"
    assert search(limited_proxy.url, scifact_index, MATCH).headers["X-Rerank"] == "reranked"
    metrics = requests.get(limited_proxy.url + "/_rerank/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    for line in ('es_rerank_requests_total{kind="reranked"}', 'es_rerank_window_size_count',
                 'es_rerank_batch_pairs_count', 'es_rerank_stage_seconds_count{stage="upstream"}',
                 'es_rerank_stage_seconds_count{stage="queue"}', 'es_rerank_stage_seconds_count{stage="score"}',
                 'es_rerank_stage_seconds_count{stage="rewrite"}', 'es_rerank_stage_seconds_count{stage="total"}'):
        assert line in metrics.text
    missing = requests.get(limited_proxy.url + "/_rerank/nothing")
    assert missing.status_code == 404 and error_of(missing)["type"] == "resource_not_found_exception"


def test_not_ready_while_the_model_warms_up_or_after_it_failed(opensearch_url, scifact_index):
    warming_scorer = WarmUpGatedScorer()
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index)), warming_scorer, wait_warm=False) as proxy:
        warming = requests.get(proxy.url + "/_rerank/ready")
        assert warming.status_code == 503 and "model is warming up" in warming.json()["reasons"]
        warming_scorer.release()
        assert proxy.context.batcher.warm.wait(60)
        assert requests.get(proxy.url + "/_rerank/ready").status_code == 200
    with running_proxy(settings_for(opensearch_url, IndexRule(scifact_index)), RaisingScorer(ScoringError("bad onnx"))) as proxy:
        failed = requests.get(proxy.url + "/_rerank/ready")
        assert failed.status_code == 503 and "bad onnx" in failed.json()["model"]
