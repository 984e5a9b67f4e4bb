"""The README's main job, `es-rerank quickstart`, end to end against the real node: the offline
CPU default (BM25 fused with the packaged bi-encoder) and a checkpoint given with --model, each
A/B-tested, passed through the guard rail, served by the proxy and shown next to BM25."""

from __future__ import annotations

import json

from es_rerank.proxy.guard_rail import recorded_verdict
from tests.conftest import run_cli
from tests.fixtures_export import one_logit_checkpoint  # noqa: F401


def test_the_cpu_default_serves_a_system_at_least_as_good_as_bm25(scifact_index, opensearch_url, data_dir, tmp_path):
    work = tmp_path / "quickstart"
    result = run_cli("quickstart", str(data_dir / "scifact"), "--index", scifact_index, "--opensearch", opensearch_url,
                     "--no-gpu", "--work-dir", str(work), "--queries-shown", "1", "--ab-queries", "20",
                     "--window", "20", env={"OMP_NUM_THREADS": "2"}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for step in ("== 3. system", "path: offline CPU default: BM25 fused with the packaged all-MiniLM-L6-v2",
                 "== 4. offline A/B of BM25 + bi-encoder against BM25 on 20 judged test queries (window 20)",
                 "== 5. guard rail", "== 6. proxy serving BM25 + bi-encoder"):
        assert step in out
    report = json.loads((work / "ab" / "report.json").read_text())
    ndcg = report["comparisons"][0]["metrics"]["nDCG@10"]
    assert report["queries"]["evaluated"] == 20
    assert ndcg["delta"] >= 0.0, ndcg   # the default path never serves a system below BM25
    dense = work / "dense-int8-128"  # the CPU default serves the int8 bi-encoder at 128 tokens
    assert json.loads((dense / "meta.json").read_text())["dtype"] == "int8"
    verdict = recorded_verdict(dense, scifact_index)
    assert verdict is not None and verdict.delta == ndcg["delta"] and not verdict.harm
    assert f"served on {scifact_index}: BM25 + bi-encoder" in out


def test_quickstart_runs_every_step_on_a_given_checkpoint(one_logit_checkpoint, scifact_index,  # noqa: F811
                                                          opensearch_url, data_dir, tmp_path):
    work = tmp_path / "quickstart"
    result = run_cli("quickstart", str(data_dir / "scifact"), "--index", scifact_index, "--opensearch", opensearch_url,
                     "--model", str(one_logit_checkpoint), "--work-dir", str(work),
                     "--queries-shown", "1", "--ab-queries", "4", "--window", "10", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for step in ("== 2. index", "== 3. system", f"path: the cross-encoder given with --model ({one_logit_checkpoint})",
                 "== 4. offline A/B of cross-encoder", "on 4 judged test queries (window 10)", "== 5. guard rail",
                 "== 6. proxy serving cross-encoder"):
        assert step in out
    assert f"index {scifact_index}: 5183 documents" in out
    assert "A/B on index test-scifact: 4 judged queries evaluated" in out
    assert (work / "export" / "meta.json").is_file() and (work / "export-source.txt").read_text() == str(one_logit_checkpoint)
    report = json.loads((work / "ab-ce" / "report.json").read_text())
    assert report["queries"]["evaluated"] == 4 and (work / "ab-ce" / "report.html").is_file()
    assert f"report: {work / 'ab-ce' / 'report.html'}" in out
    # Four queries cannot make a significant difference: the guard rail lets the model through, and says so.
    assert recorded_verdict(work / "export", scifact_index).queries == 4
    assert f"index '{scifact_index}': the model is served" in out
