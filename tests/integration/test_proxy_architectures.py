"""`es-rerank serve --model EXPORT` with cross-encoders of other families than BERT: a tiny random
RoBERTa (its own pair template, no token type ids) and DeBERTa-v2 (its graph drops the token type
ids its tokenizer makes) rerank a real SciFact window with the scores `OnnxScorer` gives."""

import pytest

from tests.support.served_cli import assert_reranks_the_window, served_export
from tests.support.tiny_cross_encoders import train_and_export, write_pair_collection

QUERY = "0-dimensional biomaterials show inductive properties"


@pytest.fixture(params=["roberta", "deberta-v2"])
def served(request, tmp_path, opensearch_url, scifact_index):
    _, _, export_dir, _ = train_and_export(request.param, tmp_path / request.param,
                                           write_pair_collection(tmp_path / "collection"))
    with served_export(opensearch_url, export_dir, scifact_index) as url:
        yield url, export_dir


def test_a_tiny_export_of_another_family_reranks_the_window(served, opensearch_url, scifact_index):
    url, export_dir = served
    assert_reranks_the_window(url, opensearch_url, scifact_index, export_dir, QUERY)
