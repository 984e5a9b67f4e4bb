"""The proxy benchmarks run end to end on tiny settings (their figures are recorded by running them, not here)."""

import json
from dataclasses import replace

import requests

from es_rerank.proxy.settings import BatchSettings, IndexRule
from es_rerank.data.beir import read_queries
from lab.proxy_bench.benchmark import rerank_benchmark, replay_upstream, thread_proxy
from lab.proxy_bench.replay import load_replay, record_replay
from tests.conftest import run_cli
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401
from tests.proxy_support import TermOverlapScorer, running_proxy, settings_for


def test_recorded_replay_serves_what_opensearch_served(opensearch_url, scifact_index, data_dir, tmp_path):
    texts = list(read_queries(data_dir / "scifact").values())[:4]
    replay_file = tmp_path / "replay.jsonl"
    assert record_replay(opensearch_url, scifact_index, texts, replay_file, window=50) == 4
    replay = load_replay(replay_file)
    assert replay.header["window"] == 50 and len(replay.searches) == 4
    entry = replay.searches[0]
    with replay_upstream(replay_file) as upstream:
        rule = IndexRule(scifact_index, window=50)
        with running_proxy(settings_for(upstream, rule), TermOverlapScorer()) as via_replay, \
                running_proxy(settings_for(opensearch_url, rule), TermOverlapScorer()) as via_node:
            pages = [requests.post(p.url + entry.client_path, data=entry.client_body,
                                   headers={"Content-Type": "application/json"}) for p in (via_replay, via_node)]
        unknown = requests.post(upstream + entry.path_qs, data=b'{"size": 1}', headers={"Content-Type": "application/json"})
    assert pages[0].headers["X-Rerank"] == pages[1].headers["X-Rerank"] == "reranked"
    assert [h["_id"] for h in pages[0].json()["hits"]["hits"]] == [h["_id"] for h in pages[1].json()["hits"]["hits"]]
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "resource_not_found_exception"


def test_rerank_benchmark_runs_against_a_replay_with_any_scorer(opensearch_url, scifact_index, data_dir, tmp_path):
    texts = list(read_queries(data_dir / "scifact").values())[:3]
    replay_file = tmp_path / "replay.jsonl.gz"
    record_replay(opensearch_url, scifact_index, texts, replay_file, window=100)

    def launcher_for(batching):
        def settings(upstream):
            return replace(settings_for(upstream, IndexRule(scifact_index, window=100, deadline_ms=30000)),
                           batch=BatchSettings(cross_request=batching))
        return thread_proxy(settings, TermOverlapScorer())

    figures = rerank_benchmark(replay_file, launcher_for, clients=4, duration_s=0.5, rounds=1, warmup_s=0.2,
                               latency_duration_s=0.5, rates=(20,))
    assert figures["candidates"] == 100
    at_20 = figures["open_loop_rps"]["20"]  # 20 searches a second for 0.5 s, whatever comes back
    assert at_20["due"] == 10 and at_20["answered"] == at_20["ok_2xx"] == 10 and not at_20["skipped"]
    assert at_20["x_rerank"] == {"reranked": 10} and at_20["p99_ms"] >= at_20["p50_ms"] > 0
    assert at_20["statuses"] == {"200": 10}
    stages = figures["one_client_stage_means_ms"]  # the proxy's own account of the one-client searches
    assert {"upstream", "queue", "score", "rewrite", "total"} <= set(stages)  # this scorer does not tokenize
    assert stages["total"] >= max(stages["upstream"], stages["score"], stages["rewrite"]) > 0
    assert figures["rps_batched"] > 0 and figures["rps_unbatched"] > 0
    assert set(figures["one_client"]["proxy"]["x_rerank"]) == {"reranked"}
    assert figures["one_client"]["direct"]["errors"] == 0
    assert isinstance(figures["added_p99_ms_1client"], float)


def test_passthrough_benchmark_command_runs(opensearch_url, scifact_index, data_dir):
    result = run_cli("bench", "proxy", "passthrough", str(data_dir / "scifact"), "--index", scifact_index,
                     "--opensearch", opensearch_url, "--clients", "2", "--duration-s", "0.3", "--rounds", "1",
                     timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["throughput_ratio"] > 0 and "added_p50_ms" in figures
    assert figures["one_client"]["proxy"]["errors"] == 0 and figures["one_client"]["proxy"]["requests"] > 0


def test_the_sentence_transformers_baseline_reranks_as_the_proxy_and_is_measured_beside_it(
        opensearch_url, scifact_index, data_dir, tmp_path, one_logit_checkpoint, minilm_export):
    from es_rerank.scoring.cross_encoder import OnnxScorer
    from lab.proxy_bench.st_baseline import baseline_launcher
    from tests.fixtures_export import MAX_LENGTH

    texts = list(read_queries(data_dir / "scifact").values())[:2]
    replay_file = tmp_path / "replay.jsonl.gz"
    record_replay(opensearch_url, scifact_index, texts, replay_file, window=20)
    entry = load_replay(replay_file).searches[0]
    scorer = OnnxScorer.load(minilm_export, device="cpu", variant="fp32")  # the checkpoint's own precision
    rule = IndexRule(scifact_index, window=20, deadline_ms=60000)

    def launcher_for(batching):
        def settings(upstream):
            return replace(settings_for(upstream, rule), batch=BatchSettings(cross_request=batching))
        return thread_proxy(settings, scorer)

    baseline = baseline_launcher(one_logit_checkpoint, "cpu", MAX_LENGTH, 20, ("title", "text"))
    with replay_upstream(replay_file) as upstream:
        with baseline(upstream) as baseline_url, running_proxy(settings_for(upstream, rule), scorer) as proxy:
            pages = [requests.post(url + entry.client_path, data=entry.client_body,
                                   headers={"Content-Type": "application/json"}).json()
                     for url in (baseline_url, proxy.url)]
    ids = [[hit["_id"] for hit in page["hits"]["hits"]] for page in pages]
    assert len(ids[0]) == 10 and ids[0] == ids[1]  # same checkpoint, same window: the same page
    figures = rerank_benchmark(replay_file, launcher_for, clients=2, duration_s=0.6, rounds=1, warmup_s=0.2,
                               latency_duration_s=0.6, baseline=baseline)
    # Rounds this short may count no whole request on a loaded CPU: check the shape, not the speed.
    assert "vs_sentence_transformers" in figures
    for load in (figures["2_clients_vs_baseline"], figures["one_client_vs_baseline"]):
        assert load["proxy"]["errors"] == load["baseline"]["errors"] == 0
        assert set(load["proxy"]["x_rerank"]) <= {"reranked"}
