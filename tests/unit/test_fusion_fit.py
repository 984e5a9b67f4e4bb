"""Fitting fusion weights: the grid, the dev split, the candidates file, and `fit-fusion` itself."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import yaml

from es_rerank.errors import ConfigError, DatasetError
from es_rerank.scoring.fusion import FusionWeights, fuse, load_weights
from es_rerank.data.candidates import CandidateSet, QueryCandidates, read_candidates, write_candidates
from es_rerank.evaluation.fusion_fit import (NO_HIT, curve_json, curve_table, dev_query_ids, evaluate_systems,
                                             fit_weights, mean_ndcg10, ranking_run, simplex_grid)
from tests.conftest import run_cli


def synthetic(truth: FusionWeights, queries: int = 120, seed: int = 7, keep: tuple[str, ...] = ()
              ) -> tuple[CandidateSet, dict]:
    """Queries whose graded relevant documents are exactly the top 3 under `truth`; the file holds
    bm25, the inputs `truth` weighs and those named in `keep`."""
    rng = np.random.default_rng(seed)
    result, qrels, docs = [], {}, {}
    for q in range(queries):
        ids = [f"d{q}-{i}" for i in range(20)]
        scores = {"bm25": rng.gamma(2.0, 3.0, 20), "ce": rng.normal(0.0, 4.0, 20), "dense": rng.normal(0.4, 0.1, 20)}
        order = np.argsort(-fuse(scores["bm25"], scores["ce"], scores["dense"], truth))
        qrels[str(q)] = {ids[order[0]]: 3, ids[order[1]]: 2, ids[order[2]]: 1}
        wanted = {name: values for name, values in scores.items() if getattr(truth, name) > 0 or name in ("bm25", *keep)}
        result.append(QueryCandidates(str(q), f"query {q}", ids, wanted))
        docs.update({doc_id: f"text of {doc_id}" for doc_id in ids})
    meta = {"dataset": "synthetic", "split": "train", "depth": 20, "fields": ["title", "text"], "models": {}}
    return CandidateSet(meta, docs, result), qrels


def test_the_grid_covers_the_simplex():
    grid = simplex_grid(("ce", "bm25", "dense"), 0.05)
    assert len(grid) == 231  # C(20 + 2, 2)
    assert all(abs(sum(point.values()) - 1.0) < 1e-9 for point in grid)
    assert {"ce": 1.0, "bm25": 0.0, "dense": 0.0} in grid and {"ce": 0.0, "bm25": 0.0, "dense": 1.0} in grid
    assert simplex_grid(("bm25",), 0.1) == [{"bm25": 1.0}]


@pytest.mark.parametrize("step", [0.0, 0.3, 1.5])
def test_a_step_that_does_not_divide_one_is_refused(step):
    with pytest.raises(ConfigError, match="grid step"):
        simplex_grid(("bm25", "dense"), step)


def test_the_dev_split_is_deterministic_and_order_free():
    ids = [str(i) for i in range(2000)]
    dev = dev_query_ids(ids, 0.25)
    assert 0.22 < len(dev) / len(ids) < 0.28
    assert dev == dev_query_ids(list(reversed(ids)), 0.25)
    assert set(dev_query_ids(ids[:1000], 0.25)) == set(dev) & set(ids[:1000])  # membership is per id
    assert set(dev) != set(dev_query_ids(ids, 0.25, salt="other"))
    with pytest.raises(ConfigError, match="dev fraction must be in"):
        dev_query_ids(ids, 0.0)


def test_fit_finds_the_weights_that_made_the_judgments_and_reports_the_curve():
    truth = FusionWeights(ce=0.0, bm25=0.3, dense=0.7, norm="zscore")
    cands, qrels = synthetic(truth)
    result = fit_weights(cands, qrels, ("bm25", "dense"), ("zscore", "minmax"), 0.05)
    assert result.best.weights == truth
    assert result.best.ndcg10 == pytest.approx(1.0)
    assert len(result.curve) == 2 * 21
    assert sorted(p.ndcg10 for p in result.curve)[-2] < 1.0  # the best is unique
    assert result.baselines["bm25"] < result.baselines["dense"] < 1.0
    pure_bm25 = next(p for p in result.curve if p.weights.bm25 == 1.0 and p.weights.norm == "zscore")
    assert pure_bm25.ndcg10 == pytest.approx(result.baselines["bm25"])  # a corner of the curve is BM25 alone

    table = curve_table(result)
    assert table.splitlines()[0].split() == ["norm", "bm25", "dense", "nDCG@10"]
    assert [line for line in table.splitlines() if line.endswith("*")] == ["zscore   0.30  0.70   1.0000 *"]
    data = curve_json(result)
    assert data["best"]["weights"] == truth.as_dict()
    assert len(data["curve"]) == 42 and data["baselines"].keys() == {"bm25", "dense"}


def test_fit_weighs_all_three_inputs_when_asked():
    truth = FusionWeights(ce=0.5, bm25=0.2, dense=0.3)
    cands, qrels = synthetic(truth, queries=80, seed=3)
    result = fit_weights(cands, qrels, None, ("zscore",), 0.1)
    assert result.inputs == ("ce", "bm25", "dense")
    assert result.best.weights == truth
    assert len(result.curve) == 66


def test_fit_refuses_inputs_the_file_lacks():
    cands, qrels = synthetic(FusionWeights(ce=0, bm25=0.5, dense=0.5), queries=5)
    with pytest.raises(ConfigError, match=r"has no ce scores \(it has bm25, dense\)"):
        fit_weights(cands, qrels, ("bm25", "ce"))


def test_ties_in_the_ranking_keep_bm25_order_not_document_id_order():
    cands = CandidateSet({}, {}, [QueryCandidates("1", "q", ["z", "a"], {"bm25": np.array([2.0, 1.0]),
                                                                          "dense": np.array([0.5, 0.5])})])
    run = ranking_run(cands, "dense")
    assert run == {"1": {"z": 2.0, "a": 1.0}}
    assert mean_ndcg10({"1": {"z": 1}}, run) == 1.0


def test_a_query_without_hits_counts_as_zero():
    cands = CandidateSet({}, {}, [QueryCandidates("1", "q", ["a"], {"bm25": np.array([1.0])}),
                                  QueryCandidates("2", "q", [], {"bm25": np.zeros(0)})])
    run = ranking_run(cands, "bm25")
    assert run["2"] == {NO_HIT: 0.0}
    assert mean_ndcg10({"1": {"a": 1}, "2": {"b": 1}}, run) == pytest.approx(0.5)


def test_systems_below_bm25_are_flagged():
    cands, qrels = synthetic(FusionWeights(ce=0, bm25=1.0), queries=30, keep=("dense",))
    scores = {s.system: s for s in evaluate_systems(cands, qrels, {"rerank_fused": FusionWeights(ce=0, bm25=0.5,
                                                                                                dense=0.5)})}
    assert scores["bm25"].ndcg10 == pytest.approx(1.0) and not scores["bm25"].below_bm25
    assert scores["dense"].below_bm25 and scores["rerank_fused"].below_bm25
    assert scores["dense"].delta_vs_bm25 == pytest.approx(scores["dense"].ndcg10 - 1.0)


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz"])
def test_a_candidates_file_round_trips_exactly(tmp_path, name):
    cands, _ = synthetic(FusionWeights(ce=0, bm25=0.5, dense=0.5), queries=3)
    cands.queries[0].scores["dense"] = cands.queries[0].scores["dense"].astype(np.float32).astype(np.float64)
    write_candidates(cands, tmp_path / name)
    back = read_candidates(tmp_path / name)
    assert back.inputs() == ("bm25", "dense")
    assert back.docs == cands.docs
    assert back.meta["dataset"] == "synthetic" and back.meta["queries"] == 3
    for mine, theirs in zip(cands.queries, back.queries):
        assert (mine.query_id, mine.text, mine.doc_ids) == (theirs.query_id, theirs.text, theirs.doc_ids)
        for key in mine.scores:
            assert np.array_equal(mine.scores[key], theirs.scores[key])


def test_broken_candidates_files_say_what_is_wrong(tmp_path):
    cands, _ = synthetic(FusionWeights(ce=0, bm25=1), queries=2)
    good = tmp_path / "c.jsonl"
    write_candidates(cands, good)
    lines = good.read_text().splitlines()

    not_ours = tmp_path / "other.jsonl"
    not_ours.write_text('{"_id": "1", "text": "a query"}\n')
    with pytest.raises(DatasetError, match="is not an es-rerank-candidates v1 file"):
        read_candidates(not_ours)

    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text("\n".join(line for line in lines if '"type": "doc"' not in line) + "\n")
    with pytest.raises(DatasetError, match="candidate.s. without text"):
        read_candidates(no_text)

    short = tmp_path / "short.jsonl"
    query = json.loads(lines[-1])
    query["scores"]["bm25"] = query["scores"]["bm25"][:-1]
    short.write_text("\n".join([*lines[:-1], json.dumps(query)]) + "\n")
    with pytest.raises(DatasetError, match="bm25 scores must be 20 finite numbers"):
        read_candidates(short)

    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(gzip.compress(good.read_bytes())[:200])
    with pytest.raises(DatasetError, match="cannot read"):
        read_candidates(truncated)


def test_fit_fusion_writes_a_recipe_the_proxy_can_load_and_the_curve(tmp_path):
    truth = FusionWeights(ce=0.0, bm25=0.3, dense=0.7)
    cands, qrels = synthetic(truth, queries=60)
    cands.meta.update(subset={"kind": "dev", "fraction": 0.25}, history=["es-rerank fusion-candidates x"],
                      models={"dense": "sentence-transformers/all-MiniLM-L6-v2"})
    write_candidates(cands, tmp_path / "dev.jsonl.gz")
    (tmp_path / "qrels.tsv").write_text("".join(f"{q}\t{d}\t{g}\n" for q, docs in qrels.items()
                                                for d, g in docs.items()))
    result = run_cli("fit-fusion", str(tmp_path / "dev.jsonl.gz"), "--qrels", str(tmp_path / "qrels.tsv"),
                     "--norm", "zscore", "--step", "0.1", "--out", str(tmp_path / "w.yaml"),
                     "--curve", str(tmp_path / "curve.json"))
    assert result.returncode == 0, result.stderr
    assert "zscore   0.30  0.70   1.0000 *" in result.stdout
    assert load_weights(tmp_path / "w.yaml") == truth
    recipe = yaml.safe_load((tmp_path / "w.yaml").read_text())
    assert recipe["fitted_on"]["split"] == "train" and recipe["fitted_on"]["queries"] == 60
    assert recipe["fitted_on"]["models"] == {"dense": "sentence-transformers/all-MiniLM-L6-v2"}
    assert recipe["reproduce"][0] == "es-rerank fusion-candidates x"
    assert recipe["reproduce"][-1].startswith("es-rerank fit-fusion dev.jsonl.gz --qrels qrels.tsv --inputs bm25,dense")
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert len(curve["curve"]) == 11 and curve["best"]["ndcg10"] == 1.0


def test_fit_fusion_refuses_test_judgments(tmp_path):
    cands, qrels = synthetic(FusionWeights(ce=0, bm25=1), queries=3)
    cands.meta["split"] = "test"
    write_candidates(cands, tmp_path / "test.jsonl")
    (tmp_path / "qrels.tsv").write_text("1\td1-0\t1\n")
    result = run_cli("fit-fusion", str(tmp_path / "test.jsonl"), "--qrels", str(tmp_path / "qrels.tsv"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "test split" in result.stderr
    assert "hint: make candidates of a train split with --dev-fraction" in result.stderr


def test_query_ids_come_from_lines_a_json_list_or_a_training_log(tmp_path):
    from es_rerank.cli.fusion_cmd import read_query_ids

    (tmp_path / "ids.txt").write_text("3\n17\n\n")
    (tmp_path / "ids.json").write_text('["3", 17]')
    (tmp_path / "log.json").write_text('{"dev_queries": 2, "dev_qids": ["3", "17"]}')
    for name in ("ids.txt", "ids.json", "log.json"):
        assert read_query_ids(tmp_path / name) == {"3", "17"}
    (tmp_path / "bad.json").write_text('{"dev_queries": 2}')
    with pytest.raises(DatasetError, match="holds no list of ids"):
        read_query_ids(tmp_path / "bad.json")
