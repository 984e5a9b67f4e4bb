"""`es-rerank mine` and `bm25-run` against the real node, on a few SciFact train queries."""

from __future__ import annotations

import itertools
import json

import pytest

from es_rerank.data.beir import read_qrels, read_queries, relevant
from es_rerank.data.mining import TIE_MARGIN, mine_groups, read_groups, read_run, score_then_id
from es_rerank.engine.bm25_query import search_bm25
from tests.conftest import run_cli

N_QUERIES = 12


@pytest.fixture(scope="module")
def train_subset(data_dir):
    queries = read_queries(data_dir / "scifact")
    qrels = read_qrels(data_dir / "scifact", "train")
    return queries, dict(itertools.islice(qrels.items(), N_QUERIES))


def test_groups_hold_judged_positives_and_bm25_ranked_negatives(os_client, scifact_index, train_subset, tmp_path):
    queries, qrels = train_subset
    report = mine_groups(os_client, scifact_index, queries, qrels, 50, tmp_path / "g.jsonl")
    groups = read_groups(tmp_path / "g.jsonl")
    assert report.written == len(groups) == N_QUERIES and not report.no_positive_in_corpus
    for group in groups:
        positives = relevant(qrels, group.qid)
        assert set(group.positives) == positives
        assert not set(group.negatives) & positives
        served = search_bm25(os_client, scifact_index, queries[group.qid], 50 + TIE_MARGIN, source=False)
        assert list(group.negatives) == [h.doc_id for h in score_then_id(served)[:50] if h.doc_id not in positives]


def test_two_indexes_of_one_corpus_loaded_in_opposite_orders_give_the_same_groups(os_client, tmp_path):
    # Documents 00..11 share one text, so BM25 ties them; the engine orders ties by load order.
    tied = [{"_id": f"{i:02d}", "title": "", "text": "statins lower cholesterol in adults"} for i in range(12)]
    other = [{"_id": "x1", "title": "", "text": "statins and muscle pain"}, {"_id": "x2", "title": "", "text": "bees"}]
    docs = tied + other
    groups = []
    for order, name in ((docs, "test-mine-ties-forward"), (docs[::-1], "test-mine-ties-reverse")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in order))
        from es_rerank.data.indexing import index_corpus

        index_corpus(os_client, folder, name, recreate=True)
        os_client.indices.refresh(index=name)
        out = tmp_path / f"{name}.jsonl"
        mine_groups(os_client, name, {"q": "statins cholesterol"}, {"q": {"x1": 1}}, 5, out)
        groups.append(read_groups(out))
        os_client.indices.delete(index=name)
    assert groups[0] == groups[1]
    assert list(groups[0][0].negatives) == ["00", "01", "02", "03", "04"]  # the cut of the tie, by id


def test_an_interrupted_file_is_resumed_without_repeating_queries(os_client, scifact_index, train_subset, tmp_path):
    queries, qrels = train_subset
    out = tmp_path / "g.jsonl"
    first = dict(itertools.islice(qrels.items(), 5))
    mine_groups(os_client, scifact_index, queries, first, 20, out)
    with open(out, "a", encoding="utf-8") as handle:  # a write cut short by an interruption
        handle.write('{"qid":"' + list(qrels)[6] + '","pos":["1"],"neg":["2", "3')
    report = mine_groups(os_client, scifact_index, queries, qrels, 20, out)
    assert report.truncated_tail and report.already_done == 5 and report.written == N_QUERIES - 5
    qids = [g.qid for g in read_groups(out)]
    assert sorted(qids) == sorted(qrels) and len(qids) == len(set(qids))
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_queries_without_a_positive_in_the_index_or_without_negatives_are_reported(
        os_client, scifact_index, train_subset, tmp_path):
    queries, qrels = train_subset
    qid_missing, qid_only_positive = list(qrels)[:2]
    top = search_bm25(os_client, scifact_index, queries[qid_only_positive], 1, source=False)[0].doc_id
    odd_qrels = {qid_missing: {"no-such-document": 1}, qid_only_positive: {top: 1}}
    report = mine_groups(os_client, scifact_index, queries, odd_qrels, 1, tmp_path / "g.jsonl")
    assert report.no_positive_in_corpus == [qid_missing]
    assert report.no_negatives == [qid_only_positive]
    assert [g.qid for g in read_groups(tmp_path / "g.jsonl")] == [qid_only_positive]


def test_mine_and_bm25_run_commands(os_client, scifact_index, data_dir, opensearch_url, tmp_path):
    qrels = tmp_path / "qrels.tsv"
    subset = list(itertools.islice(read_qrels(data_dir / "scifact", "train").items(), 4))
    qrels.write_text("".join(f"{q}\t{d}\t{g}\n" for q, judged in subset for d, g in judged.items())
                     + "999999\tno-such-document\t1\n")
    mined = run_cli("mine", "--index", scifact_index, "--queries", str(data_dir / "scifact"), "--qrels", str(qrels),
                    "--depth", "30", "--out", str(tmp_path / "g.jsonl"), "--opensearch", opensearch_url)
    assert mined.returncode == 0, mined.stderr
    assert "wrote 4 groups" in mined.stdout
    assert "999999" in mined.stderr  # judged query with no text in the queries file
    ran = run_cli("bm25-run", "--index", scifact_index, "--queries", str(data_dir / "scifact"),
                  "--qrels", str(data_dir / "scifact"), "--split", "test", "--depth", "7",
                  "--out", str(tmp_path / "run.tsv.gz"), "--opensearch", opensearch_url)
    assert ran.returncode == 0, ran.stderr
    run = read_run(tmp_path / "run.tsv.gz")
    assert len(run) == len(read_qrels(data_dir / "scifact", "test"))
    assert all(len(hits) <= 7 for hits in run.values())
    qid, hits = next(iter(run.items()))
    text = read_queries(data_dir / "scifact")[qid]
    assert [h.doc_id for h in hits] == [h.doc_id for h in search_bm25(os_client, scifact_index, text, 7)]


def test_max_queries_mines_a_hashed_sample_that_resumes_and_grows_consistently(
        os_client, scifact_index, data_dir, tmp_path):
    queries = read_queries(data_dir / "scifact")
    qrels = read_qrels(data_dir / "scifact", "train")
    out = tmp_path / "g.jsonl"
    mine_groups(os_client, scifact_index, queries, qrels, 5, out, max_queries=3)
    first = [g.qid for g in read_groups(out)]
    assert len(first) == 3 and set(first) <= set(qrels)
    again = mine_groups(os_client, scifact_index, queries, qrels, 5, out, max_queries=3)
    assert again.written == 0 and again.already_done == 3
    grown = mine_groups(os_client, scifact_index, queries, qrels, 5, out, max_queries=6)
    qids = [g.qid for g in read_groups(out)]
    assert grown.written == 3 and len(set(qids)) == 6 and qids[:3] == first
    other = mine_groups(os_client, scifact_index, queries, qrels, 5, tmp_path / "h.jsonl", max_queries=3,
                        sample_salt="another")
    assert other.written == 3 and {g.qid for g in read_groups(tmp_path / "h.jsonl")} != set(first)


def test_mine_refuses_a_max_queries_below_one(scifact_index, data_dir, opensearch_url, tmp_path):
    done = run_cli("mine", "--index", scifact_index, "--queries", str(data_dir / "scifact"), "--qrels",
                   str(data_dir / "scifact"), "--max-queries", "0", "--out", str(tmp_path / "g.jsonl"),
                   "--opensearch", opensearch_url)
    assert done.returncode == 2 and "--max-queries" in done.stderr and not (tmp_path / "g.jsonl").exists()
