"""`es-rerank serve --model EXPORT` as users run it: a real ONNX export reranks a real SciFact window."""

import pytest

from tests.support.served_cli import assert_reranks_the_window, served_export
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)

QUERY = "0-dimensional biomaterials show inductive properties"


@pytest.fixture(scope="module")
def served(minilm_export, opensearch_url, scifact_index):
    with served_export(opensearch_url, minilm_export, scifact_index) as url:
        yield url


def test_a_real_export_reranks_the_window(served, minilm_export, opensearch_url, scifact_index):
    assert_reranks_the_window(served, opensearch_url, scifact_index, minilm_export, QUERY)
