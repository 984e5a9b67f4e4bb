"""A short load-with-faults run (about 90 s): open-loop load through the proxy to a throw-away node while
the relay adds latency, resets and black-holes, the scorer stalls and runs out of memory,
OpenSearch is SIGKILLed and restarted, and the proxy is SIGTERMed and restarted.

The long version, with the rate ramp and the soak, is `es-rerank bench reliability`.
"""

import json

import pytest

from lab.reliability.faults import FAULT_KINDS
from lab.reliability.loadrun import LoadRunSettings, run_load_suite


@pytest.mark.slow
def test_the_proxy_survives_every_fault_without_losing_or_repeating_a_write(data_dir, tmp_path):
    settings = LoadRunSettings(dataset=data_dir / "cranfield", work_dir=tmp_path, rate=15.0, fault_hold_s=3.0,
                               gap_s=3.0, tail_s=4.0, max_queries=100)
    report = run_load_suite(settings, log=lambda message: None)
    summary = json.dumps({k: report[k] for k in ("findings", "finding_examples", "writes", "pages")}, indent=1)
    assert report["findings"] == {}, summary
    assert report["writes"]["acknowledged_writes"] > 100
    assert report["writes"]["lost_writes"] == 0 and report["writes"]["duplicate_writes"] == 0, summary
    assert report["writes"]["bulk_requests_reaching_opensearch_twice"] == 0, summary
    assert report["pages"]["bm25_pages_checked"] > 50 and report["pages"]["bm25_page_mismatches"] == 0, summary
    assert report["pages"]["reranked_pages_outside_the_window"] == 0, summary
    failed = [w for w in report["faults"]["windows"] if not w["survived"]]
    assert report["faults"]["survived_kinds"] == sorted(FAULT_KINDS), json.dumps(failed, indent=1)
    # Latency (the calm p99, and so report["passed"]) depends on the machine's load: it is the
    # benchmark's figure (`es-rerank bench reliability`), not something this test can assert.
