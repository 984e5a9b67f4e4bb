"""`fit()`: the one training loop, single process or one rank of torchrun, for every objective.

A task brings what differs between kinds of fine-tuning (`Task`): its data as training units
and tokens, its objective (`training.losses`: supervised LCE/BCE, or distillation with KL or
Margin-MSE), its evaluation and its records. `supervised.train()` (`es-rerank train`) and
`adapt.adapt()` (`es-rerank adapt`) are such tasks; everything else is here, once: seeding,
precision, the optimizer and its schedule, the DataLoader, DDP, gradient accumulation,
throughput, resumable state and the log.

Per step: every rank builds the same global batch of `queries_per_step` groups (sampling is a
function of seed and step), trains on its own slice in `grad_accum` micro-batches, and DDP
averages the gradients, so N processes compute the update one process would. Then AdamW with
linear warmup and linear decay.

State (`state/`, to resume) is saved every `save_every` steps, at the last step when
`save_every` is set, and whenever `stop_after` ends an invocation early; a run that finishes
with `save_every: 0` removes any state it left, so a stale mid-run state cannot mislead
`--resume`. A resumed run must read the same groups file (its sha256 is in the state).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from es_rerank.data.textfiles import file_sha256
from es_rerank.errors import ConfigError
from es_rerank.training import state as saved_state
from es_rerank.training.batches import GRID_KEYS, StepBatches, score_grid
from es_rerank.training.config import FineTuningConfig
from es_rerank.training.distributed import Runtime, barrier, start_runtime, stop_runtime, sum_over_ranks
from es_rerank.training.estimate import StepTimer
from es_rerank.training.losses import Objective
from es_rerank.training.model import input_names, load_cross_encoder, unwrap
from es_rerank.training.optim import build_optimizer, linear_warmup, resolve_precision
from es_rerank.training.provenance import deterministic_mode, run_provenance, write_provenance
from es_rerank.training.sampling import UnitSampler
from es_rerank.training.throughput import Throughput
from es_rerank.training.tokens import TokenStore


@dataclass
class Prepared:
    """What a task hands the loop once the model and tokenizer are loaded."""

    sampler: UnitSampler
    store: TokenStore
    total_steps: int


class Task(Protocol):
    """One kind of fine-tuning around the loop. Hooks other than `prepare` run on rank 0 only."""

    label: str              # the progress bar's name
    log_name: str           # the log's file name in the output folder
    groups: Path            # the training data file; a resumed run must read the same bytes
    resumed_log: tuple[str, ...]  # log entries (besides loss_log) that a resumed run carries on

    def prepare(self, model: torch.nn.Module, tokenizer) -> Prepared:
        """Units, tokens and the number of steps (every rank)."""

    def header(self) -> dict[str, Any]:
        """The task's fields at the top of the log."""

    def write_recipe(self, path: Path) -> None:
        """Save the settings that repeat this run."""

    def begin(self, trainer: "Loop", resumed: bool) -> None:
        """Before the first step of this invocation."""

    def evaluates_at(self, step: int) -> bool:
        """Whether `evaluate` runs after `step`."""

    def evaluate(self, trainer: "Loop", step: int) -> None:
        """Measure the model mid-run (and keep the best checkpoint, if the task selects one)."""

    def finish(self, trainer: "Loop") -> None:
        """After the last step of a finished run: final measures and the checkpoint, unless evaluate kept one."""


