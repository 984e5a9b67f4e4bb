"""`es-rerank serve --workers 2` against the real node: N HTTP workers on one port, one model server.

The processes are killed for real to check that the supervisor brings them back, and that
searches fall back to BM25 order while the model server is away.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading

import requests

from es_rerank.engine.bm25_query import bm25_body
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401
from tests.support.served_cli import assert_reranks_the_window, served_export
from tests.support.waiting import wait_until

QUERY = "vitamin D deficiency and bone fractures"
WORKERS = ["--workers", "2"]


def search(url: str, index: str, query: str = QUERY) -> requests.Response:
    return requests.post(f"{url}/{index}/_search", data=json.dumps(bm25_body(query, size=10)),
                         headers={"Content-Type": "application/json"}, timeout=120)


def metric(url: str, sample: str) -> float:
    """One sample of the summed `/_rerank/metrics` (0 when absent)."""
    for line in requests.get(url + "/_rerank/metrics", timeout=60).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def pids(lines: list[str], pattern: str) -> list[int]:
    return [int(m.group(1)) for line in list(lines) if (m := re.search(pattern, line))]


def test_workers_rerank_the_window_as_one_process_does(opensearch_url, minilm_export, scifact_index):
    with served_export(opensearch_url, minilm_export, scifact_index, extra_args=WORKERS) as url:
        assert_reranks_the_window(url, opensearch_url, scifact_index, minilm_export, QUERY)
        before = metric(url, 'es_rerank_requests_total{kind="reranked"}')
        sessions = [requests.Session() for _ in range(6)]  # separate connections: the kernel spreads them
        for session in sessions:
            response = session.post(f"{url}/{scifact_index}/_search", data=json.dumps(bm25_body(QUERY, size=10)),
                                    headers={"Content-Type": "application/json"}, timeout=120)
            assert response.headers["X-Rerank"] == "reranked"
        # Whichever worker answers the scrape, it counts the searches of both.
        assert metric(url, "es_rerank_workers_reporting") == 2
        assert metric(url, 'es_rerank_requests_total{kind="reranked"}') == before + len(sessions)
        assert metric(url, "es_rerank_ready") == 2


def test_searches_fall_back_while_the_model_server_restarts(opensearch_url, minilm_export, scifact_index):
    lines: list[str] = []
    with served_export(opensearch_url, minilm_export, scifact_index, extra_args=WORKERS, stderr_lines=lines) as url:
        [model_pid] = pids(lines, r"model server up \(pid (\d+)\)")
        supervisor = parent_of(model_pid)
        os.kill(supervisor, signal.SIGSTOP)  # hold the restart back, so the gap can be looked at
        try:
            os.kill(model_pid, signal.SIGKILL)
            wait_until(lambda: not os.path.exists(f"/proc/{model_pid}/cmdline") or zombie(model_pid),
                       "the model server to die")
            outcome = search(url, scifact_index)
            assert outcome.status_code == 200
            assert outcome.headers["X-Rerank"] == "fallback"  # served, in BM25 order
            assert outcome.headers["X-Rerank-Reason"] == "error"
        finally:
            os.kill(supervisor, signal.SIGCONT)
        wait_until(lambda: len(pids(lines, r"model server up \(pid (\d+)\)")) == 2, "the model server's restart",
                   cap_s=180)
        wait_until(lambda: search(url, scifact_index).headers["X-Rerank"] == "reranked",
                   "reranked searches after the restart", cap_s=60)
        assert_reranks_the_window(url, opensearch_url, scifact_index, minilm_export, QUERY)


def test_sigterm_drains_the_workers_and_the_search_in_flight_is_still_reranked(opensearch_url, minilm_export,
                                                                               scifact_index):
    """SIGTERM to `serve --workers 2` with a search waiting on the model server: readiness turns false,
    new connections are refused, the model server stays up until that search has its scores, and the
    supervisor exits 0."""
    from tests.integration.test_proxy_sigterm import refused

    lines: list[str] = []
    drain = ["--drain-delay-s", "3", "--drain-timeout-s", "60"]
    with served_export(opensearch_url, minilm_export, scifact_index, extra_args=WORKERS + drain,
                       stderr_lines=lines) as url:
        [model_pid] = pids(lines, r"model server up \(pid (\d+)\)")
        supervisor = parent_of(model_pid)
        # served_export saw one worker ready; the other must finish its warm-up before the model server stops
        wait_until(lambda: metric(url, "es_rerank_ready") == 2, "both workers to be ready")
        os.kill(model_pid, signal.SIGSTOP)  # the search below waits for its scores until SIGCONT
        answer: dict = {}
        searching = threading.Thread(target=lambda: answer.update(response=search(url, scifact_index)))
        try:
            searching.start()
            wait_until(lambda: metric(url, "es_rerank_in_flight") == 1, "the search to be in flight")
            os.kill(supervisor, signal.SIGTERM)
            ready = wait_until(lambda: [r for r in [requests.get(url + "/_rerank/ready", timeout=5)]
                                        if r.status_code == 503], "readiness to turn false after SIGTERM")[0]
            assert ready.json()["reasons"] == ["draining after SIGTERM"]
            wait_until(lambda: refused(url), "both workers to close the port after the drain delay")
            assert searching.is_alive() and not zombie(model_pid)  # nothing stopped the model server early
        finally:
            os.kill(model_pid, signal.SIGCONT)
        searching.join(120)
        response = answer["response"]
        assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
        assert len(response.json()["hits"]["hits"]) == 10
        wait_until(lambda: zombie(supervisor), "the supervisor to exit after the drain", cap_s=120)
    # served_export has checked the exit status: 0


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_dead_worker_is_replaced(opensearch_url, minilm_export, scifact_index):
    lines: list[str] = []
    with served_export(opensearch_url, minilm_export, scifact_index, extra_args=WORKERS, stderr_lines=lines) as url:
        first = pids(lines, r"worker 0 up \(pid (\d+)\)")
        os.kill(first[0], signal.SIGKILL)
        wait_until(lambda: len(pids(lines, r"worker 0 up \(pid (\d+)\)")) == 2, "worker 0's restart", cap_s=180)
        wait_until(lambda: metric(url, "es_rerank_workers_reporting") == 2, "both workers in the metrics", cap_s=60)
        assert search(url, scifact_index).headers["X-Rerank"] == "reranked"


def test_online_ab_refuses_several_workers(opensearch_url, minilm_export, scifact_index, tmp_path):
    from tests.conftest import run_cli

    result = run_cli("serve", "--opensearch", opensearch_url, "--model", str(minilm_export), "--device", "cpu",
                     "--index", scifact_index, "--workers", "2", "--ab-split", "0.5", "--ab-log",
                     str(tmp_path / "ab.jsonl"), "--port", "0")
    assert result.returncode != 0
    assert "--ab-split needs one process, got --workers 2" in result.stderr
    assert "pass --workers 1" in result.stderr
