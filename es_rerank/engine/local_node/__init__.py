"""A local single-node OpenSearch for the quickstart, the tests and the benchmarks."""

from es_rerank.engine.local_node.node import LocalNode, NodeSettings, NodeStatus

__all__ = ["LocalNode", "NodeSettings", "NodeStatus"]
