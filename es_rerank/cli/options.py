"""Options shared by several commands.

Every option shows its environment variable in `--help`: click derives it from the
`ES_RERANK` prefix and the command path, e.g. `ES_RERANK_INDEX_RECREATE`.
"""

from __future__ import annotations

import functools
import os

import click

# `option` is click.option with the env var and default always shown in --help.
option = functools.partial(click.option, show_envvar=True, show_default=True)

opensearch_url = click.option(
    "--opensearch",
    "opensearch_url",
    envvar=["OPENSEARCH_URL", "ES_RERANK_OPENSEARCH_URL"],
    show_envvar=True,
    default=None,
    metavar="URL",
    help="OpenSearch cluster URL; default: the local node at http://127.0.0.1:9200.",
)


def progress_bar(iterable, total: int | None = None, desc: str = "", unit: str = "doc"):
    """A tqdm bar on stderr, silent when ES_RERANK_NO_PROGRESS is set (tests, CI logs)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=bool(os.environ.get("ES_RERANK_NO_PROGRESS")),
                dynamic_ncols=True, mininterval=0.5)
