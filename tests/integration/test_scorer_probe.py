"""The GPU scorer probe (`lab.gpu.scorer_probe`) on the CPU: the part that runs without CUDA, on
real SciFact windows, so the GPU machine never meets an untried code path of its own there."""

from __future__ import annotations

import json

from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries
from es_rerank.data.candidates import CandidateSet, QueryCandidates, write_candidates
from lab.gpu.scorer_probe import main
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)


def test_the_probe_times_every_cpu_variant_on_the_same_pairs(minilm_export, data_dir, tmp_path):  # noqa: F811
    scifact = data_dir / "scifact"
    queries, qrels = read_queries(scifact), read_qrels(scifact, "test")
    docs = {}
    for doc_id, doc in iter_corpus_docs(scifact):
        docs[doc_id] = f"{doc.title} {doc.text}".strip()
        if len(docs) >= 40:
            break
    windows = [QueryCandidates(qid, queries[qid], list(docs)[i * 10:i * 10 + 24]) for i, qid in enumerate(list(qrels)[:2])]
    candidates = tmp_path / "cands.jsonl"
    write_candidates(CandidateSet({"source": "test"}, docs, windows), candidates)

    assert main([str(minilm_export), str(candidates), "--out", str(tmp_path / "out"), "--queries", "2",
                 "--rounds", "1", "--device", "cpu"]) == 0

    result = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert result["pairs"] == 48 and result["windows"] == 2
    assert set(result["variants"]) == {"product", "tokens-32768", "tokens-131072"}
    for row in result["variants"].values():  # other budgets cut other batches over the same pairs
        assert row["pairs_per_s"] > 0 and row["max_abs_diff"] < 1e-5
    assert result["window_latency"]["windows"] == 2
    assert "| product |" in (tmp_path / "out" / "probe.md").read_text()
