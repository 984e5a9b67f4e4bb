"""Elasticsearch 9 and OpenSearch 3 as engines: local nodes, detection, indexing and BM25 search.

Each engine indexes the same small SciFact sample through es_rerank's own indexing and answers
the served BM25 query. Elasticsearch's integ-test distribution has no `english` analyzer, so
its index must use `stop` and say so in one line; OpenSearch 3 has `english`.
"""

from __future__ import annotations

import json

import pytest

from es_rerank.data.beir import Document, iter_corpus, read_qrels, read_queries, relevant
from es_rerank.data.indexing import index_corpus
from es_rerank.engine.bm25_query import search_bm25
from es_rerank.engine.client import check_reachable, make_client
from es_rerank.engine.engine_profile import detect
from tests.conftest import run_cli
from tests.fixtures_export import minilm_dense_export  # noqa: F401 (fixture)

SAMPLE_QUERIES = 30
FILLER_DOCS = 300


@pytest.fixture(scope="module")
def sample(data_dir, tmp_path_factory):
    """SciFact test queries with their relevant documents, plus other documents to search among."""
    scifact = data_dir / "scifact"
    qrels = read_qrels(scifact, "test")
    queries = read_queries(scifact)
    chosen = [qid for qid in qrels if qid in queries][:SAMPLE_QUERIES]
    wanted = set().union(*(relevant(qrels, qid) for qid in chosen))
    docs = []
    for item in iter_corpus(scifact):
        if isinstance(item, Document) and (item.doc_id in wanted or len(docs) < FILLER_DOCS + len(wanted)):
            docs.append(item)
    out = tmp_path_factory.mktemp("scifact-sample")
    (out / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n" for d in docs))
    (out / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in chosen))
    (out / "qrels").mkdir()
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q in chosen for d in relevant(qrels, q)))
    return out


def test_each_node_says_which_engine_and_version_it_is(engine_node):
    profile = detect(make_client(engine_node.url))
    assert (profile.engine, profile.version) == (engine_node.engine, engine_node.version)
    # Elasticsearch's integ-test zip lacks analysis-common; OpenSearch 3's zip has it.
    assert profile.english_analyzer is (engine_node.engine == "opensearch")
    assert check_reachable(make_client(engine_node.url), engine_node.url) == engine_node.version


def test_status_names_the_engine(engine_node):
    port = engine_node.url.rsplit(":", 1)[1]
    result = run_cli(engine_node.engine, "status", "--port", port)
    label = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}[engine_node.engine]
    assert result.returncode == 0 and f"{label} {engine_node.version}, health" in result.stdout, result


def test_sample_is_indexed_with_the_best_analyzer_and_searchable(engine_node, sample):
    client = make_client(engine_node.url)
    index = "test-engines-scifact-sample"
    report = index_corpus(client, sample, index, recreate=True)
    expected = sum(1 for _ in sample.joinpath("corpus.jsonl").open())
    assert report.index_count == expected
    tokens = [t["token"] for t in client.indices.analyze(index=index, body={"field": "text", "text": "activates"})["tokens"]]
    if engine_node.engine == "elasticsearch":
        assert report.analyzer == "stop" and tokens == ["activates"]  # no stemming there
        assert report.warning and "\n" not in report.warning and "no english analyzer" in report.warning
    else:
        assert report.analyzer == "english" and report.warning is None and tokens == ["activ"]
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert {mapping[f]["analyzer"] for f in ("title", "text")} == {report.analyzer}

    qrels, queries = read_qrels(sample, "test"), read_queries(sample)
    found = sum(bool(relevant(qrels, qid) & {h.doc_id for h in search_bm25(client, index, text, 10)})
                for qid, text in queries.items())
    # BM25 finds a relevant document in the top 10 for most SciFact queries (about 0.8 on the full corpus).
    assert found >= 0.6 * len(queries), f"{found} of {len(queries)} queries found a relevant document"


def test_index_command_prints_the_analyzer_and_the_warning(engine_node, sample):
    index = "test-engines-cli-sample"
    result = run_cli("index", str(sample), "--index", index, "--recreate", "--opensearch", engine_node.url)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if engine_node.engine == "elasticsearch":
        assert "analyzer stop" in result.stdout
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: Elasticsearch {engine_node.version} has no english")
    else:
        assert "analyzer english" in result.stdout and warnings == []
    # A second run finds the index it made, with the same fallback mapping, and changes nothing.
    again = run_cli("index", str(sample), "--index", index, "--opensearch", engine_node.url)
    assert again.returncode == 0 and "existing index" in again.stdout, again.stderr


