"""`es-rerank bench ...`: benchmarks. Each benchmark adds its own subcommand to this group.

The scorer, proxy, reliability and training-step benchmarks are lab tooling (the repository's `lab/` folder),
not part of the wheel: they join the group when `lab/` sits beside the package, as in a checkout.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

# subcommand -> (lab module, its click command); the lab modules import their heavy parts lazily
LAB_COMMANDS = {
    "proxy": ("lab.cli.bench_proxy_cmd", "bench_proxy"),
    "scorer": ("lab.cli.bench_scorer_cmd", "bench_scorer"),
    "reliability": ("lab.cli.bench_reliability_cmd", "bench_reliability"),
    "train-step": ("lab.cli.bench_train_step_cmd", "bench_train_step"),
}


def checkout_root() -> Path | None:
    """The checkout holding this package and a `lab/` beside it, or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "lab" / "cli" / "__init__.py").is_file() else None


class BenchGroup(click.Group):
    """Names the lab's benchmarks even where they are absent, to say where they run."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAB_COMMANDS:
            raise click.UsageError(
                f"`es-rerank bench {cmd_name}` is lab tooling and is not in the installed wheel: "
                "run it from a checkout of es-rerank (its lab/ folder beside es_rerank/, "
                "installed with `pip install -e .`).", ctx)
        return command


@click.group(cls=BenchGroup)
def bench() -> None:
    """Benchmarks whose figures go into docs/benchmarks.md and docs/benchmarks.json.

    `proxy`, `scorer`, `reliability` and `train-step` come from the checkout's lab/ folder.
    """


def add_lab_commands(group: click.Group) -> None:
    """Add the lab's benchmarks to `group` when this package runs from a checkout."""
    root = checkout_root()
    if root is None:
        return
    if str(root) not in sys.path:
        sys.path.append(str(root))
    for module_name, attribute in LAB_COMMANDS.values():
        group.add_command(getattr(importlib.import_module(module_name), attribute))
