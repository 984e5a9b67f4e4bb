"""The online A/B options of `es-rerank serve` (`--ab-split`, `--ab-mode`, ...) and the config they build.

`online_ab_options` adds the options to a command; the command passes the values to
`online_ab_config`, which returns None when no A/B test is asked for.

Example:
    >>> config = online_ab_config(0.5, "interleave", "X-Session", "exp-1", Path("ab.jsonl"), None, False, "s")
    >>> config.treatment, config.key_header
    ('interleave', 'X-Session')
    >>> online_ab_config(None, "split", None, "exp", None, None, False, "") is None
    True
"""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import option

AB_OPTIONS = (
    option("--ab-split", type=click.FloatRange(0.0, 1.0), default=None, metavar="FRACTION",
           help="Run an online A/B test: this share of users gets the treatment arm (off when unset)."),
    option("--ab-mode", type=click.Choice(["split", "interleave"]), default="split",
           help="Treatment arm: 'split' serves the reranked list, 'interleave' a team-draft merge with BM25."),
    option("--ab-key-header", default=None, metavar="HEADER",
           help="Request header holding the user/session key (default: the client address)."),
    option("--ab-experiment", default="es-rerank-ab",
           help="Experiment name salting the assignment; a new name reshuffles users."),
    option("--ab-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
           help="Decision log (JSON lines, one per search); required with --ab-split."),
    option("--ab-events-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
           help="Where POST /_rerank/events appends clicks (default: the decision log)."),
    option("--ab-log-query-text", is_flag=True, help="Also log the query text (user_query); off by default."),
    option("--ab-secret", default="", show_default=False,
           help="Secret keying the hashed client ids in the logs; set it through the environment."),
)


def online_ab_options(command):
    """Decorator adding the `--ab-*` options to a click command."""
    for decorate in reversed(AB_OPTIONS):
        command = decorate(command)
    return command


def online_ab_config(ab_split: float | None, ab_mode: str, ab_key_header: str | None, ab_experiment: str,
                     ab_log: Path | None, ab_events_log: Path | None, ab_log_query_text: bool, ab_secret: str):
    """The `OnlineAbConfig` for these option values, or None when `--ab-split` is not given."""
    from es_rerank.proxy.online_ab.assignment import OnlineAbConfig
    from es_rerank.errors import ConfigError

    if ab_split is None:
        if ab_log or ab_events_log or ab_log_query_text:
            raise ConfigError("--ab-log, --ab-events-log and --ab-log-query-text need --ab-split",
                              hint="e.g. --ab-split 0.5 --ab-log ab-decisions.jsonl")
        return None
    if ab_log is None:
        raise ConfigError("--ab-split needs --ab-log: an A/B test that records nothing cannot be evaluated",
                          hint="e.g. --ab-log ab-decisions.jsonl; summarise it with `es-rerank ab report`")
    return OnlineAbConfig(split=ab_split, mode=ab_mode, key_header=ab_key_header, experiment=ab_experiment,
                          log_path=ab_log, events_path=ab_events_log, log_query_text=ab_log_query_text,
                          secret=ab_secret)
