"""`train()`: fine-tune a cross-encoder on mined groups, single process or one rank of torchrun.

Per step: every rank builds the same global batch of `queries_per_step` groups (sampling is a
function of seed and step), trains on its own slice in `grad_accum` micro-batches, and DDP
averages the gradients, so N processes compute the update one process would. Then AdamW with
linear warmup and linear decay. Rank 0 evaluates on the dev split every `eval_every` steps by
reranking the dev BM25 run through `rerank_hits`, and keeps the best checkpoint in `out_dir`.

Outputs in `out_dir`: the Hugging Face checkpoint (best dev nDCG@10, or the last step without a
dev run), `train_log.json` (loss, pairs/s, dev figures), `recipe.yaml` (the resolved settings)
and `state/` (to resume).

Example:
    >>> log = train(config, TrainInputs(Path("groups.jsonl"), Path("scifact"), Path("scifact"),
    ...             dev_run=Path("train-run.tsv"), qrels=Path("scifact")), Path("runs/lce-g8"))  # doctest: +SKIP
    >>> log["best"]["ndcg@10"]   # doctest: +SKIP
    0.71
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from es_rerank.datasets import read_qrels, read_queries
from es_rerank.errors import ConfigError, DatasetError
from es_rerank.mining import read_groups, read_run
from es_rerank.training import state as saved_state
from es_rerank.training.batches import StepBatches
from es_rerank.training.config import TrainConfig, write_recipe
from es_rerank.training.data import (check_run_documents, document_text, prepare_groups, read_corpus_sources,
                                     restrict_qrels, split_dev)
from es_rerank.training.distributed import Runtime, barrier, start_runtime, stop_runtime, sum_over_ranks
from es_rerank.training.evaluate import bm25_rankings, evaluate_scorer
from es_rerank.training.losses import group_loss
from es_rerank.training.metrics_eval import summary
from es_rerank.training.model import (input_names, load_cross_encoder, make_scorer, save_checkpoint,
                                      scoring_mode, unwrap)
from es_rerank.training.optim import build_optimizer, linear_warmup, resolve_precision
from es_rerank.training.sampling import GroupSampler
from es_rerank.training.throughput import Throughput
from es_rerank.training.tokens import TokenStore

EVAL_AUTOCAST = torch.float16  # on GPUs, evaluate as the fp16 export serves


@dataclass(frozen=True)
class TrainInputs:
    """The files a run reads. `dev_run` + `qrels` enable dev evaluation (dev queries are then held
    out of training); without them every group trains and the last step is kept."""

    groups: Path
    corpus: Path
    queries: Path
    dev_run: Path | None = None
    qrels: Path | None = None
    qrels_split: str = "train"


@dataclass
class DevSet:
    """Held-out training queries with their BM25 candidates and judgments."""

    qids: list[str]
    run: dict
    qrels: dict


def train(config: TrainConfig, inputs: TrainInputs, out_dir: Path, resume: bool = False,
          show_progress: bool = True, write_state: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run the training; returns the train log (also written to `out_dir/train_log.json` by rank 0).

    `resume` continues from `out_dir/state` when it exists; `write_state=False` skips saving
    that state (a sweep that never resumes saves the time and disk). `stop_after` ends this
    invocation after that many steps, leaving the state to resume from (for machines that are
    lent by the quarter hour); the final checkpoint is only written once all steps are done.
    """
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be at least 1 step, got {stop_after}")
    runtime = start_runtime()
    try:
        return _train(config, inputs, out_dir, resume, show_progress, write_state, stop_after, runtime)
    finally:
        stop_runtime(runtime)


