"""SIGTERM drain of a proxy subprocess: readiness turns false, new connections stop, in-flight requests finish.

Contract line 20.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from es_rerank.proxy.server import LISTENING
from tests.conftest import REPO

SLOW_SCORER_PROXY = """
import sys
from es_rerank.config import IndexRule, ProxySettings, ServerSettings, UpstreamSettings
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
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
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


def check_drain(process, url, thread, box):
    """SIGTERM now: ready 503 during the delay, then refused connections, then the in-flight answer and exit 0."""
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = requests.get(url + "/_rerank/ready", timeout=5)
    assert ready.status_code == 503 and "draining after SIGTERM" in ready.json()["reasons"]
    time.sleep(1.2)  # past the 1 s drain delay: the listening socket is closed
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/_rerank/health", timeout=2)
    thread.join(30)
    assert process.wait(30) == 0
    return box["result"]


def test_sigterm_lets_an_in_flight_request_finish_through_the_cli(opensearch_url):
    process, url = start([sys.executable, "-m", "es_rerank", "serve", "--opensearch", opensearch_url, "--port", "0",
                          "--drain-delay-s", "1", "--drain-timeout-s", "20"])
    try:
        # A real request that OpenSearch itself holds for 3 s before answering.
        thread, box = in_background(lambda: requests.get(
            url + "/_cluster/health?wait_for_nodes=9&timeout=3s", timeout=30))
        time.sleep(0.5)
        response = check_drain(process, url, thread, box)
        assert response.status_code == 408 and response.json()["timed_out"] is True
    finally:
        process.kill()


def test_sigterm_lets_an_in_flight_rerank_finish(opensearch_url, scifact_index):
    process, url = start([sys.executable, "-c", SLOW_SCORER_PROXY, opensearch_url, scifact_index, "2.5"])
    try:
        for _ in range(100):  # the warm-up call takes 2.5 s too
            if requests.get(url + "/_rerank/ready", timeout=5).status_code == 200:
                break
            time.sleep(0.2)
        body = json.dumps({"query": {"match": {"text": "breast cancer"}}})
        thread, box = in_background(lambda: requests.post(url + f"/{scifact_index}/_search", data=body, timeout=30,
                                                          headers={"Content-Type": "application/json"}))
        time.sleep(0.5)
        response = check_drain(process, url, thread, box)
        assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    finally:
        process.kill()
