"""SIGTERM drain of a proxy subprocess: readiness turns false, new connections stop, in-flight requests finish.

Contract line 20.
"""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import requests

from es_rerank.proxy.server import LISTENING
from tests.conftest import REPO
from tests.support.waiting import wait_until

SLOW_SCORER_PROXY = """
import sys
from es_rerank.proxy.settings import IndexRule, ProxySettings, ServerSettings, UpstreamSettings
from es_rerank.proxy.server import LISTENING, run_until_signal
from tests.proxy_support import SlowScorer

settings = ProxySettings(UpstreamSettings(sys.argv[1]), rules=(IndexRule(sys.argv[2], window=20, deadline_ms=20000),),
                         server=ServerSettings(port=0, drain_delay_s=1.0, drain_timeout_s=20.0))
run_until_signal(settings, SlowScorer(float(sys.argv[3])),
                 on_listening=lambda url: print(LISTENING + url, file=sys.stderr, flush=True))
"""


def start(command):
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "ES_RERANK_NO_PROGRESS": "1"})
    lines = []
    for line in process.stderr:  # ends when the process does
        lines.append(line)
        if line.startswith(LISTENING):
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
            return process, line[len(LISTENING):].strip()
    process.kill()
    pytest.fail("proxy did not start: " + "".join(lines))


def in_background(fn):
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=fn()))
    thread.start()
    return thread, box


def refused(url: str) -> bool:
    """True once a new connection is refused; an answer, or none yet, means the socket still listens."""
    try:
        requests.get(url + "/_rerank/health", timeout=5)
    except requests.exceptions.ReadTimeout:  # accepted into the backlog as the listener closed: ask again
        return False
    except requests.exceptions.ConnectionError:
        return True
    return False


def check_drain(process, url, thread, box):
    """SIGTERM now: ready 503 during the delay, then refused connections, then the in-flight answer and exit 0."""
    process.send_signal(signal.SIGTERM)
    # A 503 Response is falsy (`Response.ok`), hence the list around it.
    ready = wait_until(lambda: [r for r in [requests.get(url + "/_rerank/ready", timeout=5)] if r.status_code == 503],
                       "readiness to turn false after SIGTERM")[0]
    assert "draining after SIGTERM" in ready.json()["reasons"]
    wait_until(lambda: refused(url), "the listening socket to close after the drain delay")
    thread.join(60)
    assert process.wait(60) == 0
    return box["result"]


def test_sigterm_lets_an_in_flight_request_finish_through_the_cli(opensearch_url):
    process, url = start([sys.executable, "-m", "es_rerank", "serve", "--opensearch", opensearch_url, "--port", "0",
                          "--drain-delay-s", "1", "--drain-timeout-s", "20"])
    try:
        # A real request that OpenSearch itself holds for 10 s before answering; SIGTERM once
        # OpenSearch lists it as a running task, i.e. the proxy has relayed it.
        thread, box = in_background(lambda: requests.get(
            url + "/_cluster/health?wait_for_nodes=9&timeout=10s", timeout=60))
        wait_until(lambda: requests.get(opensearch_url + "/_tasks?actions=cluster:monitor/health",
                                        timeout=5).json()["nodes"], "OpenSearch to hold the relayed health request")
        response = check_drain(process, url, thread, box)
        assert response.status_code == 408 and response.json()["timed_out"] is True
    finally:
        process.kill()


def test_sigterm_lets_an_in_flight_rerank_finish(opensearch_url, scifact_index):
    process, url = start([sys.executable, "-c", SLOW_SCORER_PROXY, opensearch_url, scifact_index, "5"])
    try:
        wait_until(lambda: requests.get(url + "/_rerank/ready", timeout=5).status_code == 200,
                   "the proxy to be ready (the warm-up call takes 5 s too)")
        body = json.dumps({"query": {"match": {"text": "breast cancer"}}})
        thread, box = in_background(lambda: requests.post(url + f"/{scifact_index}/_search", data=body, timeout=60,
                                                          headers={"Content-Type": "application/json"}))
        wait_until(lambda: "es_rerank_in_flight 1" in requests.get(url + "/_rerank/metrics", timeout=5).text,
                   "the search to be in the model")
        response = check_drain(process, url, thread, box)
        assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    finally:
        process.kill()


def next_request_outcome(session, url) -> str:
    """'answered', 'refused' (a fresh connection found the port closed: safe to retry) or 'reset'."""
    import urllib3

    try:
        session.get(url + "/_rerank/health", timeout=10)
        return "answered"
    except requests.exceptions.ConnectionError as exc:
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, urllib3.exceptions.MaxRetryError) and \
                isinstance(cause.reason, urllib3.exceptions.NewConnectionError):
            return "refused"
        return "reset"


def test_sigterm_drain_tells_keep_alive_clients_to_reconnect(opensearch_url, scifact_index):
    """Issue 14 item 5: draining answers carried no `Connection: close`, so keep-alive clients reused
    connections the drain then closed, and their next request was reset."""
    clients = 8
    process, url = start([sys.executable, "-c", SLOW_SCORER_PROXY, opensearch_url, scifact_index, "3"])
    sessions = [requests.Session() for _ in range(clients)]
    try:
        wait_until(lambda: requests.get(url + "/_rerank/ready", timeout=5).status_code == 200,
                   "the proxy to be ready (the warm-up call takes 3 s too)")
        for session in sessions:  # each client holds a keep-alive connection
            assert session.get(url + "/_rerank/health", timeout=10).headers.get("Connection") != "close"
        body = json.dumps({"query": {"match": {"text": "breast cancer"}}})
        searches = [in_background(lambda s=s: s.post(url + f"/{scifact_index}/_search", data=body, timeout=60,
                                                     headers={"Content-Type": "application/json"}))
                    for s in sessions]
        wait_until(lambda: f"es_rerank_in_flight {clients}" in requests.get(url + "/_rerank/metrics", timeout=5).text,
                   "every search to be in the model")
        process.send_signal(signal.SIGTERM)
        for thread, box in searches:
            thread.join(60)
            response = box["result"]
            assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
            assert response.headers.get("Connection") == "close"
        outcomes = [next_request_outcome(session, url) for session in sessions]
        assert "reset" not in outcomes, outcomes
        assert process.wait(60) == 0
    finally:
        for session in sessions:
            session.close()
        process.kill()
