import click

from es_rerank.cli import cli
from tests.conftest import run_cli


def iter_commands(group, path=()):
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from iter_commands(command, path + (name,))


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("opensearch", "index", "quickstart"):
        assert name in result.stdout


def test_every_option_has_one_line_help_and_an_env_var():
    for path, command in iter_commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            where = f"es-rerank {' '.join(path)} {param.opts[0]}"
            assert param.help and "\n" not in param.help, f"{where} lacks a one-line help"
            assert param.show_envvar, f"{where} does not show its environment variable"


def test_env_var_sets_an_option(tmp_path):
    result = run_cli("opensearch", "status", env={"ES_RERANK_OPENSEARCH_STATUS_PORT": "9297",
                                                  "ES_RERANK_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 3
    assert "127.0.0.1:9297" in result.stdout


def test_errors_say_what_to_do(tmp_path):
    result = run_cli("index", str(tmp_path), "--index", "x", "--opensearch", "ftp://nowhere")
    assert result.returncode == 2
    assert "error: OpenSearch URL 'ftp://nowhere' is not an http(s) URL" in result.stderr
    assert "hint:" in result.stderr
