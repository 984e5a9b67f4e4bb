"""The `es-rerank` command line: a click group whose commands live in sibling modules.

Each command module imports its heavy dependencies (torch, onnxruntime) inside the command,
so `es-rerank --help` stays fast and torch-free.
"""

from __future__ import annotations

import sys

import click

from es_rerank import __version__
from es_rerank.cli import bench_cmd, index_cmd, opensearch_cmd, quickstart_cmd
from es_rerank.errors import EsRerankError


@click.group(context_settings={"auto_envvar_prefix": "ES_RERANK", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="es-rerank")
def cli() -> None:
    """es-rerank: rerank OpenSearch BM25 results with a cross-encoder.

    Every option can also be set through the environment variable shown in its help.
    """


cli.add_command(opensearch_cmd.opensearch)
cli.add_command(opensearch_cmd.elasticsearch)
cli.add_command(index_cmd.index_command)
cli.add_command(quickstart_cmd.quickstart)
cli.add_command(bench_cmd.bench)

from es_rerank.cli import ab_cmd  # noqa: E402

cli.add_command(ab_cmd.ab)

from es_rerank.cli import bm25_run_cmd, mine_cmd, mix_cmd, train_cmd  # noqa: E402

cli.add_command(mine_cmd.mine_command)
cli.add_command(mix_cmd.mix_command)
cli.add_command(bm25_run_cmd.bm25_run_command)
cli.add_command(train_cmd.train_command)

from es_rerank.cli import fusion_cmd  # noqa: E402

cli.add_command(fusion_cmd.export_dense_command)
cli.add_command(fusion_cmd.fusion_candidates_command)
cli.add_command(fusion_cmd.score_candidates_command)
cli.add_command(fusion_cmd.fit_fusion_command)
bench_cmd.bench.add_command(fusion_cmd.bench_fusion_command)

from es_rerank.cli import serve_cmd  # noqa: E402

cli.add_command(serve_cmd.serve)

from es_rerank.cli import export_cmd  # noqa: E402

cli.add_command(export_cmd.export_command)

from es_rerank.cli import adapt_cmd  # noqa: E402

cli.add_command(adapt_cmd.adapt_command)
bench_cmd.bench.add_command(adapt_cmd.bench_adapt_command)

bench_cmd.add_lab_commands(bench_cmd.bench)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn es-rerank errors into a message and exit code."""
    try:
        cli.main(args=argv, prog_name="es-rerank", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EsRerankError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
