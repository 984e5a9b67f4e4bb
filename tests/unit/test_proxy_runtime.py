"""The serving path's footprint: no torch, works without orjson, and `es-rerank serve` fails helpfully."""

import subprocess
import sys

from tests.conftest import REPO, run_cli


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_the_serving_path_imports_no_torch():
    result = python("import sys, es_rerank.proxy, lab.proxy_bench.benchmark, es_rerank.cli.serve_cmd\n"
                    "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_json_falls_back_to_the_standard_library_without_orjson():
    result = python("import sys; sys.modules['orjson'] = None\n"
                    "from es_rerank.proxy import jsonio\n"
                    "assert jsonio.orjson is None\n"
                    "sys.stdout.buffer.write(jsonio.dumps(jsonio.loads(b'{\"a\": [1, 2.5, \"\\\\u00e9\"], \"big\": 18446744073709551616}')))")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"a":[1,2.5,"\u00e9"],"big":18446744073709551616}'


def test_serve_says_what_to_do_about_a_missing_model(tmp_path):
    result = run_cli("serve", "--model", str(tmp_path / "nope"), "--port", "0")
    assert result.returncode == 1
    assert "model directory" in result.stderr and "hint:" in result.stderr


def test_serve_rejects_a_bad_config_file(tmp_path):
    config = tmp_path / "proxy.yaml"
    config.write_text("indices:\n  scifact: {window: zero}\n")
    result = run_cli("serve", "--config", str(config), "--port", "0")
    assert result.returncode == 2
    assert "rerank window for 'scifact' must be a positive integer" in result.stderr


def test_serve_refuses_credentials_in_the_opensearch_url():
    result = run_cli("serve", "--opensearch", "https://admin:hunter2@search.example:9200", "--port", "0")
    assert result.returncode == 2
    assert "must not carry credentials" in result.stderr and "hunter2" not in result.stderr
