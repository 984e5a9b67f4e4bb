"""lab.bench.window_host: a search's host work timed in two builds' processes on the same searches."""

import json
from pathlib import Path

import pytest

import es_rerank
from lab.bench.window_host import STAGES, compare, main
from lab.proxy_bench.replay import FORMAT, ReplayEntry
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)


def write_replay(path: Path, searches: int) -> None:
    hits = [{"_index": "i", "_id": str(k), "_score": 1.0 / (k + 1), "_source": {"title": f"t{k}", "text": "cell " * k}}
            for k in range(20)]
    response = json.dumps({"took": 1, "hits": {"total": {"value": 20}, "max_score": 1.0, "hits": hits}})
    entries = [ReplayEntry("POST", "/i/_search", "{}", 200, "application/json", response, "/i/_search",
                           json.dumps({"query": {"match": {"text": f"query {n}"}}})) for n in range(searches)]
    path.write_text("\n".join([json.dumps({"format": FORMAT})] + [json.dumps(e.__dict__) for e in entries]) + "\n")


def test_two_builds_pad_the_same_batches_and_every_stage_is_timed(minilm_export, tmp_path):  # noqa: F811
    other = tmp_path / "other-build"  # this package as if it were another build's tree: what --against-tree names
    other.mkdir()
    (other / "es_rerank").symlink_to(Path(es_rerank.__file__).parent)
    replay = tmp_path / "replay.jsonl"
    write_replay(replay, 3)
    figures = compare(minilm_export, other, replay, count=3, passes=1, rounds=2)
    assert figures["searches"] == 3 and len(figures["sha256"]) == 64
    for side in ("current", "against"):
        assert all(figures["ms_per_search"][side][stage] > 0 for stage in STAGES)
    assert set(figures["speedup_over_against"]) == set(STAGES)


def test_a_tree_without_the_package_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--export", str(tmp_path), "--against-tree", str(tmp_path)])
    assert "has no es_rerank folder" in capsys.readouterr().err
