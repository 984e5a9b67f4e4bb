"""`es-rerank bench train-step` end to end on real SciFact pairs, with a tiny model: every side runs
on the same batch, and the figures come out in docs/benchmarks.json's shape (no timing is asserted)."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.support.fine_tuning import write_tiny_bert


def test_the_bench_times_both_steps_on_one_batch_and_writes_the_ratio(data_dir, tmp_path):
    figures = tmp_path / "figures.jsonl"
    result = run_cli("bench", "train-step", "--dataset", str(data_dir / "scifact"), "--base-model",
                     str(write_tiny_bert(tmp_path / "tiny")), "--queries", "2", "--group-size", "4", "--steps", "1",
                     "--rounds", "2", "--warmup", "1", "--num-workers", "0", "--figures", str(figures),
                     env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 pairs per step (pair width: plain 128, ours 128)" in result.stderr  # SciFact pairs fill 128 tokens
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:4]}
    assert set(rows) == {"plain", "ours", "ours+loader"} and rows["plain"][2] == "1.000"
    entries = [json.loads(line) for line in figures.read_text().splitlines()]
    assert [e["name"] for e in entries] == ["training.cpu.step_vs_transformers", "training.cpu.loop_vs_transformers"]
    assert all(e["value"] > 0 and "--rounds 2" in e["command"] and "load average" in e["baseline"] for e in entries)
