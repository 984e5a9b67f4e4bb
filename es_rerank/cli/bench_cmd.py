"""`es-rerank bench ...`: benchmarks. Each benchmark adds its own subcommand to this group."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks whose figures go into docs/benchmarks.md and docs/benchmarks.json."""
