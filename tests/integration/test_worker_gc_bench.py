"""lab.bench.worker_gc: the collector's pauses over a worker's host path, on a replay file."""

import gc
import json

from lab.bench.worker_gc import CollectionTimer, measure
from lab.proxy_bench.replay import FORMAT, ReplayEntry
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)


def test_a_forced_collection_is_timed_with_its_generation():
    timer = CollectionTimer()
    gc.callbacks.append(timer)
    try:
        gc.collect(1)
    finally:
        gc.callbacks.remove(timer)
    assert [generation for generation, _ in timer.pauses] == [1] and timer.pauses[0][1] >= 0


def test_every_search_after_the_first_pass_is_timed(minilm_export, tmp_path):  # noqa: F811
    hits = [{"_index": "i", "_id": str(k), "_score": 1.0 / (k + 1), "_source": {"title": f"t{k}", "text": "cell " * k}}
            for k in range(20)]
    response = json.dumps({"took": 1, "hits": {"total": {"value": 20}, "max_score": 1.0, "hits": hits}})
    entries = [ReplayEntry("POST", "/i/_search", "{}", 200, "application/json", response, "/i/_search",
                           json.dumps({"query": {"match": {"text": f"query {n}"}}})) for n in range(3)]
    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join([json.dumps({"format": FORMAT})] + [json.dumps(e.__dict__) for e in entries]) + "\n")
    figures = measure(minilm_export, replay, passes=3)
    assert figures["searches_timed"] == 6
    assert 0 <= figures["searches_with_a_pause"] <= 6 and figures["pause_ms_max"] >= figures["pause_ms_p99"] >= 0
