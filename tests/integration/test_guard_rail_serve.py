"""The guard rail as users meet it: `es-rerank serve` on a real export, in front of the real node,
refuses a model whose recorded A/B shows it significantly below BM25 on the index, serves the
safest configuration it has instead, and says why at start-up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest
import requests

from es_rerank.proxy.guard_rail import Verdict, record_verdict, recorded_verdict
from es_rerank.proxy.server import LISTENING
from tests.conftest import REPO, run_cli
from tests.fixtures_export import minilm_dense_export, minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)
from tests.support.waiting import wait_until

QUERY = "0-dimensional biomaterials show inductive properties"


def harmful_export(minilm_export, tmp_path, index: str):  # noqa: F811
    """A copy of the export with a recorded verdict of significant harm on `index`."""
    export = tmp_path / "export"
    shutil.copytree(minilm_export, export)
    record_verdict(export, Verdict(index, "test", 300, 0.6775, 0.4177, -0.2598, 0.0002, True))
    return export


def start_serve(*args: str):
    """`es-rerank serve ARGS --port 0`: the process, its URL and the start-up lines it printed."""
    command = [sys.executable, "-m", "es_rerank", "serve", "--device", "cpu", "--deadline-ms", "60000", "--port", "0",
               *args]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "ES_RERANK_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
    lines, url = [], None
    for line in process.stderr:
        if line.startswith(LISTENING):
            url = line[len(LISTENING):].strip()
            break
        lines.append(line.rstrip())
    if url is None:
        process.kill()
        pytest.fail("es-rerank serve did not start:\n" + "\n".join(lines[-30:]))
    threading.Thread(target=process.stderr.read, daemon=True).start()
    wait_until(lambda: requests.get(url + "/_rerank/ready").status_code == 200, "the proxy to be ready",
               cap_s=120, every_s=0.2)
    return process, url, lines


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def search(url: str, index: str) -> requests.Response:
    body = {"query": {"multi_match": {"query": QUERY, "fields": ["title", "text"]}}, "size": 10}
    return requests.post(f"{url}/{index}/_search", data=json.dumps(body), headers={"Content-Type": "application/json"})


def test_a_harmful_model_is_not_served_and_bm25_is(minilm_export, opensearch_url, scifact_index, tmp_path):  # noqa: F811
    export = harmful_export(minilm_export, tmp_path, scifact_index)
    process, url, lines = start_serve("--opensearch", opensearch_url, "--model", str(export), "--index", scifact_index,
                                      "--window", "10")
    try:
        assert any(f"index '{scifact_index}': the model is not served: it is significantly below BM25" in line
                   and "serving BM25 (pass --allow-harm" in line for line in lines), lines
        assert f"index {scifact_index}: off: passes through" in lines
        served, direct = search(url, scifact_index), search(opensearch_url, scifact_index)
        assert served.status_code == 200 and "X-Rerank" not in served.headers
        assert [h["_id"] for h in served.json()["hits"]["hits"]] == [h["_id"] for h in direct.json()["hits"]["hits"]]
    finally:
        stop(process)


def test_allow_harm_serves_it_anyway(minilm_export, opensearch_url, scifact_index, tmp_path):  # noqa: F811
    export = harmful_export(minilm_export, tmp_path, scifact_index)
    process, url, lines = start_serve("--opensearch", opensearch_url, "--model", str(export), "--index", scifact_index,
                                      "--window", "10", "--allow-harm")
    try:
        assert any("served despite harm (--allow-harm)" in line for line in lines), lines
        # The start-up timing of the real export: an explicit window is kept and reported with its cost.
        assert any(f"index '{scifact_index}': a window of 10 takes about" in line
                   and "within its 60000 ms deadline" in line for line in lines), lines
        assert search(url, scifact_index).headers["X-Rerank"] == "reranked"
    finally:
        stop(process)


def test_with_a_bi_encoder_the_fused_recipe_is_served_instead(minilm_export, minilm_dense_export,  # noqa: F811
                                                              opensearch_url, scifact_index, tmp_path):
    export = harmful_export(minilm_export, tmp_path, scifact_index)
    process, url, lines = start_serve("--opensearch", opensearch_url, "--model", str(export), "--index", scifact_index,
                                      "--window", "10", "--dense-model", str(minilm_dense_export))
    try:
        assert any("serving BM25 fused with the bi-encoder instead" in line for line in lines), lines
        assert any(f"index {scifact_index}: fusion {{'ce': 0.0, 'bm25': 0.5, 'dense': 0.5" in line for line in lines)
        served = search(url, scifact_index)
        assert served.headers["X-Rerank"] == "reranked"
        # Scores are the fused ones (min-max BM25 and cosine, half each), so they lie in [0, 1].
        assert all(0.0 <= h["_score"] <= 1.0 for h in served.json()["hits"]["hits"])
    finally:
        stop(process)


def test_ab_records_its_verdict_and_serve_reads_it(minilm_export, opensearch_url, scifact_index, data_dir,  # noqa: F811
                                                   tmp_path):
    export = tmp_path / "export"
    shutil.copytree(minilm_export, export)
    result = run_cli("ab", "--model", str(export), "--record-verdict", "--index", scifact_index,
                     "--queries", str(data_dir / "scifact"), "--qrels", str(data_dir / "scifact"),
                     "--max-queries", "6", "--window", "5", "--out", str(tmp_path / "ab"), "--opensearch", opensearch_url)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "ab" / "report.json").read_text())
    ndcg = report["comparisons"][0]["metrics"]["nDCG@10"]
    verdict = recorded_verdict(export, scifact_index)
    assert (verdict.queries, verdict.bm25_ndcg10, verdict.model_ndcg10, verdict.p) == (6, ndcg["baseline_mean"],
                                                                                        ndcg["mean"], ndcg["p"])
    assert verdict.harm is report["comparisons"][0]["significant_harm"] is False  # 6 queries cannot reach p < 0.05
    assert f"recorded in {export / 'ab-verdicts.json'}" in result.stderr


def test_a_default_window_too_slow_for_the_deadline_is_lowered_at_start_up(minilm_export, opensearch_url,  # noqa: F811
                                                                          scifact_index):
    # No model scores 100 pairs within 80 % of 5 ms on a CPU: the default window is lowered, with the numbers.
    process, url, lines = start_serve("--opensearch", opensearch_url, "--model", str(minilm_export),
                                      "--index", scifact_index, "--deadline-ms", "5")
    try:
        line = next(line for line in lines if f"index '{scifact_index}': a window of 100 takes about" in line)
        assert "over its 5 ms deadline; window lowered to 1 (measured: cross-encoder 16 pairs in" in line, line
        assert "set --window 100 --deadline-ms" in line
    finally:
        stop(process)