def fit(config: FineTuningConfig, task: Task, out_dir: Path, resume: bool = False, show_progress: bool = True,
        write_state: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run the training; returns the log (also written to `out_dir/<task.log_name>` by rank 0).

    `resume` continues from `out_dir/state` when it exists; `write_state=False` skips saving
    that state (a sweep that never resumes saves the time and disk). `stop_after` ends this
    invocation after that many steps, leaving the state to resume from (for machines that are
    lent by the quarter hour); the final checkpoint is only written once all steps are done.
    """
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be at least 1 step, got {stop_after}")
    with deterministic_mode(config.deterministic):
        runtime = start_runtime()
        try:
            return _fit(config, task, out_dir, resume, show_progress, write_state, stop_after, runtime)
        finally:
            stop_runtime(runtime)


def _fit(config: FineTuningConfig, task: Task, out_dir: Path, resume: bool, show_progress: bool,
         write_state: bool, stop_after: int | None, runtime: Runtime) -> dict[str, Any]:
    config.check_world(runtime.world_size)
    autocast_dtype = resolve_precision(config.precision, runtime.device)
    torch.manual_seed(config.seed)  # the same fresh head on every rank and in a single process
    if runtime.device.type == "cuda" and not config.deterministic:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model, tokenizer = load_cross_encoder(config.base_model, config.dropout)
    prepared = task.prepare(model, tokenizer)
    steps_data = StepBatches(prepared.sampler, prepared.store, runtime.rank, runtime.world_size, config.grad_accum,
                             input_names(tokenizer))
    total = prepared.total_steps
    model.to(runtime.device)
    model.train()
    parts = Parts(model, tokenizer, build_optimizer(model, config, runtime.device), None,
                  torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16))
    parts.scheduler = linear_warmup(parts.optimizer, int(round(total * config.warmup_fraction)), total)

    log: dict[str, Any] = {"config": config.to_dict(), "world_size": runtime.world_size,
                           "device": device_name(runtime.device), "groups_file": task.groups.name,
                           "groups_sha256": file_sha256(task.groups), **task.header(),
                           "total_steps": total, "loss_log": []}
    start_step = 0
    resumed = resume and saved_state.has_state(out_dir)
    if resumed:
        start_step = _restore(out_dir, parts, config, runtime, log, task)
    trainer = Loop(config, task, runtime, parts, out_dir, log, autocast_dtype, write_state, total,
                   _progress(task.label, total, start_step, show_progress and runtime.is_main))
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        task.write_recipe(out_dir / "recipe.yaml")
        write_provenance(out_dir, run_provenance(out_dir / "recipe.yaml", task.groups, config.seed,
                                                 config.deterministic, runtime.world_size))
        task.begin(trainer, resumed)
    barrier(runtime)

    end_step = total if stop_after is None else min(total, start_step + stop_after)
    trainer.run(steps_data, start_step, end_step)
    log["finished"] = log["steps_done"] == total

    if runtime.is_main:
        if log["finished"]:
            task.finish(trainer)
            if write_state and not config.save_every:
                shutil.rmtree(saved_state.state_dir(out_dir), ignore_errors=True)
        (out_dir / task.log_name).write_text(json.dumps(log, indent=2, default=_plain), encoding="utf-8")
    barrier(runtime)
    return log


@dataclass
class Parts:
    """The model and what updates it."""

    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler


class LossSums:
    """This log interval's loss and logged parts, summed on the device (no sync until read)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss = torch.zeros((), device=device)
        self.parts: dict[str, torch.Tensor] = {}  # name -> (sum, rows)
        self.steps = 0

    def add(self, normalised_loss: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        self.loss += normalised_loss
        for name, per_query in values.items():
            if name == "loss":
                continue
            known = ~per_query.isnan()
            pair = torch.stack([per_query.detach().masked_fill(~known, 0.0).sum(), known.sum().float()])
            self.parts[name] = self.parts[name] + pair if name in self.parts else pair

    def read(self, runtime: Runtime) -> dict[str, float | None]:
        """Mean loss per step and mean of each part over its rows, over every rank; then zero."""
        figures: dict[str, float | None] = {"loss": float(sum_over_ranks(self.loss, runtime)) / self.steps}
        for name, pair in self.parts.items():
            total, rows = sum_over_ranks(pair, runtime).tolist()
            figures[name] = total / rows if rows else None
        self.loss.zero_()
        self.parts, self.steps = {}, 0
        return figures


class Loop:
    """The step loop: train, log, evaluate, save state. Holds no data of its own beyond counters."""

    def __init__(self, config: FineTuningConfig, task: Task, runtime: Runtime, parts: Parts, out_dir: Path,
                 log: dict, autocast_dtype, write_state: bool, total_steps: int, bar) -> None:
        self.config, self.task, self.runtime, self.parts = config, task, runtime, parts
        self.out_dir, self.log, self.autocast_dtype, self.write_state, self.total_steps, self.bar = \
            out_dir, log, autocast_dtype, write_state, total_steps, bar
        self.objective: Objective = config.objective()
        self.meter = Throughput(runtime.device)

    def run(self, steps_data: StepBatches, start_step: int, end_step: int) -> None:
        config, runtime, parts, total = self.config, self.runtime, self.parts, self.total_steps
        trained = parts.model
        if runtime.distributed:
            trained = torch.nn.parallel.DistributedDataParallel(
                parts.model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None)
        if config.compile:
            trained = torch.compile(trained)
        # Its own generator: the loader must not draw from the global RNG, whose state (dropout)
        # a resumed run restores exactly.
        loader = torch.utils.data.DataLoader(
            steps_data, batch_size=None, sampler=range(start_step, end_step), num_workers=config.num_workers,
            pin_memory=runtime.device.type == "cuda", prefetch_factor=4 if config.num_workers else None,
            generator=torch.Generator().manual_seed(config.seed))
        sums = LossSums(runtime.device)
        tokens = pairs = 0
        step = start_step
        timer = self._step_timer(start_step, end_step)
        clock = time.perf_counter()
        for item in loader:
            step = item["step"] + 1
            self.train_step(trained, item, sums)
            if timer is not None and (line := timer.took(time.perf_counter() - clock)):
                self.say(line)
            self.meter.count(item["global_pairs"], step - start_step)
            tokens += sum(b["tokens"] for b in item["micro"])
            pairs += sum(b["pairs"] for b in item["micro"])
            if step % config.log_every == 0 or step in (total, end_step):
                self._log_loss(step, sums.read(runtime))
            if self.task.evaluates_at(step):
                self._paused(self._evaluate, step)
            stopping_early = step == end_step < total
            if self.write_state and (stopping_early or (config.save_every and (step % config.save_every == 0
                                                                               or step == total))):
                self._paused(self._save_state, step)
            if self.bar is not None:
                self.bar.update(1)
            clock = time.perf_counter()  # evaluation and saving are not steps
        if self.bar is not None:
            self.bar.close()
        self.log.update({"steps_done": step, "train_seconds": self.meter.seconds, "pairs_per_s": self.meter.rate(),
                         "pairs_per_step": config.pairs_per_step,
                         "mean_tokens_per_pair": tokens / pairs if pairs else None})

    def _step_timer(self, start_step: int, end_step: int) -> StepTimer | None:
        """On the CPU, where a run takes minutes to hours, rank 0 says at the start how long it will take."""
        if self.runtime.device.type != "cpu" or not self.runtime.is_main:
            return None
        evaluations = sum(self.task.evaluates_at(s) for s in range(start_step + 1, end_step + 1))
        return StepTimer(end_step - start_step, self.config.pairs_per_step, evaluations)

    def train_step(self, model, item: dict, sums: LossSums) -> None:
        """One optimizer step over this rank's micro-batches; adds the step's loss to `sums` (no sync)."""
        runtime, parts = self.runtime, self.parts
        device = runtime.device
        micro = item["micro"]
        normaliser = self.objective.normaliser(item["queries"], item["global_pairs"])
        scale = runtime.world_size / normaliser  # DDP averages over ranks; undo that to get the global sum
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if last or not runtime.distributed else model.no_sync()
            with sync:
                scores = score_grid(model, batch, device, self.autocast_dtype)
                values = self.objective.losses(scores, {k: batch[k].to(device, non_blocking=True) for k in GRID_KEYS})
                local_sum = values["loss"].sum()
                sums.add(local_sum.detach() / normaliser, values)
                parts.scaler.scale(local_sum * scale).backward()
        sums.steps += 1
        if self.config.max_grad_norm > 0:
            parts.scaler.unscale_(parts.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)

    def _log_loss(self, step: int, figures: dict[str, float | None]) -> None:
        rate = self.meter.rate()
        self.log["loss_log"].append({"step": step, **figures, "lr": self.parts.scheduler.get_last_lr()[0],
                                     "pairs_per_s": rate})
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{figures['loss']:.4f}", pairs_s=f"{rate:,.0f}" if rate else "-",
                                 refresh=False)

    def _paused(self, action, step: int) -> None:
        """Run `action(step)` with the throughput clock stopped."""
        self.meter.pause()
        action(step)
        self.meter.resume()

    def _evaluate(self, step: int) -> None:
        if self.runtime.is_main:
            self.task.evaluate(self, step)
        barrier(self.runtime)

    def _save_state(self, step: int) -> None:
        parts, payload = self.parts, None
        if self.runtime.is_main:
            payload = {"model": unwrap(parts.model).state_dict(), "optimizer": parts.optimizer.state_dict(),
                       "scheduler": parts.scheduler.state_dict(), "scaler": parts.scaler.state_dict(), "step": step,
                       "config": self.config.to_dict(), "groups_sha256": self.log["groups_sha256"],
                       "log": {k: self.log[k] for k in ("loss_log", *self.task.resumed_log)}}
        saved_state.save_state(self.out_dir, self.runtime.rank, payload)
        barrier(self.runtime)

    def write(self, message: str) -> None:
        """A line for the person watching (above the progress bar when there is one)."""
        if self.bar is not None:
            self.bar.write(message)

    def say(self, message: str) -> None:
        """A line the person must see: above the progress bar, else on stderr."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)


def _restore(out_dir: Path, parts: Parts, config: FineTuningConfig, runtime: Runtime, log: dict, task: Task) -> int:
    """Load the saved state into `parts` and `log`; returns the step to continue from."""
    payload = saved_state.load_state(out_dir, runtime.rank, config, runtime.device)
    if payload.get("groups_sha256") != log["groups_sha256"]:
        raise ConfigError(f"cannot resume {out_dir}: the groups file differs from the one the run started with",
                          hint="resume with the same --groups file, or start a new output folder")
    parts.model.load_state_dict(payload["model"])
    parts.optimizer.load_state_dict(payload["optimizer"])
    parts.scheduler.load_state_dict(payload["scheduler"])
    parts.scaler.load_state_dict(payload["scaler"])
    log.update({k: payload["log"][k] for k in ("loss_log", *task.resumed_log)})
    log["resumed_from_step"] = payload["step"]
    return payload["step"]


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _progress(label: str, total: int, initial: int, enabled: bool):
    if not enabled or os.environ.get("ES_RERANK_NO_PROGRESS"):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True, mininterval=1.0)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
