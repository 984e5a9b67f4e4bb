"""`es-rerank opensearch start|stop|status`: the local OpenSearch node."""

from __future__ import annotations

import os
from pathlib import Path

import click

from es_rerank.cli.options import option
from es_rerank.engine.local_node import LocalNode, NodeSettings
from es_rerank.engine.local_node.node import DEFAULT_HEAP, DEFAULT_PORT, default_cache_dir


def node_options(func):
    func = option("--port", type=int, default=DEFAULT_PORT, help="HTTP port on 127.0.0.1 (transport uses port+100).")(func)
    func = option("--cache-dir", type=click.Path(path_type=Path), default=None,
                  help="Where the distribution and node data live; default $ES_RERANK_CACHE_DIR or a system cache.")(func)
    return func


def _settings(port: int, cache_dir: Path | None, heap: str = DEFAULT_HEAP, version: str | None = None,
              timeout: float = 180.0) -> NodeSettings:
    return NodeSettings(port=port, heap=heap, version=version, cache_dir=cache_dir or default_cache_dir(),
                        startup_timeout_s=timeout)


def _warn_if_remote() -> None:
    if os.environ.get("OPENSEARCH_URL"):
        click.echo(f"note: OPENSEARCH_URL is set ({os.environ['OPENSEARCH_URL']}); other commands use that "
                   "cluster, not this local node", err=True)


@click.group()
def opensearch() -> None:
    """Run a local single-node OpenSearch (fetched from Maven Central) for quickstart and tests."""


@opensearch.command()
@node_options
@option("--heap", default=DEFAULT_HEAP, help="JVM heap for the node, e.g. 512m or 2g.")
@option("--version", "version", default=None, help="OpenSearch version to run; default: the newest 2.19.x that resolves.")
@option("--fresh", is_flag=True, help="Wipe the node's data before starting.")
@option("--timeout", type=float, default=180.0, help="Seconds to wait for cluster health yellow.")
def start(port: int, cache_dir: Path | None, heap: str, version: str | None, fresh: bool, timeout: float) -> None:
    """Fetch (first time only) and start the local node, then wait until it is healthy."""
    _warn_if_remote()
    status = LocalNode(_settings(port, cache_dir, heap, version, timeout)).start(fresh=fresh)
    click.echo(status.describe())


@opensearch.command()
@node_options
def stop(port: int, cache_dir: Path | None) -> None:
    """Stop the local node cleanly (SIGTERM, then SIGKILL after a minute)."""
    was_running = LocalNode(_settings(port, cache_dir)).stop()
    click.echo("stopped" if was_running else f"no local node was running on port {port}")


@opensearch.command()
@node_options
def status(port: int, cache_dir: Path | None) -> None:
    """Say whether the local node runs; exit status 3 when it does not."""
    _warn_if_remote()
    result = LocalNode(_settings(port, cache_dir)).status()
    click.echo(result.describe())
    if not result.running:
        raise SystemExit(3)