def _train(config: TrainConfig, inputs: TrainInputs, out_dir: Path, resume: bool, show_progress: bool,
           write_state: bool, stop_after: int | None, runtime: Runtime) -> dict[str, Any]:
    config.check_world(runtime.world_size)
    autocast_dtype = resolve_precision(config.precision, runtime.device)
    torch.manual_seed(config.seed)  # the same fresh head on every rank and in a single process
    if runtime.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    data = load_data(config, inputs)
    model, tokenizer = load_cross_encoder(config.base_model, config.dropout)
    steps_data = StepBatches(GroupSampler(data.groups, config.group_size, config.queries_per_step, config.seed,
                                          config.neg_depth),
                             tokenize(data, tokenizer, config), runtime.rank, runtime.world_size, config.grad_accum,
                             config.loss, config.bce_balanced, input_names(tokenizer))
    model.to(runtime.device)
    model.train()
    parts = Parts(model, tokenizer, build_optimizer(model, config, runtime.device, config.optimizer), None,
                  torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16))
    parts.scheduler = linear_warmup(parts.optimizer, config.warmup_steps, config.steps)

    log: dict[str, Any] = {"config": config.to_dict(), "world_size": runtime.world_size,
                           "device": device_name(runtime.device), "train_queries": len(data.groups),
                           "dev_queries": len(data.dev.qids) if data.dev else 0,
                           "dev_qids": data.dev.qids if data.dev else [],
                           "group_problems": data.group_report.describe(), "loss_log": [], "dev": [], "best": None}
    start_step = 0
    if resume and saved_state.has_state(out_dir):
        start_step = _restore(out_dir, parts, config, runtime, log)
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_recipe(config, out_dir / "recipe.yaml")
        if data.dev is not None:
            log["dev_bm25"] = summary(bm25_rankings(data.dev.run, config.eval_depth), data.dev.qrels)

    loop = Loop(config, runtime, data, parts, out_dir, log, autocast_dtype, write_state,
                _progress(config.steps, start_step, show_progress and runtime.is_main))
    end_step = config.steps if stop_after is None else min(config.steps, start_step + stop_after)
    loop.run(steps_data, start_step, end_step)
    log["finished"] = log["steps_done"] == config.steps

    if runtime.is_main:
        if data.dev is None and log["finished"]:
            save_checkpoint(model, tokenizer, out_dir)
        (out_dir / "train_log.json").write_text(json.dumps(log, indent=2), encoding="utf-8")
    barrier(runtime)
    return log


@dataclass
class TrainingData:
    """Prepared training groups, the texts they need, and the dev set (None without a dev run)."""

    queries: dict[str, str]
    sources: dict[str, dict]
    groups: list
    group_report: Any
    dev: DevSet | None


def load_data(config: TrainConfig, inputs: TrainInputs) -> TrainingData:
    """Read the groups, queries, corpus and dev run; hold the dev queries out of training.

    Cached per process on the settings it depends on, so a sweep of many runs reads once.
    """
    return _load_data(inputs, _stamps(inputs), config.neg_depth, config.dev_fraction, config.split_seed,
                      config.eval_depth)


def _stamps(inputs: TrainInputs) -> tuple:
    """(path, size, mtime) of each input, so the cache notices a rewritten file."""
    paths = [inputs.groups, inputs.corpus, inputs.queries, inputs.dev_run, inputs.qrels]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p is not None and p.exists())


@functools.lru_cache(maxsize=2)
def _load_data(inputs: TrainInputs, stamps: tuple, neg_depth: int, dev_fraction: float, split_seed: int,
               eval_depth: int) -> TrainingData:
    del stamps  # part of the cache key only
    queries = read_queries(inputs.queries)
    groups = read_groups(inputs.groups)
    dev_qids: list[str] = []
    if inputs.dev_run is not None:
        if inputs.qrels is None:
            raise ConfigError("--dev-run needs --qrels (the judgments of the training split)")
        _, dev_qids = split_dev([g.qid for g in groups], dev_fraction, split_seed)
        held_out = set(dev_qids)
        groups = [g for g in groups if g.qid not in held_out]
    dev_run = {}
    if dev_qids:
        full_run = read_run(inputs.dev_run)
        dev_run = {qid: full_run.get(qid, [])[:eval_depth] for qid in dev_qids}
    wanted = {d for g in groups for d in (*g.positives, *g.negatives[:neg_depth])}
    wanted |= {h.doc_id for hits in dev_run.values() for h in hits}
    sources = read_corpus_sources(inputs.corpus, wanted)
    groups, group_report = prepare_groups(groups, sources, queries, neg_depth)
    if not groups:
        raise DatasetError(f"no usable training groups in {inputs.groups}: " + "; ".join(group_report.describe()),
                           hint="mine groups from the index that holds this corpus")
    dev = None
    if dev_qids:
        check_run_documents(dev_run, sources, "dev")
        dev = DevSet(dev_qids, dev_run, restrict_qrels(read_qrels(inputs.qrels, inputs.qrels_split), dev_qids))
    return TrainingData(queries, sources, groups, group_report, dev)


