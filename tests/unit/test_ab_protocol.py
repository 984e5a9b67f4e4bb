import ast
from pathlib import Path

from es_rerank.evaluation import protocol

PROXY = Path(__file__).resolve().parents[2] / "es_rerank" / "proxy"


def _header_literals(path: Path) -> list[str]:
    """`X-Rerank...` strings in a module's code (docstrings left out: their examples show the values)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [f"{path.name}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and node.value.lower().startswith("x-rerank")]


def test_the_proxy_takes_its_header_names_from_the_protocol():
    # One definition of each X-Rerank name (es_rerank.evaluation.protocol): a copy in the proxy could drift.
    assert [hit for path in sorted(PROXY.rglob("*.py")) for hit in _header_literals(path)] == []


def test_the_off_value_switches_the_proxy_off():
    from es_rerank.proxy.plan import SWITCH_OFF_VALUES

    assert protocol.RERANK_OFF_VALUE in SWITCH_OFF_VALUES
