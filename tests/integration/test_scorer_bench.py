"""`es-rerank bench scorer` against the real OpenSearch node: BM25 candidates written to a file,
then ONNX Runtime and PyTorch timed on them in one run."""

from __future__ import annotations

import json

from es_rerank.data.candidates import natural_key, read_candidates
from es_rerank.cli import main
from es_rerank.data.beir import read_qrels, read_queries
from es_rerank.engine.bm25_query import search_bm25
from tests.conftest import run_cli
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401


def test_candidates_file_holds_the_bm25_top_k(scifact_index, opensearch_url, os_client, data_dir, tmp_path):
    path = tmp_path / "scifact_top5.jsonl.gz"
    result = run_cli("bench", "scorer", "--dataset", str(data_dir / "scifact"), "--index", scifact_index,
                     "--opensearch", opensearch_url, "--queries", "2", "--top-k", "5", "--write-candidates", str(path))
    assert result.returncode == 0, result.stderr
    items = read_candidates(path).windows()
    queries = read_queries(data_dir / "scifact")
    first_judged = [q for q in read_qrels(data_dir / "scifact", "test") if q in queries][:2]
    assert [i.query_id for i in items] == sorted(first_judged, key=natural_key)
    hits = search_bm25(os_client, scifact_index, items[0].query, 5)
    assert list(items[0].doc_ids) == [h.doc_id for h in hits]
    assert list(items[0].docs) == [h.text(("title", "text")) for h in hits]


def test_bench_compares_ort_with_pytorch_in_one_run(minilm_export, scifact_index, opensearch_url, data_dir,
                                                    tmp_path, capsys):
    candidates = tmp_path / "scifact_top8.jsonl"
    run_cli("bench", "scorer", "--dataset", str(data_dir / "scifact"), "--index", scifact_index,
            "--opensearch", opensearch_url, "--queries", "2", "--top-k", "8", "--write-candidates", str(candidates))
    figures_file = tmp_path / "figures.jsonl"
    try:
        main(["bench", "scorer", "--export-dir", str(minilm_export), "--label", "minilm_ce", "--device", "cpu",
              "--candidates", str(candidates), "--synthetic", "2x16", "--rounds", "1", "--threads", "2",
              "--figures", str(figures_file)])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    table = capsys.readouterr().out
    figures = {f["name"]: f for f in map(json.loads, figures_file.read_text().splitlines())}
    for name in ("scorer.cpu.ort_fp32_vs_torch_fp32.minilm_ce.b2_l16",
                 "scorer.cpu.ort_int8_vs_torch_fp32.minilm_ce.scifact_top8",
                 "scorer.cpu.ort_fp32.minilm_ce.scifact_top8.p99_ms",
                 "scorer.cpu.tokenize.minilm_ce.scifact_top8"):
        assert figures[name]["value"] > 0 and name in table
    parity = figures["scorer.cpu.parity.ort_fp32_vs_torch_fp32.minilm_ce.scifact_top8.max_abs_dlogit"]
    assert parity["value"] < 1e-4
    ratio = figures["scorer.cpu.ort_fp32_vs_torch_fp32.minilm_ce.scifact_top8"]
    assert ratio["unit"] == "ratio" and "same run" in ratio["baseline"]
    assert ratio["command"].startswith("es-rerank bench scorer") and ratio["hardware"] and ratio["date"]
