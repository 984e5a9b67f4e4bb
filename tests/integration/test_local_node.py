"""Starting and stopping a second, throw-away local node (the shared one keeps running)."""

import pytest

from es_rerank.errors import LocalNodeError
from es_rerank.engine.local_node import LocalNode, NodeSettings
from tests.conftest import run_cli

SPARE_PORT = 9290


@pytest.fixture
def spare_node(opensearch_url):
    node = LocalNode(NodeSettings(port=SPARE_PORT, heap="256m"))
    yield node
    node.stop(timeout_s=20)


def test_start_status_stop(spare_node):
    result = run_cli("opensearch", "start", "--port", str(SPARE_PORT), "--heap", "256m", "--fresh")
    assert result.returncode == 0, result.stderr
    assert f"running at http://127.0.0.1:{SPARE_PORT}" in result.stdout and "health" in result.stdout
    assert spare_node.status().running
    # Starting again is a no-op on the running node.
    assert run_cli("opensearch", "start", "--port", str(SPARE_PORT), "--heap", "256m").returncode == 0
    result = run_cli("opensearch", "stop", "--port", str(SPARE_PORT))
    assert result.returncode == 0 and "stopped" in result.stdout
    assert not spare_node.status().running
    assert run_cli("opensearch", "status", "--port", str(SPARE_PORT)).returncode == 3


def test_node_that_does_not_come_up_shows_its_log(spare_node):
    broken = LocalNode(NodeSettings(port=SPARE_PORT, heap="1m", startup_timeout_s=60))
    with pytest.raises(LocalNodeError, match="(?s)OpenSearch exited with status|died while starting") as info:
        broken.start(fresh=True)
    assert "log tail" in str(info.value) and "heap" in str(info.value).lower()


class NodeWithUnknownSetting(LocalNode):
    """A real node whose config names a setting no engine knows: it dies in its main thread at startup."""

    def _prepare_node_dir(self, dist, fresh):
        super()._prepare_node_dir(dist, fresh)
        with open(self.node_dir / "config" / "opensearch.yml", "a") as config:
            config.write("\nes_rerank.no_such_setting: 1\n")


def test_node_that_dies_after_its_launcher_returned_is_reported_at_once(opensearch_url):
    """OpenSearch's `-d` launcher exits 0 before the JVM reads its config; the wait must not run to its timeout."""
    node = NodeWithUnknownSetting(NodeSettings(port=SPARE_PORT + 1, heap="256m", startup_timeout_s=600))
    try:
        with pytest.raises(LocalNodeError, match="(?s)died while starting.*no_such_setting"):
            node.start(fresh=True)
    finally:
        node.stop(timeout_s=20)
