"""A PyTorch scorer fed exactly the batches `OnnxScorer` runs: the parity reference of export
and the baseline of `es-rerank bench scorer`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.scoring.token_batches import EncodedBatch
from es_rerank.scoring.pair_encoding import PairEncoder

DTYPES = ("fp32", "fp16", "bf16")


class TorchScorer:
    """Scores `EncodedBatch`es with a Hugging Face classifier; implements the `Scorer` protocol."""

    def __init__(self, model, encoder: PairEncoder, input_names: Sequence[str], device: str,
                 batch_size: int = 64) -> None:
        """`model` is a loaded classifier already on `device` in the wanted dtype and eval mode."""
        self.model = model
        self.encoder = encoder
        self.input_names = list(input_names)
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def load(cls, checkpoint: str | Path, encoder: PairEncoder, device: str = "cpu", dtype: str = "fp32",
             attn_implementation: str = "sdpa", input_names: Sequence[str] = ("input_ids", "attention_mask",
                                                                              "token_type_ids"),
             batch_size: int = 64) -> "TorchScorer":
        """Load a one-logit checkpoint on `device` ("cpu" or "cuda") in `dtype` ("fp32", "fp16", "bf16").
        """
        import torch

        from es_rerank.export.checkpoints import load_classifier

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        model = load_classifier(checkpoint, attn_implementation=attn_implementation)
        torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        return cls(model.to(device=device, dtype=torch_dtype), encoder, input_names, device, batch_size)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Float32 logits in input order, batched exactly as `OnnxScorer` batches them.
        """
        scores = np.zeros(len(documents), dtype=np.float32)
        for batch in self.encoder.batches(queries, documents, self.batch_size):
            scores[batch.rows] = self.score_batch(batch)
        return scores

    def score_batch(self, batch: EncodedBatch) -> np.ndarray:
        """Float32 logits of one padded batch, in row order.
        """
        import torch

        with self._lock, torch.inference_mode():
            inputs = {name: torch.from_numpy(array).to(self.device)
                      for name, array in batch.arrays(self.input_names).items()}
            logits = self.model(**inputs).logits
            return logits.float().reshape(-1).cpu().numpy()
