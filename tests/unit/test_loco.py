"""The leave-one-collection-out lab (lab/gpu/loco_*): which groups each training gets, which
training scores each collection, the three headline figures, and the carry's refusals."""

from __future__ import annotations

import gzip
import json

import pytest

from es_rerank.data.beir import iter_corpus_docs, read_qrels
from es_rerank.data.mining import Group
from es_rerank.data.mixture import MixtureSource, mix_sources
from es_rerank.errors import DatasetError
from lab.gpu.loco_carry import make_carry
from lab.gpu.loco_gpu import groups_of, headline, loco_table


@pytest.fixture()
def carried_mix(data_dir, tmp_path):
    """A real mixture of MED and ADI groups, with its groups file un-gzipped as the carry holds it."""
    sources = []
    for name in ("med", "adi"):
        qrels = read_qrels(data_dir / name, "test")
        doc_ids = [d for d, _ in iter_corpus_docs(data_dir / name)]
        groups = [Group(q, tuple(sorted(qrels[q])), tuple(d for d in doc_ids if d not in qrels[q])[:4])
                  for q in list(qrels)[:3]]
        path = tmp_path / f"{name}.groups.jsonl"
        path.write_text("".join(g.to_json() + "\n" for g in groups), encoding="utf-8")
        sources.append(MixtureSource(name, data_dir / name, path))
    mix = tmp_path / "mix"
    mix_sources(sources, mix, neg_depth=4)
    (mix / "groups.jsonl").write_bytes(gzip.decompress((mix / "groups.jsonl.gz").read_bytes()))
    return mix


def test_a_training_gets_only_its_collections_groups(carried_mix, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert groups_of(carried_mix, ("med", "adi"), work) == carried_mix / "groups.jsonl"
    with gzip.open(groups_of(carried_mix, ("med",), work), "rt", encoding="utf-8") as kept:
        qids = [json.loads(line)["qid"] for line in kept]
    assert len(qids) == 3 and all(q.startswith("med:") for q in qids)
    with pytest.raises(SystemExit, match="no groups of squad"):
        groups_of(carried_mix, ("squad",), work)


def figures(bm25: float, ce: float, served: float, fused: float) -> dict[str, float]:
    return {"bm25": bm25, "dense": 0.0, "adapted": ce, "adapted_fused_dense": served, "bm25_dense_fused": fused,
            "bm25_dense_zscore": fused - 0.01}


def test_each_collection_is_scored_by_a_training_that_left_it_out_and_the_headline_is_over_seeds():
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        runs += [
            {"training": "mix", "seed": seed, "figures": {
                "scifact-test": figures(0.6, 0.9, 0.80 + shift, 0.7),  # trained on: not a LOCO row
                "med-test": figures(0.5, 0.45 + shift, 0.60, 0.55)}},
            {"training": "squad-only", "seed": seed, "figures": {
                "scifact-test": figures(0.6, 0.55 + shift, 0.72, 0.7),
                "med-test": figures(0.5, 0.0, 0.0, 0.55)}},
            {"training": "scifact-only", "seed": seed, "figures": {"squad-dev": figures(0.8, 0.7, 0.85, 0.84)}}]
    table = loco_table(runs)
    assert {n: row["training"] for n, row in table.items()} == {
        "scifact-test": "squad-only", "squad-dev": "scifact-only", "med-test": "mix"}
    figures_out = headline(runs, table)
    minimum = figures_out["quality.loco.ce_minus_bm25.min"]  # seed 0: min(-0.05, -0.05, -0.1); seed 1: min(-0.03, -0.03, -0.1)
    assert minimum["n"] == 2 and minimum["mean"] == pytest.approx(((-0.1) + (-0.1)) / 2)
    served = figures_out["quality.loco.served_minus_bm25_dense.mean"]  # (0.02 + 0.01 + 0.05) / 3 each seed
    assert served["mean"] == pytest.approx(0.08 / 3) and served["sd"] == pytest.approx(0.0)
    scifact = figures_out["quality.scifact_test.served.ndcg10"]  # the mix model's, in domain
    assert scifact["mean"] == pytest.approx(0.81) and scifact["n"] == 2


def test_the_carry_refuses_an_unknown_evaluation_set_and_an_existing_folder(carried_mix, data_dir, tmp_path):
    with pytest.raises(DatasetError, match="unknown evaluation sets") as unknown:
        make_carry(carried_mix, tmp_path, data_dir, tmp_path, tmp_path / "carry", ["msmarco-dev"])
    assert "med-test" in unknown.value.hint
    (tmp_path / "taken").mkdir()
    with pytest.raises(DatasetError, match="exists"):
        make_carry(carried_mix, tmp_path, data_dir, tmp_path, tmp_path / "taken", ["med-test"])
    with pytest.raises(DatasetError, match="no candidates") as missing:
        make_carry(carried_mix, tmp_path / "no-cands", data_dir, tmp_path, tmp_path / "carry", ["med-test"])
    assert "fusion-candidates" in missing.value.hint
    assert not (tmp_path / "carry").exists()  # nothing half-written is left behind