def test_vectors_written_at_index_time_answer_knn_and_widen_the_pool(elasticsearch9, sample,
                                                                     minilm_dense_export):  # noqa: F811
    """`index --dense-model`: each document's bi-encoder vector is stored in the engine, a document's
    own text finds it first by kNN, and BM25's pool joined with kNN's recalls at least as much."""
    from es_rerank.data.indexing import DocumentVectors, embedded_text
    from es_rerank.engine.knn_query import VECTOR_FIELD, search_knn
    from es_rerank.scoring.bi_encoder import DenseScorer

    client = make_client(elasticsearch9.url)
    scorer = DenseScorer.load(minilm_dense_export, threads=2)
    report = index_corpus(client, sample, "test-knn-sample", recreate=True,
                          vectors=DocumentVectors(scorer.embed, scorer.meta.dim))
    assert report.index_count > FILLER_DOCS
    mapping = client.indices.get_mapping(index="test-knn-sample")["test-knn-sample"]["mappings"]["properties"]
    assert mapping[VECTOR_FIELD]["type"] == "dense_vector" and mapping[VECTOR_FIELD]["dims"] == scorer.meta.dim
    docs = [d for d in iter_corpus(sample) if isinstance(d, Document)][:3]
    for doc in docs:
        hits = search_knn(client, "test-knn-sample", "elasticsearch", scorer.embed([embedded_text(doc)])[0], 3)
        assert hits[0].doc_id == doc.doc_id
    queries, qrels = read_queries(sample), read_qrels(sample, "test")
    found = {"bm25": 0, "union": 0}
    for query_id, text in queries.items():
        bm25 = {h.doc_id for h in search_bm25(client, "test-knn-sample", text, 10, source=False)}
        knn = {h.doc_id for h in search_knn(client, "test-knn-sample", "elasticsearch", scorer.embed([text])[0], 10)}
        found["bm25"] += len(bm25 & relevant(qrels, query_id))
        found["union"] += len((bm25 | knn) & relevant(qrels, query_id))
    assert found["union"] > found["bm25"]  # the kNN half finds relevant documents BM25's top 10 missed


def test_the_union_pool_keeps_bm25s_window_and_adds_knn_hits_with_their_own_bm25_scores(
        elasticsearch9, sample, minilm_dense_export):  # noqa: F811
    from es_rerank.data.indexing import DocumentVectors
    from es_rerank.scoring.bi_encoder import DenseScorer

    client = make_client(elasticsearch9.url)
    scorer = DenseScorer.load(minilm_dense_export, threads=2)
    index_corpus(client, sample, "test-union-sample", recreate=True,
                 vectors=DocumentVectors(scorer.embed, scorer.meta.dim))
    check_union_pool(client, elasticsearch9.url, "test-union-sample", "elasticsearch", sample, scorer,
                     minilm_dense_export)


def check_union_pool(client, url: str, index: str, engine: str, sample, scorer, dense_export) -> None:
    """`data.pools.collect_union_candidates`: BM25's top k in its order, then the kNN hits it missed,
    each with the BM25 score the unrestricted query gives it (0 when no query term matches); and
    `fusion-candidates --knn-model`, which detects the engine, writes the same pool."""
    from es_rerank.data.candidates import natural_key, read_candidates
    from es_rerank.data.pools import collect_union_candidates

    queries, qrels = read_queries(sample), read_qrels(sample, "test")
    vectors = dict(zip(queries, scorer.embed(list(queries.values()))))
    depth = 10
    union = collect_union_candidates(client, index, engine, queries, vectors, depth)
    assert union.meta["pool"] == "bm25+knn" and [q.query_id for q in union.queries] == sorted(queries, key=natural_key)
    widened, found = 0, {"bm25": 0, "union": 0}
    for query in union.queries:
        bm25 = search_bm25(client, index, query.text, depth, source=False)
        assert query.doc_ids[:len(bm25)] == [h.doc_id for h in bm25]
        assert len(set(query.doc_ids)) == len(query.doc_ids) <= 2 * depth
        scores = query.scores["bm25"]
        assert scores[:len(bm25)].tolist() == [h.score for h in bm25]
        extra = query.doc_ids[len(bm25):]
        widened += bool(extra)
        deep = {h.doc_id: h.score for h in search_bm25(client, index, query.text, FILLER_DOCS * 2, source=False)}
        for doc_id, score in zip(extra, scores[len(bm25):]):
            assert score == pytest.approx(deep.get(doc_id, 0.0), rel=1e-6)
            assert score <= bm25[-1].score  # BM25 ranked it below its window, so BM25 order keeps the window
            assert union.docs[doc_id]  # the text the proxy would rerank
        found["bm25"] += len({h.doc_id for h in bm25} & relevant(qrels, query.query_id))
        found["union"] += len(set(query.doc_ids) & relevant(qrels, query.query_id))
    assert widened > 0 and found["union"] > found["bm25"]

    out = sample / f"{index}-union.jsonl.gz"
    made = run_cli("fusion-candidates", str(sample), "--index", index, "--split", "test", "--depth", str(depth),
                   "--knn-model", str(dense_export), "--out", str(out), "--opensearch", url)
    assert made.returncode == 0, made.stderr
    assert f"BM25 top-{depth} ∪ kNN top-{depth} of {len(queries)} queries" in made.stdout
    written = read_candidates(out)
    assert written.meta["pool"] == "bm25+knn" and "--knn-model" in written.meta["history"][0]
    assert {q.query_id: q.doc_ids for q in written.queries} == {q.query_id: q.doc_ids for q in union.queries}
    for mine, theirs in zip(written.queries, union.queries):
        assert mine.scores["bm25"].tolist() == pytest.approx(theirs.scores["bm25"].tolist())
