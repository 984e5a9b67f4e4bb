"""OpenSearch's side of kNN candidates, against a real OpenSearch 3 node with the k-NN plugin.

The same checks as the Elasticsearch 9 ones in test_engines.py, on the same SciFact sample:
document vectors written at index time land in a `knn_vector` field (lucene engine, cosine
space), a document's own embedding finds it first, BM25's pool joined with kNN's recalls more,
and the union pool (`collect_union_candidates`, `fusion-candidates --knn-model`) keeps BM25's
window and scores. The node (fixture `opensearch3_knn`, port 9234) is its own: the plain
OpenSearch 3 node has no k-NN plugin. Marked `engines` through that fixture.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from es_rerank.data.beir import Document, iter_corpus, read_qrels, read_queries, relevant
from es_rerank.data.indexing import DocumentVectors, embedded_text, index_corpus
from es_rerank.engine.bm25_query import search_bm25
from es_rerank.engine.client import make_client
from es_rerank.engine.engine_profile import detect
from es_rerank.engine.knn_query import VECTOR_FIELD, check_vector_field, search_knn
from es_rerank.errors import ConfigError
from tests.conftest import run_cli
from tests.fixtures_export import minilm_dense_export  # noqa: F401 (fixture)
from tests.integration.test_engines import FILLER_DOCS, check_union_pool, sample  # noqa: F401 (fixture)
from tests.support.knn_node import KNN_PLUGIN, KNN_VERSION

INDEX = "test-os-knn-sample"
CLI_INDEX = "test-os-knn-cli-sample"
CLI_DOCS = 40


@pytest.fixture(scope="module")
def indexed(opensearch3_knn, sample, minilm_dense_export):  # noqa: F811
    """The sample indexed once with its MiniLM vectors (`index_corpus(vectors=...)`), with the scorer."""
    from es_rerank.scoring.bi_encoder import DenseScorer

    client = make_client(opensearch3_knn.url)
    scorer = DenseScorer.load(minilm_dense_export, threads=2)
    report = index_corpus(client, sample, INDEX, recreate=True, vectors=DocumentVectors(scorer.embed, scorer.meta.dim))
    return SimpleNamespace(client=client, scorer=scorer, report=report,
                           docs=[d for d in iter_corpus(sample) if isinstance(d, Document)])


def _properties(client, index: str) -> dict:
    return client.indices.get_mapping(index=index)[index]["mappings"]["properties"]


def _assert_lucene_cosine_knn_vector(client, index: str, dim: int) -> None:
    field = _properties(client, index)[VECTOR_FIELD]
    assert field["type"] == "knn_vector" and field["dimension"] == dim, field
    assert field["method"]["name"] == "hnsw" and field["method"]["engine"] == "lucene", field
    assert field["method"]["space_type"] == "cosinesimil", field
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["knn"] == "true", settings


def test_the_node_is_opensearch_3_with_the_knn_plugin_loaded(opensearch3_knn):
    client = make_client(opensearch3_knn.url)
    profile = detect(client)
    assert (profile.engine, profile.version, profile.english_analyzer) == ("opensearch", KNN_VERSION, True)
    loaded = {row["component"]: row["version"] for row in client.cat.plugins(format="json")}
    assert loaded == {KNN_PLUGIN: f"{KNN_VERSION}.0"}


def test_vectors_written_at_index_time_are_a_lucene_cosine_knn_vector_field(indexed):
    assert indexed.report.index_count == len(indexed.docs) > FILLER_DOCS
    assert indexed.report.analyzer == "english" and indexed.report.warning is None
    _assert_lucene_cosine_knn_vector(indexed.client, INDEX, indexed.scorer.meta.dim)
    # What the node stores is the bi-encoder's vector of the document's title and text.
    doc = indexed.docs[5]
    stored = indexed.client.get(index=INDEX, id=doc.doc_id)["_source"][VECTOR_FIELD]
    assert stored == pytest.approx(indexed.scorer.embed([embedded_text(doc)])[0].tolist(), abs=1e-6)


def test_a_documents_own_embedding_finds_it_first_with_cosine_similarity(indexed):
    for doc in indexed.docs[:3]:
        hits = search_knn(indexed.client, INDEX, "opensearch", indexed.scorer.embed([embedded_text(doc)])[0], 3)
        assert [h.doc_id for h in hits][:1] == [doc.doc_id] and len(hits) == 3
        # cosinesimil scores are (1 + cosine) / 2: 1 for the document itself, then non-increasing.
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:])) and hits[-1].score < hits[0].score
        assert all(h.source == {} for h in hits)  # source=False by default: no vectors shipped back


def test_bm25_joined_with_knn_recalls_more_than_bm25_alone(indexed, sample):  # noqa: F811
    queries, qrels = read_queries(sample), read_qrels(sample, "test")
    found = {"bm25": 0, "union": 0}
    for query_id, text in queries.items():
        bm25 = {h.doc_id for h in search_bm25(indexed.client, INDEX, text, 10, source=False)}
        knn = search_knn(indexed.client, INDEX, "opensearch", indexed.scorer.embed([text])[0], 10)
        assert len(knn) == 10
        found["bm25"] += len(bm25 & relevant(qrels, query_id))
        found["union"] += len((bm25 | {h.doc_id for h in knn}) & relevant(qrels, query_id))
    assert found["union"] > found["bm25"]  # the kNN half finds relevant documents BM25's top 10 missed


def test_the_union_pool_keeps_bm25s_window_and_adds_knn_hits_with_their_own_bm25_scores(
        opensearch3_knn, indexed, sample, minilm_dense_export):  # noqa: F811
    check_union_pool(indexed.client, opensearch3_knn.url, INDEX, "opensearch", sample, indexed.scorer,
                     minilm_dense_export)


def test_index_command_with_dense_model_writes_a_knn_vector_field_and_reuses_it(
        opensearch3_knn, sample, minilm_dense_export, tmp_path):  # noqa: F811
    """`es-rerank index --dense-model` end to end on OpenSearch; a second run accepts the
    `knn_vector` mapping the node gives back, and the kNN check reads its `dimension`."""
    from es_rerank.scoring.bi_encoder import read_meta

    # A few of the sample's documents: this checks the command's wiring, not recall.
    lines = sample.joinpath("corpus.jsonl").read_text().splitlines(keepends=True)[:CLI_DOCS]
    tmp_path.joinpath("corpus.jsonl").write_text("".join(lines))
    dim = read_meta(minilm_dense_export).dim
    client = make_client(opensearch3_knn.url)
    args = ("index", str(tmp_path), "--index", CLI_INDEX, "--dense-model", str(minilm_dense_export),
            "--opensearch", opensearch3_knn.url)
    made = run_cli(*args, "--recreate")
    assert made.returncode == 0, made.stderr
    assert "(created)" in made.stdout and "analyzer english" in made.stdout, made.stdout
    _assert_lucene_cosine_knn_vector(client, CLI_INDEX, dim)
    expected = len(lines)
    assert client.count(index=CLI_INDEX)["count"] == expected
    with_vectors = client.count(index=CLI_INDEX, body={"query": {"exists": {"field": VECTOR_FIELD}}})["count"]
    assert with_vectors == expected

    again = run_cli(*args)
    assert again.returncode == 0 and "existing index" in again.stdout, again.stderr

    check_vector_field(client, CLI_INDEX, dim)
    with pytest.raises(ConfigError, match=f"stores {dim}-float vectors"):
        check_vector_field(client, CLI_INDEX, dim + 1)


def test_indexing_without_a_bi_encoder_into_an_index_with_vectors_is_refused_and_keeps_them(
        indexed, opensearch3_knn, sample):  # noqa: F811
    """Writing the documents again without vectors would empty the kNN half: refused before any write."""
    client = indexed.client
    with_vectors = {"query": {"exists": {"field": VECTOR_FIELD}}}
    before = client.count(index=INDEX, body=with_vectors)["count"]
    assert before == len(indexed.docs)
    refused = run_cli("index", str(sample), "--index", INDEX, "--opensearch", opensearch3_knn.url)
    assert refused.returncode != 0
    assert "holds document vectors" in refused.stderr and "--dense-model EXPORT" in refused.stderr, refused.stderr
    client.indices.refresh(index=INDEX)
    assert client.count(index=INDEX, body=with_vectors)["count"] == before


def test_an_existing_vector_field_of_another_similarity_is_refused(opensearch3_knn, sample, indexed):  # noqa: F811
    """An index whose vectors are compared by l2 would rank kNN candidates otherwise: a mapping difference."""
    from es_rerank.errors import IndexingError

    client = indexed.client
    index = "test-os-knn-l2"
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    dim = indexed.scorer.meta.dim
    body = {"settings": {"index": {"knn": True}}, "mappings": {"properties": {
        "title": {"type": "text", "analyzer": "english"}, "text": {"type": "text", "analyzer": "english"},
        VECTOR_FIELD: {"type": "knn_vector", "dimension": dim,
                       "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"}}}}}
    client.indices.create(index=index, body=body)
    with pytest.raises(IndexingError, match="exists with a different mapping: embedding is .*l2.*cosinesimil"):
        index_corpus(client, sample, index, vectors=DocumentVectors(indexed.scorer.embed, dim))
    assert client.count(index=index)["count"] == 0  # nothing was written
    client.indices.delete(index=index)
