"""Pseudo-queries from documents, and the torch-free pieces of `es-rerank adapt` that handle them:
the prepared groups file, the teacher, the step sampler and the recipe."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

from es_rerank.data.beir import iter_corpus_docs
from es_rerank.errors import ConfigError, DatasetError
from es_rerank.scoring.fusion import FusionWeights
from es_rerank.data.pseudo_queries import (PseudoQuerySettings, SourceDocument, make_pseudo_queries, pseudo_queries_of,
                                      split_sentences, word_count)
from es_rerank.training.adapt_config import AdaptConfig, read_adapt_recipe
from es_rerank.training.adapt_groups import (AdaptGroups, PseudoGroup, read_adapt_groups, write_adapt_groups)
from es_rerank.training.sampling import TrainingUnit, UnitSampler
from es_rerank.training.adapt_teacher import teacher_scores
from tests.conftest import REPO


@pytest.fixture(scope="module")
def cranfield_docs(data_dir) -> list[SourceDocument]:
    """The first 300 Cranfield documents, as the index would hand them over."""
    docs = []
    for doc_id, doc in iter_corpus_docs(data_dir / "cranfield"):
        docs.append(SourceDocument.from_source(doc_id, {"title": doc.title, "text": doc.text}, ("title", "text")))
        if len(docs) == 300:
            break
    return docs


def test_generation_is_deterministic_per_seed_and_ignores_document_order(cranfield_docs):
    settings = PseudoQuerySettings(ict_per_doc=2, seed=3)
    first = make_pseudo_queries(cranfield_docs, settings, max_queries=400)
    shuffled = list(cranfield_docs)
    random.Random(1).shuffle(shuffled)
    again = make_pseudo_queries(shuffled, settings, max_queries=400)
    assert first == again
    assert len(first) == 400
    assert {q.source for q in first} == {"title", "first", "ict"}

    other_seed = make_pseudo_queries(cranfield_docs, PseudoQuerySettings(ict_per_doc=2, seed=4), max_queries=400)
    ict = {q.qid: q.text for q in first if q.source == "ict"}
    ict_other = {q.qid: q.text for q in other_seed if q.source == "ict"}
    assert ict != ict_other  # another seed draws other sentences and another subset
    whole = {"sources": ("title",), "max_words": 200}  # no window: a title is a title whatever the seed
    titles = {q.doc_id: q.text for q in make_pseudo_queries(cranfield_docs, PseudoQuerySettings(**whole))}
    titles_other = {q.doc_id: q.text for q in make_pseudo_queries(cranfield_docs, PseudoQuerySettings(**whole, seed=9))}
    assert titles == titles_other


def test_the_query_text_is_cut_out_of_its_own_document(cranfield_docs):
    queries = make_pseudo_queries(cranfield_docs, PseudoQuerySettings(ict_per_doc=2, max_words=200))
    assert queries
    by_id = {d.doc_id: d for d in cranfield_docs}
    for query in queries:
        doc = by_id[query.doc_id]
        assert query.text in f"{doc.title} {doc.body}"
        # Cranfield bodies repeat their titles; neither copy may stay in a title query's positive.
        assert query.text not in query.positive_text, query.qid
        assert word_count(query.positive_text) >= 10


def test_positives_keep_the_served_layout_but_title_queries_lose_both_titles(cranfield_docs):
    queries = make_pseudo_queries(cranfield_docs, PseudoQuerySettings(ict_per_doc=2, max_words=200))
    by_id = {d.doc_id: d for d in cranfield_docs}
    checked = 0
    for query in queries:
        doc = by_id[query.doc_id]
        if not doc.title or not doc.body.lower().startswith(doc.title.lower()):
            continue
        if query.source == "title":
            assert doc.title.lower() not in query.positive_text.lower()
        else:  # served text is "title title-repeat body": so is the positive, less the query
            assert query.positive_text.lower().startswith(f"{doc.title} {doc.title}".lower())
            checked += 1
    assert checked > 100


def test_limits_drop_short_queries_and_window_long_ones():
    body = "short one . " + " ".join(f"w{i}" for i in range(60)) + " . closing sentence that is long enough here ."
    doc = SourceDocument("9", "a title of five words", body)
    settings = PseudoQuerySettings(min_words=3, max_words=10, ict_per_doc=5)
    made = pseudo_queries_of(doc, ("first", "ict"), seed=0, settings=settings)
    assert [q.source for q in made] == ["ict", "ict"]  # "short one ." is too short to be the first
    long_one = [q for q in made if q.text.startswith("w") or " w" in q.text][0]
    assert word_count(long_one.text) == 10
    assert long_one.text in body


def test_sentences_split_after_full_stops_only_before_white_space():
    assert split_sentences("flow at mach 2.5 was seen . it fell. Then? yes!") == \
        ["flow at mach 2.5 was seen .", "it fell.", "Then?", "yes!"]
    assert split_sentences("   ") == []


def test_settings_refuse_bad_values():
    with pytest.raises(ConfigError, match="sources"):
        PseudoQuerySettings(sources=())
    with pytest.raises(ConfigError, match="max_words 2 is below min_words 3"):
        PseudoQuerySettings(max_words=2)
    with pytest.raises(ConfigError, match="max_queries"):
        make_pseudo_queries([], PseudoQuerySettings(), max_queries=0)


def _group(qid="ict-1-0", origin="1", hits=("2", "3", "4")) -> PseudoGroup:
    n = len(hits) + 1
    return PseudoGroup(qid, "ict", origin, "a query", "masked text", tuple(hits),
                       {"bm25": np.array([np.nan, *np.linspace(9, 1, n - 1)]), "dense": np.linspace(0.9, 0.1, n)})


def test_groups_file_round_trip(tmp_path):
    groups = AdaptGroups({"index": "x"}, {d: f"text {d}" for d in "234"}, [_group()])
    path = tmp_path / "g.jsonl.gz"
    write_adapt_groups(groups, path)
    back = read_adapt_groups(path)
    assert back.meta["counts"] == {"docs": 3, "pseudo": 1, "labelled": 0}
    assert back.pseudo[0] == groups.pseudo[0]
    assert np.isnan(back.pseudo[0].scores["bm25"][0])
    np.testing.assert_allclose(back.pseudo[0].scores["dense"], groups.pseudo[0].scores["dense"], rtol=1e-6)  # 7 digits
    assert back.score_names() == ("bm25", "dense")


def test_a_group_listing_its_own_document_as_a_hit_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    write_adapt_groups(AdaptGroups({}, {d: d for d in "123"}, [_group(hits=("2", "1", "3"))]), path)
    with pytest.raises(DatasetError, match="lists its own document 1 among its hits"):
        read_adapt_groups(path)


def test_groups_file_errors_say_what_to_do(tmp_path):
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"type": "meta", "format": "es-rerank-candidates", "version": 1}) + "\n")
    with pytest.raises(DatasetError, match="is not an es-rerank-adapt-groups v1 file"):
        read_adapt_groups(path)
    with pytest.raises(DatasetError, match="no adapt groups file"):
        read_adapt_groups(tmp_path / "missing.jsonl.gz")


def test_the_teacher_fuses_normalised_inputs_and_lifts_the_masked_positive_to_the_best_bm25():
    group = _group()
    bm25_only = teacher_scores(group, FusionWeights(ce=0, bm25=1, dense=0))
    assert bm25_only[0] == pytest.approx(bm25_only[1])  # the positive has no BM25 of its own
    assert list(bm25_only[1:]) == sorted(bm25_only[1:], reverse=True)
    both = teacher_scores(group, FusionWeights(ce=0, bm25=0.5, dense=0.5))
    assert both[0] > both[1]  # the dense part breaks the tie for the positive
    with pytest.raises(DatasetError, match="has no ce scores"):
        teacher_scores(group, FusionWeights(ce=1, bm25=0, dense=0))


def test_the_sampler_is_a_function_of_seed_and_step_and_keeps_the_positive_first():
    units = [TrainingUnit(f"q{i}", (f"positive:q{i}", *(f"d{j}" for j in range(10))),
                          np.arange(11, 0, -1, dtype=np.float32), False, True) for i in range(5)]
    sampler = UnitSampler(units, group_size=4, queries_per_step=3, seed=1)
    batch = sampler.step(7)
    assert batch == UnitSampler(units, 4, 3, seed=1).step(7)
    for unit in batch:
        assert unit.keys[0].startswith("positive:") and len(set(unit.keys)) == 4
        assert unit.teacher[0] == 11.0
    without = UnitSampler(units, group_size=4, queries_per_step=3, seed=1, include_positive=False).step(7)
    assert all(not key.startswith("positive:") for unit in without for key in unit.keys)
    assert sampler.steps_for(2.0) == 4  # 10 visits of 3 per step


def test_config_and_recipes_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="teacher weights ce, bm25 and dense are all 0|fusion weights"):
        AdaptConfig(base_model="m", teacher_bm25=0, teacher_dense=0)
    with pytest.raises(ConfigError, match="adapt setting loss"):
        AdaptConfig(base_model="m", loss="lce")
    bad = tmp_path / "r.yaml"
    bad.write_text("train:\n  lr: 1e-4\n  nonsense: 1\n")
    with pytest.raises(ConfigError, match="unknown train setting"):
        read_adapt_recipe(bad)
    for recipe in sorted((REPO / "recipes" / "adapt").glob("*.yaml")):
        prepare, train = read_adapt_recipe(recipe)
        AdaptConfig(**{"base_model": "m", **train})
