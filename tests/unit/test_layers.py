"""The package is laid out by layer and imports point one way, downward (docs/architecture.md).

A module may import its own layer and the layers its row names; anything else is an upward or
sideways arrow. The proxy never imports training or export (they need torch).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Folder on disk -> package name once installed (setup.py's package_dir).
SOURCE_ROOTS = {"es_rerank": "es_rerank", "training": "es_rerank.training", "export": "es_rerank.export"}

BASE = "base"
ALLOWED = {
    BASE: set(),
    "engine": {BASE},
    "data": {BASE, "engine"},
    "scoring": {BASE, "engine", "data"},
    "evaluation": {BASE, "engine", "data", "scoring"},
    "export": {BASE, "engine", "data", "scoring"},
    "proxy": {BASE, "engine", "data", "scoring", "evaluation"},
    "training": {BASE, "engine", "data", "scoring", "evaluation", "export"},
    "top": {BASE, "engine", "data", "scoring", "evaluation", "export", "proxy", "training"},
}
BASE_MODULES = {"es_rerank.errors", "es_rerank.types"}
TOP_MODULES = {"es_rerank", "es_rerank.__main__", "es_rerank.quickstart"}
LAYER_FOLDERS = set(ALLOWED) - {BASE, "top"}


def layer_of(module: str) -> str:
    """The layer a module belongs to.

    >>> layer_of("es_rerank.scoring.fusion"), layer_of("es_rerank.cli.serve_cmd"), layer_of("es_rerank.errors")
    ('scoring', 'top', 'base')
    """
    if module in BASE_MODULES:
        return BASE
    if module in TOP_MODULES or module.startswith("es_rerank.cli"):
        return "top"
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYER_FOLDERS:
        raise ValueError(f"{module} is in no layer: put it in one of the folders {sorted(LAYER_FOLDERS)} "
                         f"or name it in BASE_MODULES/TOP_MODULES here")
    return parts[1]


def product_modules() -> dict[str, Path]:
    found = {}
    for folder, package in SOURCE_ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            name = ".".join([package, *path.relative_to(REPO / folder).with_suffix("").parts])
            found[name.removesuffix(".__init__")] = path
    return found


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "es_rerank" or name.startswith("es_rerank.")}


def test_every_module_is_in_a_layer() -> None:
    for module in product_modules():
        layer_of(module)


def test_imports_point_downward() -> None:
    arrows = []
    for module, path in product_modules().items():
        own = layer_of(module)
        for target in imported_modules(path):
            theirs = layer_of(target)
            if theirs != own and theirs not in ALLOWED[own]:
                arrows.append(f"{module} ({own}) imports {target} ({theirs})")
    assert not arrows, "imports that point up or sideways:\n" + "\n".join(sorted(arrows))


@pytest.mark.parametrize("module", ["es_rerank.training.loop", "es_rerank.lab", "es_rerank.ab.thing"])
def test_a_module_outside_the_layers_is_named(module: str) -> None:
    if module == "es_rerank.training.loop":
        assert layer_of(module) == "training"
    else:
        with pytest.raises(ValueError, match="is in no layer"):
            layer_of(module)
