"""A throw-away OpenSearch node for the fault runs: wiped at start, SIGKILLed and restarted at will.

It is never the shared node on 9200: the load runs kill their node on purpose.

Two runs on one port would wipe and kill each other's node, so a run claims its port first:

Example:
    >>> ThrowawayNode(port=9200)
    Traceback (most recent call last):
    ...
    es_rerank.errors.ConfigError: the fault runs kill their OpenSearch node; port 9200 is the shared node (use another port, e.g. 9270)
    >>> first, second = ThrowawayNode(port=9299), ThrowawayNode(port=9299)
    >>> first.claim(); second.claim()
    Traceback (most recent call last):
    ...
    es_rerank.errors.ConfigError: another fault run holds the throw-away node on port 9299 (pass another port, e.g. --port 9300, or wait for it to end)
    >>> first.release(); second.claim(); second.release()
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from es_rerank.errors import ConfigError, LocalNodeError
from es_rerank.engine.local_node import LocalNode, NodeSettings
from es_rerank.engine.local_node.node import DEFAULT_PORT

THROWAWAY_PORT = 9270
THROWAWAY_HEAP = "512m"


class ThrowawayNode:
    """One local node on its own port and data directory."""

    def __init__(self, port: int = THROWAWAY_PORT, heap: str = THROWAWAY_HEAP) -> None:
        if port == DEFAULT_PORT:
            raise ConfigError(f"the fault runs kill their OpenSearch node; port {port} is the shared node",
                              hint=f"use another port, e.g. {THROWAWAY_PORT}")
        self.node = LocalNode(NodeSettings(port=port, heap=heap))
        self.url = self.node.url
        self._claim: IO[str] | None = None

    def claim(self) -> None:
        """Hold this port's node for this run (an exclusive lock, let go when the process ends)."""
        settings = self.node.settings
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        handle = open(settings.cache_dir / f"throwaway-{settings.port}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigError(f"another fault run holds the throw-away node on port {settings.port}",
                              hint=f"pass another port, e.g. --port {settings.port + 1}, or wait for it to end") from None
        self._claim = handle

    def release(self) -> None:
        """Let another run take this port's node."""
        if self._claim is not None:
            self._claim.close()
            self._claim = None

    def start_fresh(self) -> None:
        """Claim the port, stop whatever runs on this node's directory, wipe its data, start, wait for health.
        """
        if self._claim is None:
            self.claim()
        self.node.stop(timeout_s=20)
        self.node.start(fresh=True)

    def kill(self) -> int:
        """SIGKILL the node (no shutdown of any kind); returns the pid it killed.
        """
        pid = self.node._live_pid()
        if pid is None:
            raise LocalNodeError(f"no OpenSearch node runs on {self.url} to kill")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.node._live_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid

    def restart(self) -> None:
        """Start the node again on its existing data and wait until it is healthy.
        """
        self.node.start(fresh=False)

    def stop(self) -> None:
        """Stop the node (SIGTERM).
        """
        self.node.stop(timeout_s=30)

    def call(self, method: str, path: str, body: dict | bytes | None = None, timeout_s: float = 60.0) -> dict:
        """One JSON request straight to the node (not through the proxy); raises on an error status.
        """
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise LocalNodeError(f"{method} {path} on {self.url} failed with {exc.code}: {exc.read()[:300]!r}") from None


def load_corpus(node: ThrowawayNode, dataset: Path, index: str) -> int:
    """Index a BEIR corpus into the node (its own, static index for the reranked searches).
    """
    from es_rerank.data.indexing import index_corpus
    from es_rerank.engine.client import make_client

    return index_corpus(make_client(node.url), dataset, index, recreate=True).index_count
