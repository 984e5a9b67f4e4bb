"""Shared test fixtures: the real OpenSearch node and the shared BEIR data.

Integration tests talk to a real node. When `OPENSEARCH_URL` is set the tests use that
cluster; otherwise they use the local node on 127.0.0.1:9200, starting it (and stopping it
afterwards) if it is not already running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

# `serve` defaults to one worker per two cores: the suite pins one process, so its results do not
# depend on the machine; the multi-process tests pass --workers themselves.
os.environ.setdefault("ES_RERANK_SERVE_WORKERS", "1")
REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("ES_RERANK_DATA_DIR", REPO.parent / "shared" / "data"))
SCIFACT = DATA_DIR / "scifact"
CRANFIELD = DATA_DIR / "cranfield"

os.environ.setdefault("ES_RERANK_NO_PROGRESS", "1")


def pytest_collection_modifyitems(config, items):
    # Marked by what a test needs, so the fast lane (`scripts/test --fast`) can leave those out.
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if "tests/integration" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
        if "opensearch_url" in needs:
            item.add_marker(pytest.mark.node)
        if "minilm_export" in needs:
            item.add_marker(pytest.mark.export)
        if needs & {"elasticsearch8", "elasticsearch9", "opensearch3", "opensearch3_knn", "engine_node"}:
            item.add_marker(pytest.mark.engines)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not SCIFACT.is_dir():
        pytest.fail(f"the shared BEIR data is missing at {DATA_DIR}; set ES_RERANK_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """URL of a running real OpenSearch node."""
    from es_rerank.engine.local_node import LocalNode, NodeSettings

    if os.environ.get("OPENSEARCH_URL"):
        yield os.environ["OPENSEARCH_URL"].rstrip("/")
        return
    node = LocalNode(NodeSettings())
    started_here = not node.status().running
    status = node.start()
    yield status.url
    if started_here:
        node.stop()


@pytest.fixture(scope="session")
def os_client(opensearch_url):
    from es_rerank.engine.client import make_client

    return make_client(opensearch_url)


@pytest.fixture(scope="session")
def scifact_index(os_client, data_dir) -> str:
    """The SciFact corpus indexed once per session (idempotent across sessions)."""
    from es_rerank.data.indexing import index_corpus

    name = "test-scifact"
    index_corpus(os_client, data_dir / "scifact", name)
    settle(os_client, name)
    return name


@pytest.fixture(scope="session")
def cranfield_index(os_client, data_dir) -> str:
    from es_rerank.data.indexing import index_corpus

    name = "test-cranfield"
    index_corpus(os_client, data_dir / "cranfield", name)
    settle(os_client, name)
    return name


def settle(os_client, index: str) -> None:
    """Merge `index` into one segment: background merges reorder Lucene doc ids, which flips
    the order of equal-scoring hits between two otherwise identical searches."""
    os_client.indices.forcemerge(index=index, max_num_segments=1, params={"request_timeout": 300})
    os_client.indices.refresh(index=index)


@pytest.fixture(scope="session")
def secure_node():
    """A second node (port 9280) with OpenSearch's security plugin: TLS, basic auth, the users
    and indices of tests/support/security_config.py. Started only when a test asks; stopped after."""
    from tests.support.secure_node import running_secure_node

    with running_secure_node() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def elasticsearch9():
    """A local Elasticsearch 9 node (port 9231, security off), started when a test asks; stopped after."""
    from tests.support.engine_nodes import running_engine_node

    with running_engine_node("elasticsearch9") as node:
        yield node


@pytest.fixture(scope="session")
def elasticsearch8():
    """A local Elasticsearch 8.19 node (port 9233, security off), started when a test asks; stopped after."""
    from tests.support.engine_nodes import running_engine_node

    with running_engine_node("elasticsearch8") as node:
        yield node


@pytest.fixture(scope="session")
def opensearch3():
    """A local OpenSearch 3 node (port 9232), started when a test asks; stopped after."""
    from tests.support.engine_nodes import running_engine_node

    with running_engine_node("opensearch3") as node:
        yield node


@pytest.fixture(scope="session")
def opensearch3_knn():
    """A local OpenSearch 3 node with the k-NN plugin (port 9234, its own distribution copy), for
    `knn_vector` fields; started when a test asks; stopped after."""
    from tests.support.knn_node import running_knn_node

    with running_knn_node() as node:
        yield node


@pytest.fixture(params=["elasticsearch9", "opensearch3"])
def engine_node(request):
    """Each engine beside OpenSearch 2.19 in turn: the test runs once per node."""
    return request.getfixturevalue(request.param)


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m es_rerank ARGS` as a user would, returning its output and exit status."""
    full_env = {**os.environ, "ES_RERANK_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "es_rerank", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)
