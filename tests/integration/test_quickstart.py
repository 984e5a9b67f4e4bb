"""The README's main job, `es-rerank quickstart`, end to end against the real node: a checkpoint
given with --model is exported, served, shown next to BM25, and A/B-tested through the proxy."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.fixtures_export import one_logit_checkpoint  # noqa: F401


def test_quickstart_runs_every_step_on_a_given_checkpoint(one_logit_checkpoint, scifact_index,  # noqa: F811
                                                          opensearch_url, data_dir, tmp_path):
    work = tmp_path / "quickstart"
    result = run_cli("quickstart", str(data_dir / "scifact"), "--index", scifact_index, "--opensearch", opensearch_url,
                     "--model", str(one_logit_checkpoint), "--no-hub", "--work-dir", str(work),
                     "--queries-shown", "1", "--ab-queries", "4", "--window", "10", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for step in ("== 2. index", "== 3. model", "== 4. proxy with", "== 5. offline A/B on 4 judged test queries"):
        assert step in out
    assert f"index {scifact_index}: 5183 documents" in out
    assert "A/B on index test-scifact: 4 judged queries evaluated" in out
    assert (work / "export" / "meta.json").is_file() and (work / "export-source.txt").read_text() == str(one_logit_checkpoint)
    report = json.loads((work / "ab" / "report.json").read_text())
    assert report["queries"]["evaluated"] == 4 and (work / "ab" / "report.html").is_file()
    assert f"report: {work / 'ab' / 'report.html'}" in out
    assert "demo fine-tune" not in out  # a given model is never called the demo model
