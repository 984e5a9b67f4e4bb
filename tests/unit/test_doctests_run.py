"""Docstring examples run as doctests: none is skipped."""

from __future__ import annotations

from tests.conftest import REPO

SKIP = "doctest: +" + "SKIP"   # spelled in two parts so this file does not match itself


def test_no_docstring_example_is_skipped():
    skipping = sorted(str(path.relative_to(REPO)) for folder in ("es_rerank", "training", "export", "lab")
                      for path in (REPO / folder).rglob("*.py") if SKIP in path.read_text(encoding="utf-8"))
    assert skipping == []
