"""The wheel ships the product only: no benchmark, reliability or GPU-machine module from lab/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

LAB_NAMES = ("reliability", "bench", "benchmark", "loadgen", "replay", "gpu_sweep", "adapt_gpu",
             "half_copy", "tar_parts", "adapt_carry", "loco_gpu", "loco_carry", "carry_limit", "open_rate",
             "stage_means", "passage_max", "loco_merge")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources, so no build/ folder lands in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("es_rerank", "training", "export", "lab"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--disable-pip-version-check", "-w", str(out), str(src)], check=True)
    (found,) = out.glob("es_rerank-*.whl")
    return found


def test_wheel_holds_no_lab_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "es_rerank/proxy/app.py" in modules and "es_rerank/training/loop.py" in modules
    assert not [n for n in names if n.startswith("lab/")]
    stems = {Path(n).stem for n in modules} | {p for n in modules for p in Path(n).parts[:-1]}
    assert not stems & set(LAB_NAMES), sorted(stems & set(LAB_NAMES))


def test_bench_outside_a_checkout_says_where_it_runs(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    result = subprocess.run([sys.executable, "-m", "es_rerank", "bench", "proxy", "--help"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "run it from a checkout" in result.stderr
    listed = subprocess.run([sys.executable, "-m", "es_rerank", "bench", "--help"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "fusion" in listed.stdout and "reliability" not in listed.stdout.split("Commands:")[1]
