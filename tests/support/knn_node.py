"""A local OpenSearch 3 node with the k-NN plugin, for the `knn_vector` tests.

The plain OpenSearch 3 node (tests/support/engine_nodes.py) has no k-NN plugin, so OpenSearch's
side of `knn_query` (a `knn_vector` field, the `knn` query) needs a node of its own:
- the same OpenSearch release from its own cache directory (`<cache>/knn/`), so installing the
  plugin never changes the distribution the other tests run; the plugin, fetched from Maven
  Central (`org.opensearch.plugin:opensearch-knn`), is installed into that copy once and reused;
- its own port (9234, transport 9334), claimed with the same file lock as the other engine nodes,
  so it never stops the plain node or one another test run is using.

The Maven Central plugin zip carries no native libraries, so only the `lucene` k-NN engine works
on this node (a `faiss` field takes it down); es_rerank offers only that engine.

Example:
    >>> KnnNode(NodeSettings(port=KNN_PORT, version=KNN_VERSION, cache_dir=knn_cache_dir())).url
    'http://127.0.0.1:9234'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from es_rerank.engine.local_node import LocalNode, NodeSettings
from es_rerank.engine.local_node.fetch import Distribution
from es_rerank.engine.local_node.node import default_cache_dir, find_java_home
from es_rerank.errors import LocalNodeError
from tests.support.engine_nodes import HEAP, EngineNode, claimed_port
from tests.support.node_plugins import ensure_plugin

# Pinned: the plugin must match the node exactly, and a test run must not look for the newest.
KNN_VERSION = "3.5.0"
KNN_PLUGIN = "opensearch-knn"
KNN_PORT = 9234


def knn_cache_dir() -> Path:
    """The k-NN node's own cache: its distribution copy (with the plugin) and its node directory.

    Example:
        >>> knn_cache_dir().name
        'knn'
    """
    return default_cache_dir() / "knn"


class KnnNode(LocalNode):
    """A LocalNode whose distribution gets the k-NN plugin before its config is copied."""

    def _prepare_node_dir(self, dist: Distribution, fresh: bool) -> None:
        line = self.settings.line
        ensure_plugin(dist, find_java_home(line.min_java, line.recipe.java_home_var, line.label), KNN_PLUGIN)
        super()._prepare_node_dir(dist, fresh)

    def plugins(self) -> dict[str, str]:
        """The plugins the running node loaded, by name, with their versions; empty when it does not answer."""
        found = self._fetch_json("/_nodes/_local/plugins?filter_path=nodes.*.plugins.name,nodes.*.plugins.version",
                                 timeout=5.0) or {}
        return {plugin["name"]: plugin["version"]
                for node in (found.get("nodes") or {}).values() for plugin in node.get("plugins", [])}


@contextmanager
def running_knn_node(port: int = KNN_PORT) -> Iterator[EngineNode]:
    """Claim the port, start the node (fetching it and the plugin the first time), check that it
    loaded the plugin, yield it, and stop it if it was started here."""
    node = KnnNode(NodeSettings(engine="opensearch", version=KNN_VERSION, port=port, heap=HEAP,
                                cache_dir=knn_cache_dir()))
    with claimed_port(default_cache_dir(), port, "OpenSearch k-NN"):
        started_here = not node.status().running
        status = node.start()
        try:
            loaded = node.plugins()
            if loaded.get(KNN_PLUGIN) != f"{KNN_VERSION}.0":
                raise LocalNodeError(f"the node on port {port} runs without {KNN_PLUGIN} {KNN_VERSION}.0 "
                                     f"(plugins: {loaded or 'none'})",
                                     hint=f"stop whatever else runs on port {port}, or delete {knn_cache_dir()} "
                                          "to install the plugin afresh")
            yield EngineNode("opensearch", KNN_VERSION, status.url)
        finally:
            if started_here:
                node.stop(timeout_s=30)
