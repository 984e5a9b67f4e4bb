"""Another version of one of the project's modules, loaded from a file, for a same-run comparison."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_module(path: Path, name: str) -> ModuleType:
    """The module in `path` (e.g. `git show REV:FILE > OLD.py`), under the module name `name`.

    Example:
        >>> load_module(Path("no/such/file.py"), "old")
        Traceback (most recent call last):
        ...
        SystemExit: no/such/file.py does not exist: write the other version there first (git show REV:FILE > FILE)
    """
    if not Path(path).is_file():
        raise SystemExit(f"{path} does not exist: write the other version there first (git show REV:FILE > FILE)")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
