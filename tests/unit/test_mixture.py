"""`es-rerank mix`: several collections' groups merged into one training set, on the shared data."""

from __future__ import annotations

import json

import pytest

from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries
from es_rerank.data.mining import Group, read_groups
from es_rerank.data.mixture import MixtureSource, mix_sources
from es_rerank.errors import ConfigError, DatasetError
from tests.conftest import run_cli


def write_groups(path, groups):
    path.write_text("".join(g.to_json() + "\n" for g in groups), encoding="utf-8")
    return path


@pytest.fixture()
def two_sources(data_dir, tmp_path):
    """Real groups shapes over two real collections: judged positives and other documents as negatives."""
    sources = []
    for name in ("med", "adi"):
        folder = data_dir / name
        qrels = read_qrels(folder, "test")
        doc_ids = [d for d, _ in iter_corpus_docs(folder)]
        groups = []
        for qid in list(qrels)[:4]:
            positives = tuple(sorted(qrels[qid]))
            negatives = tuple(d for d in doc_ids if d not in qrels[qid])[:6]
            groups.append(Group(qid, positives, negatives))
        groups.append(Group("no-such-query", (doc_ids[0],), (doc_ids[1],)))
        sources.append(MixtureSource(name, folder, write_groups(tmp_path / f"{name}.groups.jsonl", groups)))
    return sources


def test_the_mixture_prefixes_every_id_and_keeps_only_the_documents_its_groups_name(two_sources, data_dir, tmp_path):
    record = mix_sources(two_sources, tmp_path / "mix", neg_depth=3)
    out = tmp_path / "mix"
    groups = read_groups(out / "groups.jsonl.gz")
    assert [s["groups"] for s in record["sources"]] == [4, 4]
    assert [s["dropped_no_query_text"] for s in record["sources"]] == [1, 1]
    assert {g.qid.split(":")[0] for g in groups} == {"med", "adi"}
    assert all(len(g.negatives) == 3 for g in groups)
    corpus = {doc_id: doc for doc_id, doc in iter_corpus_docs(out)}
    named = {d for g in groups for d in (*g.positives, *g.negatives)}
    assert set(corpus) == named and record["documents"] == len(named)
    med_docs = {doc_id: doc for doc_id, doc in iter_corpus_docs(data_dir / "med")}
    some = next(d for d in named if d.startswith("med:"))
    assert corpus[some].text == med_docs[some.removeprefix("med:")].text
    queries = read_queries(out)
    med_queries = read_queries(data_dir / "med")
    assert {q: queries[q] for q in queries if q.startswith("med:")} == {
        f"med:{g.qid.removeprefix('med:')}": med_queries[g.qid.removeprefix("med:")] for g in groups
        if g.qid.startswith("med:")}
    qrels = read_qrels(out, "train")
    assert {q: set(j) for q, j in qrels.items()} == {g.qid: set(g.positives) for g in groups}
    stored = json.loads((out / "MIXTURE.json").read_text())
    assert stored == record and set(stored["sha256"]) == {"corpus.jsonl.gz", "queries.jsonl.gz", "groups.jsonl.gz",
                                                          "qrels/train.tsv"}


def test_the_same_inputs_give_the_same_bytes(two_sources, tmp_path):
    first = mix_sources(two_sources, tmp_path / "a")
    second = mix_sources(two_sources, tmp_path / "b")
    assert first["sha256"] == second["sha256"]


def test_a_folder_with_files_is_refused_and_left_as_it_was(two_sources, tmp_path):
    out = tmp_path / "mix"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty folder"):
        mix_sources(two_sources, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("names, message", [(("med", "med"), "given twice"), (("me:d", "adi"), "no ':'"),
                                            (("", "adi"), "must be letters")])
def test_bad_source_names_are_refused_before_anything_is_written(two_sources, tmp_path, names, message):
    sources = [MixtureSource(n, s.dataset, s.groups) for n, s in zip(names, two_sources)]
    with pytest.raises(ConfigError, match=message):
        mix_sources(sources, tmp_path / "mix")
    assert not (tmp_path / "mix").exists()


def test_groups_from_another_collection_fail_cleanly_and_leave_nothing_behind(two_sources, data_dir, tmp_path):
    wrong = [two_sources[0], MixtureSource("adi", data_dir / "scifact", two_sources[1].groups)]
    with pytest.raises(DatasetError, match="none of the groups in adi.groups.jsonl can be used"):
        mix_sources(wrong, tmp_path / "mix")
    assert list(tmp_path.glob("*mix*")) == []


def test_the_mix_command_writes_what_train_reads(two_sources, tmp_path):
    args = [a for s in two_sources for a in ("--source", s.name, str(s.dataset), str(s.groups))]
    done = run_cli("mix", *args, "--out", str(tmp_path / "mix"))
    assert done.returncode == 0, done.stderr
    assert "wrote 8 groups" in done.stdout and "1 groups dropped" in done.stdout
    again = run_cli("mix", *args, "--out", str(tmp_path / "mix"))
    assert again.returncode != 0 and "not an empty folder" in again.stderr and "hint:" in again.stderr

    from es_rerank.training.data import prepare_groups

    groups = read_groups(tmp_path / "mix" / "groups.jsonl.gz")
    kept, report = prepare_groups(groups, {d for d, _ in iter_corpus_docs(tmp_path / "mix")},
                                  read_queries(tmp_path / "mix"), neg_depth=100)
    assert len(kept) == 8 and not report.describe()
