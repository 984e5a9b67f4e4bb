"""Lay the tree out as the wheel installs it, for tools that cannot read setup.py's package_dir.

setup.py installs `training/` as `es_rerank.training` and `export/` as `es_rerank.export`; mypy
resolves modules from folders only. This builds OUT/es_rerank from symlinks (the package's own
entries plus one per package_dir entry, read from setup.py, so the mapping is said only there),
and links `lab/` and `tests/` beside it. Prints `module-folder=repo-folder` per mapped package.

    python scripts/installed_layout.py build/typecheck
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BESIDE = ("lab", "tests")


def package_dir(setup_py: Path) -> dict[str, str]:
    """The `package_dir=` literal of the `setup()` call in `setup_py`."""
    for node in ast.walk(ast.parse(setup_py.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "package_dir":
                    return ast.literal_eval(keyword.value)
    raise SystemExit(f"error: {setup_py} has no package_dir= literal in setup(); the layout needs it")


def build(out: Path) -> dict[str, str]:
    mapping = package_dir(REPO / "setup.py")
    if out.exists():
        shutil.rmtree(out)
    (out / "es_rerank").mkdir(parents=True)
    for entry in (REPO / "es_rerank").iterdir():
        if entry.name != "__pycache__":
            (out / "es_rerank" / entry.name).symlink_to(entry)
    for module, folder in mapping.items():
        (out / Path(*module.split("."))).symlink_to(REPO / folder)
    for name in BESIDE:
        (out / name).symlink_to(REPO / name)
    return {module.replace(".", "/"): folder for module, folder in mapping.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/installed_layout.py OUT_FOLDER")
    for module_folder, folder in build(Path(sys.argv[1]).resolve()).items():
        print(f"{module_folder}={folder}")