def tokenize(data: TrainingData, tokenizer, config: TrainConfig) -> TokenStore:
    """Tokenize every training query and document once, before the first step (cached per process
    on the data, the tokenizer's vocabulary and the lengths)."""
    key = (id(data), tokenizer.backend_tokenizer.to_str(), config.max_length, config.query_max_length)
    if _TOKEN_CACHE.get("key") != key:
        _TOKEN_CACHE.update(key=key, store=_tokenize(data, tokenizer, config))
    return _TOKEN_CACHE["store"]


_TOKEN_CACHE: dict[str, Any] = {}


def _tokenize(data: TrainingData, tokenizer, config: TrainConfig) -> TokenStore:
    store = TokenStore(tokenizer.backend_tokenizer, config.max_length, config.query_max_length,
                       int(tokenizer.pad_token_id or 0))
    store.add_queries({g.qid: data.queries[g.qid] for g in data.groups})
    store.add_documents({d: document_text(data.sources[d]) for g in data.groups for d in (*g.positives, *g.negatives)})
    return store


@dataclass
class Parts:
    """The model and what updates it."""

    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler


class Loop:
    """The step loop: train, log, evaluate, save state. Holds no data of its own beyond counters."""

    def __init__(self, config: TrainConfig, runtime: Runtime, data: TrainingData, parts: Parts, out_dir: Path,
                 log: dict, autocast_dtype, write_state: bool, bar) -> None:
        self.config, self.runtime, self.data, self.parts = config, runtime, data, parts
        self.out_dir, self.log, self.autocast_dtype, self.write_state, self.bar = \
            out_dir, log, autocast_dtype, write_state, bar
        self.meter = Throughput(runtime.device)

    def run(self, steps_data: StepBatches, start_step: int, end_step: int) -> None:
        config, runtime, parts = self.config, self.runtime, self.parts
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
        loss_acc = torch.zeros((), device=runtime.device)
        steps_in_acc = tokens = pairs = 0
        step = start_step
        for item in loader:
            step = item["step"] + 1
            train_step(trained, item, config, parts.optimizer, parts.scheduler, parts.scaler, self.autocast_dtype,
                       runtime, loss_acc)
            steps_in_acc += 1
            self.meter.count(item["global_pairs"], step - start_step)
            tokens += sum(b["tokens"] for b in item["micro"])
            pairs += sum(b["pairs"] for b in item["micro"])
            if step % config.log_every == 0 or step in (config.steps, end_step):
                self._log_loss(step, float(sum_over_ranks(loss_acc, runtime)) / steps_in_acc)
                loss_acc.zero_()
                steps_in_acc = 0
            if self.data.dev is not None and (step == config.steps or
                                              (config.eval_every and step % config.eval_every == 0)):
                self._paused(self._evaluate, step)
            if self.write_state and (step in (config.steps, end_step) or
                                     (config.save_every and step % config.save_every == 0)):
                self._paused(self._save_state, step)
            if self.bar is not None:
                self.bar.update(1)
        if self.bar is not None:
            self.bar.close()
        self.log.update({"steps_done": step, "train_seconds": self.meter.seconds, "pairs_per_s": self.meter.rate(),
                         "pairs_per_step": config.pairs_per_step,
                         "mean_tokens_per_pair": tokens / pairs if pairs else None})

    def _log_loss(self, step: int, mean_loss: float) -> None:
        rate = self.meter.rate()
        self.log["loss_log"].append({"step": step, "loss": mean_loss, "lr": self.parts.scheduler.get_last_lr()[0],
                                     "pairs_per_s": rate})
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", pairs_s=f"{rate:,.0f}" if rate else "-", refresh=False)

    def _paused(self, action, step: int) -> None:
        """Run `action(step)` with the throughput clock stopped."""
        self.meter.pause()
        action(step)
        self.meter.resume()

    def _evaluate(self, step: int) -> None:
        """Rank 0 reranks the dev run through `rerank_hits`; a new best is saved as the checkpoint."""
        if self.runtime.is_main:
            config, parts, dev = self.config, self.parts, self.data.dev
            scorer = make_scorer(parts.model, parts.tokenizer, config.max_length, config.query_max_length,
                                 self.runtime.device, config.eval_batch_size)
            with scoring_mode(parts.model, self.runtime.device, EVAL_AUTOCAST):
                figures = evaluate_scorer(scorer, dev.run, self.data.queries, self.data.sources, dev.qrels,
                                          config.eval_depth)
            entry = {"step": step, **figures}
            self.log["dev"].append(entry)
            best = self.log["best"]
            if best is None or figures["ndcg@10"] > best["ndcg@10"]:
                self.log["best"] = best = entry
                save_checkpoint(parts.model, parts.tokenizer, self.out_dir)
            if self.bar is not None:
                self.bar.write(f"step {step}: dev nDCG@10 {figures['ndcg@10']:.4f} MRR@10 {figures['mrr@10']:.4f} "
                               f"(best {best['ndcg@10']:.4f} at step {best['step']})")
        barrier(self.runtime)

    def _save_state(self, step: int) -> None:
        parts, payload = self.parts, None
        if self.runtime.is_main:
            payload = {"model": unwrap(parts.model).state_dict(), "optimizer": parts.optimizer.state_dict(),
                       "scheduler": parts.scheduler.state_dict(), "scaler": parts.scaler.state_dict(), "step": step,
                       "config": self.config.to_dict(),
                       "log": {k: self.log[k] for k in ("loss_log", "dev", "best")}}
        saved_state.save_state(self.out_dir, self.runtime.rank, payload)
        barrier(self.runtime)


