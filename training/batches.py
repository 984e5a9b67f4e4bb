"""Each step's micro-batches as tensors, built in DataLoader workers from pre-tokenized ids.

A micro-batch holds the pairs of `b` sampled groups flattened to (pairs, width) model inputs,
plus where each pair sits in the (b, group_size) score grid the losses read (`slots`) and
which grid cells are real (`mask`); a group with fewer negatives leaves cells empty rather
than spending compute on padding pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from es_rerank.training.losses import normaliser
from es_rerank.training.sampling import GroupSampler, SampledGroup, shard
from es_rerank.training.tokens import TokenStore


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset: item `step` is this process's list of micro-batches for that step."""

    def __init__(self, sampler: GroupSampler, store: TokenStore, rank: int, world_size: int, grad_accum: int,
                 loss: str, bce_balanced: bool, input_names: Sequence[str]) -> None:
        self.sampler = sampler
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.loss = loss
        self.bce_balanced = bce_balanced
        self.input_names = list(input_names)

    def __getitem__(self, step: int) -> dict:
        batch = self.sampler.step(step)
        global_pairs = sum(len(g.doc_ids) for g in batch)
        micro = [self.micro_batch(groups) for groups in shard(batch, self.rank, self.world_size, self.grad_accum)]
        return {"step": step, "micro": micro, "global_pairs": global_pairs,
                "normaliser": normaliser(self.loss, self.bce_balanced, len(batch), global_pairs)}

    def micro_batch(self, groups: Sequence[SampledGroup]) -> dict:
        """Model inputs of the groups' pairs, their grid slots and the grid mask."""
        width = self.sampler.group_size
        qids, doc_ids, slots = [], [], []
        mask = np.zeros((len(groups), width), dtype=bool)
        for row, group in enumerate(groups):
            for col, doc_id in enumerate(group.doc_ids):
                qids.append(group.qid)
                doc_ids.append(doc_id)
                slots.append(row * width + col)
            mask[row, :len(group.doc_ids)] = True
        arrays = self.store.pair_batch(qids, doc_ids)
        inputs = {name: torch.from_numpy(arrays[name]) for name in self.input_names}
        return {"inputs": inputs, "slots": torch.tensor(slots, dtype=torch.long), "mask": torch.from_numpy(mask),
                "pairs": len(slots), "tokens": int(arrays["attention_mask"].sum())}
