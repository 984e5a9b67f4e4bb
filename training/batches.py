"""Each step's micro-batches as tensors, built in DataLoader workers from pre-tokenized ids.

A micro-batch holds the pairs of `b` sampled groups flattened to (pairs, width) model inputs,
plus where each pair sits in the (b, group_size) score grid the losses read (`slots`), which
grid cells are real (`mask`), the teacher's scores on the same grid and which rows are
labelled; a group with fewer entries leaves cells empty rather than spending compute on
padding pairs. `score_grid` runs the model and lays its logits out on that grid.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import torch

from es_rerank.training.sampling import SampledGroup, UnitSampler, shard
from es_rerank.training.tokens import TokenStore

GRID_KEYS = ("mask", "teacher", "labelled", "positive_first")  # what the objectives read, besides the scores


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset: item `step` is this process's list of micro-batches for that step."""

    def __init__(self, sampler: UnitSampler, store: TokenStore, rank: int, world_size: int, grad_accum: int,
                 input_names: Sequence[str]) -> None:
        self.sampler = sampler
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.input_names = list(input_names)

    def __getitem__(self, step: int) -> dict:
        batch = self.sampler.step(step)
        micro = [grid_batch(groups, self.sampler.group_size, self.store, self.input_names)
                 for groups in shard(batch, self.rank, self.world_size, self.grad_accum)]
        return {"step": step, "micro": micro, "queries": len(batch),
                "global_pairs": sum(len(g.doc_ids) for g in batch)}


def grid_batch(groups: Sequence[SampledGroup], width: int, store: TokenStore, names: Sequence[str]) -> dict:
    """Model inputs of the groups' pairs, their grid slots, and the (groups, width) grids the losses read."""
    qids, doc_ids, slots = [], [], []
    mask = np.zeros((len(groups), width), dtype=bool)
    teacher = np.zeros((len(groups), width), dtype=np.float32)
    for row, group in enumerate(groups):
        for col, doc_id in enumerate(group.doc_ids):
            qids.append(group.qid)
            doc_ids.append(doc_id)
            slots.append(row * width + col)
        mask[row, :len(group.doc_ids)] = True
        teacher[row, :len(group.teacher)] = group.teacher
    arrays = store.pair_batch(qids, doc_ids)
    return {"inputs": {name: torch.from_numpy(arrays[name]) for name in names},
            "slots": torch.tensor(slots, dtype=torch.long), "mask": torch.from_numpy(mask),
            "teacher": torch.from_numpy(teacher), "labelled": torch.tensor([g.labelled for g in groups]),
            "positive_first": torch.tensor([g.positive_first for g in groups]),
            "pairs": len(slots), "tokens": int(arrays["attention_mask"].sum())}


def score_grid(model, batch: dict, device: torch.device, autocast_dtype: torch.dtype | None) -> torch.Tensor:
    """The model's logits for the batch's pairs, laid out on its (groups, width) grid (zeros where masked)."""
    with autocast(device, autocast_dtype):
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch["inputs"].items()}
        logits = model(**inputs).logits.view(-1).float()
    slots = batch["slots"].to(device, non_blocking=True)
    return logits.new_zeros(batch["mask"].numel()).index_copy(0, slots, logits).view(batch["mask"].shape)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast at `dtype`, or nothing for plain fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
