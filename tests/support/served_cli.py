"""`es-rerank serve --model EXPORT` run as users run it: a child process on a free port, ready-checked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, Sequence

import pytest
import requests

from es_rerank.proxy.server import LISTENING
from tests.conftest import REPO
from tests.support.waiting import wait_until


@contextlib.contextmanager
def served_export(opensearch_url: str, export_dir: Path, index: str, window: int = 20, extra_args: Sequence[str] = (),
                  stderr_lines: list[str] | None = None) -> Iterator[str]:
    """The proxy's URL once `/_rerank/ready` answers 200; on exit, SIGTERM and a clean exit are required.

    `stderr_lines`, when given, collects the proxy's log lines as they come.
    """
    command = [sys.executable, "-m", "es_rerank", "serve", "--opensearch", opensearch_url, "--model", str(export_dir),
               "--device", "cpu", "--index", index, "--window", str(window), "--deadline-ms", "30000", "--port", "0",
               *extra_args]
    lines = stderr_lines if stderr_lines is not None else []
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "ES_RERANK_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
    assert process.stderr is not None
    url = None
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if line.startswith(LISTENING):
            url = line[len(LISTENING):].strip()
            break
    if url is None:
        process.kill()
        pytest.fail("es-rerank serve did not start: " + " | ".join(lines[-5:]))
    stderr = process.stderr

    def keep_reading() -> None:  # keep the pipe drained so the proxy never blocks on it
        for line in stderr:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=keep_reading, daemon=True).start()
    wait_until(lambda: requests.get(url + "/_rerank/ready").status_code == 200, "the served model to be ready",
               cap_s=120, every_s=0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def assert_reranks_the_window(url: str, opensearch_url: str, index: str, export_dir: Path, query: str) -> None:
    """The proxy's top 10 for `query` are the engine's BM25 top 20 ordered by `OnnxScorer` on `export_dir`."""
    import json

    import numpy as np

    from es_rerank.engine.bm25_query import bm25_body, hits_from_response
    from es_rerank.scoring.cross_encoder import OnnxScorer
    from es_rerank.scoring.rerank import rerank_hits

    body = bm25_body(query, size=10)
    response = requests.post(f"{url}/{index}/_search", data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.headers["X-Rerank"] == "reranked"
    window = requests.post(f"{opensearch_url}/{index}/_search", json={**body, "size": 20}).json()
    want = rerank_hits(OnnxScorer.load(export_dir, device="cpu"), query, hits_from_response(window), ("title", "text"))
    hits = response.json()["hits"]["hits"]
    assert [h["_id"] for h in hits] == [hit.doc_id for hit, _ in want[:10]]
    np.testing.assert_allclose([h["_score"] for h in hits], [s for _, s in want[:10]], atol=1e-4)
