"""`es-rerank opensearch|elasticsearch start|stop|status`: local single-node engines.

One group per engine, both made by `node_group`. `--version` takes an exact version or a
release line: `opensearch` runs 2.19.x by default or 3.x; `elasticsearch` runs 9.x by default
or 8.19.x. Each node is known by its port, so several run side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from es_rerank.cli.options import option
from es_rerank.engine.local_node import LocalNode, NodeSettings
from es_rerank.engine.local_node.distributions import ELASTICSEARCH, OPENSEARCH
from es_rerank.engine.local_node.node import DEFAULT_HEAP, DEFAULT_PORT, default_cache_dir

# Beside the OpenSearch default (9200), so both engines' local nodes can run at once.
ELASTICSEARCH_PORT = 9220


def _warn_if_remote() -> None:
    if os.environ.get("OPENSEARCH_URL"):
        click.echo(f"note: OPENSEARCH_URL is set ({os.environ['OPENSEARCH_URL']}); other commands use that "
                   "cluster, not this local node", err=True)


def node_group(engine: str, default_port: int, summary: str, version_help: str) -> click.Group:
    """The `start`/`stop`/`status` group for one engine."""

    def node_options(func):
        func = option("--port", type=int, default=default_port,
                      help="HTTP port on 127.0.0.1 (transport uses port+100).")(func)
        func = option("--cache-dir", type=click.Path(path_type=Path), default=None,
                      help="Where the distribution and node data live; default $ES_RERANK_CACHE_DIR or a system cache.")(func)
        return func

    def settings(port: int, cache_dir: Path | None, heap: str = DEFAULT_HEAP, version: str | None = None,
                 timeout: float = 180.0) -> NodeSettings:
        return NodeSettings(port=port, heap=heap, version=version, cache_dir=cache_dir or default_cache_dir(),
                            startup_timeout_s=timeout, engine=engine)

    @click.group(name=engine, help=summary)
    def group() -> None:
        pass

    @group.command()
    @node_options
    @option("--heap", default=DEFAULT_HEAP, help="JVM heap for the node, e.g. 512m or 2g.")
    @option("--version", "version", default=None, help=version_help)
    @option("--fresh", is_flag=True, help="Wipe the node's data before starting.")
    @option("--timeout", type=float, default=180.0, help="Seconds to wait for cluster health yellow.")
    def start(port: int, cache_dir: Path | None, heap: str, version: str | None, fresh: bool, timeout: float) -> None:
        """Fetch (first time only) and start the local node, then wait until it is healthy."""
        _warn_if_remote()
        status = LocalNode(settings(port, cache_dir, heap, version, timeout)).start(fresh=fresh)
        click.echo(status.describe())

    @group.command()
    @node_options
    def stop(port: int, cache_dir: Path | None) -> None:
        """Stop the local node cleanly (SIGTERM, then SIGKILL after a minute)."""
        was_running = LocalNode(settings(port, cache_dir)).stop()
        click.echo("stopped" if was_running else f"no local node was running on port {port}")

    @group.command()
    @node_options
    def status(port: int, cache_dir: Path | None) -> None:
        """Say whether the local node runs; exit status 3 when it does not."""
        _warn_if_remote()
        result = LocalNode(settings(port, cache_dir)).status()
        click.echo(result.describe())
        if not result.running:
            raise SystemExit(3)

    return group


opensearch = node_group(
    OPENSEARCH, DEFAULT_PORT,
    "Run a local single-node OpenSearch (fetched from Maven Central) for quickstart and tests.",
    "OpenSearch version to run; default: the newest 2.19.x that resolves.")
elasticsearch = node_group(
    ELASTICSEARCH, ELASTICSEARCH_PORT,
    "Run a local single-node Elasticsearch (fetched from Maven Central, security off) for tests.",
    "Elasticsearch version or line (9.x, 8.19.x); default: the newest 9.x that resolves.")