def _restore(out_dir: Path, parts: Parts, config: TrainConfig, runtime: Runtime, log: dict) -> int:
    """Load the saved state into `parts` and `log`; returns the step to continue from."""
    payload = saved_state.load_state(out_dir, runtime.rank, config, runtime.device)
    parts.model.load_state_dict(payload["model"])
    parts.optimizer.load_state_dict(payload["optimizer"])
    parts.scheduler.load_state_dict(payload["scheduler"])
    parts.scaler.load_state_dict(payload["scaler"])
    log.update({k: payload["log"][k] for k in ("loss_log", "dev", "best")})
    log["resumed_from_step"] = payload["step"]
    return payload["step"]


def train_step(model, item: dict, config: TrainConfig, optimizer, scheduler, scaler, autocast_dtype,
               runtime: Runtime, loss_acc: torch.Tensor) -> None:
    """One optimizer step over this rank's micro-batches; adds the step's loss to `loss_acc` (no sync)."""
    device = runtime.device
    micro = item["micro"]
    scale = runtime.world_size / item["normaliser"]  # DDP averages over ranks; undo that to get the global sum
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        sync = contextlib.nullcontext() if last or not runtime.distributed else model.no_sync()
        with sync:
            with _autocast(device, autocast_dtype):
                inputs = {k: v.to(device, non_blocking=True) for k, v in batch["inputs"].items()}
                logits = model(**inputs).logits.view(-1)
            slots = batch["slots"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)
            grid = logits.float().new_zeros(mask.numel()).index_copy(0, slots, logits.float()).view(mask.shape)
            per_query = group_loss(config.loss, grid, mask, config.bce_balanced)
            local_sum = per_query.sum()
            loss_acc += local_sum.detach() / item["normaliser"]
            scaler.scale(local_sum * scale).backward()
    if config.max_grad_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _progress(total: int, initial: int, enabled: bool):
    if not enabled or os.environ.get("ES_RERANK_NO_PROGRESS"):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True, mininterval=1.0)


