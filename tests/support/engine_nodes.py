"""Local Elasticsearch 8.19 and 9 and OpenSearch 3 nodes for the engine tests, one test run per port at a time.

They run beside the shared OpenSearch 2.19 node (9200), never instead of it, on ports of their own.
Two runs on one port would stop each other's node, so a run claims the port with a file lock
first and waits for another run to let go of it.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from es_rerank.engine.local_node import LocalNode, NodeSettings
from tests.support.waiting import wait_until

# Pinned, so a test run neither probes Maven Central for the newest release nor downloads twice.
ENGINE_NODES = {
    "elasticsearch9": ("elasticsearch", "9.2.0", 9231),
    "opensearch3": ("opensearch", "3.5.0", 9232),
    # Java 17 runs it, like OpenSearch 2.19.
    "elasticsearch8": ("elasticsearch", "8.19.7", 9233),
}
HEAP = "512m"
# Another run may hold the port for a whole suite; the cap decides only how long a stuck run waits.
CLAIM_CAP_S = 1800.0


@dataclass(frozen=True)
class EngineNode:
    """What a test gets: where the node is and what it runs."""

    engine: str
    version: str
    url: str


@contextmanager
def running_engine_node(name: str) -> Iterator[EngineNode]:
    """Claim the node's port, start it (fetching it the first time), yield it, stop it if started here."""
    engine, version, port = ENGINE_NODES[name]
    node = LocalNode(NodeSettings(engine=engine, version=version, port=port, heap=HEAP))
    with claimed_port(node.settings.cache_dir, port, name):
        started_here = not node.status().running
        status = node.start()
        try:
            yield EngineNode(engine, version, status.url)
        finally:
            if started_here:
                node.stop(timeout_s=30)


@contextmanager
def claimed_port(cache_dir: Path, port: int, name: str) -> Iterator[None]:
    """Hold `<cache_dir>/engine-node-<port>.lock` for the block, waiting while another run holds it.

    Any fixture that starts and stops a node on a shared port claims it so, whatever the node.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"engine-node-{port}.lock", "w") as claim:
        wait_until(lambda: _try_lock(claim), f"another test run to let go of the {name} node on port {port}",
                   cap_s=CLAIM_CAP_S, every_s=1.0)
        yield


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
