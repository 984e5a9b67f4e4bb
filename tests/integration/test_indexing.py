"""`es-rerank index` and BM25 retrieval against the real node with real SciFact data."""

import json

import ir_measures
import pytest
from ir_measures import R

from es_rerank.data.beir import read_qrels, read_queries
from es_rerank.data.indexing import index_body
from es_rerank.engine.bm25_query import search_bm25
from tests.conftest import run_cli


def test_scifact_index_holds_every_document(os_client, scifact_index):
    assert os_client.count(index=scifact_index)["count"] == 5183


def test_rerun_changes_nothing(opensearch_url, os_client, scifact_index, data_dir):
    before = os_client.search(index=scifact_index, body={"query": {"ids": {"values": ["4983"]}}})["hits"]["hits"][0]
    result = run_cli("index", str(data_dir / "scifact"), "--index", scifact_index, "--opensearch", opensearch_url)
    assert result.returncode == 0, result.stderr
    assert "indexed 5183 documents" in result.stdout and "existing index" in result.stdout
    assert os_client.count(index=scifact_index)["count"] == 5183
    after = os_client.search(index=scifact_index, body={"query": {"ids": {"values": ["4983"]}}})["hits"]["hits"][0]
    assert after["_source"] == before["_source"]


@pytest.fixture
def small_corpus(tmp_path):
    lines = [json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": f"text {i}"}) for i in range(5)]
    lines.insert(2, '{"_id": "broken", "title": ')
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_bad_line_stops_with_its_number_and_writes_nothing(opensearch_url, os_client, small_corpus):
    index = "test-bad-line"
    os_client.indices.delete(index=index, ignore_unavailable=True)
    result = run_cli("index", str(small_corpus), "--index", index, "--opensearch", opensearch_url)
    assert result.returncode == 1
    assert "corpus.jsonl:3: not valid JSON" in result.stderr and "--skip-bad" in result.stderr
    assert not os_client.indices.exists(index=index)


def test_skip_bad_skips_and_reports(opensearch_url, os_client, small_corpus):
    index = "test-skip-bad"
    os_client.indices.delete(index=index, ignore_unavailable=True)
    result = run_cli("index", str(small_corpus), "--index", index, "--skip-bad", "--opensearch", opensearch_url)
    assert result.returncode == 0, result.stderr
    assert "skipped malformed line corpus.jsonl:3" in result.stderr
    assert os_client.count(index=index)["count"] == 5
    os_client.indices.delete(index=index)


def test_foreign_mapping_is_refused_unless_recreate(opensearch_url, os_client, small_corpus):
    index = "test-foreign-mapping"
    (small_corpus / "corpus.jsonl").write_text(json.dumps({"_id": "a", "title": "t", "text": "x"}) + "\n")
    os_client.indices.delete(index=index, ignore_unavailable=True)
    os_client.indices.create(index=index, body={"mappings": {"properties": {"title": {"type": "keyword"}}}})
    result = run_cli("index", str(small_corpus), "--index", index, "--opensearch", opensearch_url)
    assert result.returncode == 1 and "exists with a different mapping" in result.stderr
    assert "--recreate" in result.stderr
    result = run_cli("index", str(small_corpus), "--index", index, "--recreate", "--opensearch", opensearch_url)
    assert result.returncode == 0, result.stderr
    mapping = os_client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["title"] == index_body()["mappings"]["properties"]["title"]
    os_client.indices.delete(index=index)


def test_count_disagreement_fails(opensearch_url, os_client, small_corpus):
    index = "test-count-check"
    (small_corpus / "corpus.jsonl").write_text(json.dumps({"_id": "a", "title": "t", "text": "x"}) + "\n")
    os_client.indices.delete(index=index, ignore_unavailable=True)
    assert run_cli("index", str(small_corpus), "--index", index, "--opensearch", opensearch_url).returncode == 0
    os_client.index(index=index, id="stranger", body={"title": "not", "text": "from this corpus"}, refresh=True)
    result = run_cli("index", str(small_corpus), "--index", index, "--opensearch", opensearch_url)
    assert result.returncode == 1 and "holds 2 documents but the corpus has 1 distinct ids" in result.stderr
    os_client.indices.delete(index=index)


def test_bm25_recall_at_100_on_scifact_test(os_client, scifact_index, data_dir):
    queries = read_queries(data_dir / "scifact")
    qrels = read_qrels(data_dir / "scifact", "test")
    run = {qid: {h.doc_id: h.score for h in search_bm25(os_client, scifact_index, queries[qid], 100, source=False)}
           for qid in qrels}
    recall = ir_measures.calc_aggregate([R @ 100], qrels, run)[R @ 100]
    assert recall >= 0.85, f"BM25 Recall@100 {recall:.3f} is below 0.85"


def test_opensearch_url_overrides_the_local_node(opensearch_url, small_corpus):
    # A dead address in OPENSEARCH_URL must be used (and fail), not silently replaced by the local node.
    result = run_cli("index", str(small_corpus), "--index", "x", env={"OPENSEARCH_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    assert "OpenSearch at http://127.0.0.1:9 is not reachable" in result.stderr
    # The same node under another name works through OPENSEARCH_URL.
    other_name = opensearch_url.replace("127.0.0.1", "localhost")
    (small_corpus / "corpus.jsonl").write_text(json.dumps({"_id": "a", "title": "t", "text": "x"}) + "\n")
    result = run_cli("index", str(small_corpus), "--index", "test-env-url", env={"OPENSEARCH_URL": other_name})
    assert result.returncode == 0, result.stderr
