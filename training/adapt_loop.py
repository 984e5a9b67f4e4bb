"""`adapt()`: distil a teacher's ranking of pseudo-query groups into a cross-encoder (one process).

Per step: `queries_per_step` units (pseudo groups, and labelled groups when the file has them)
are sampled as a function of (seed, step); each pseudo group contributes its masked positive
and `group_size - 1` of its BM25 hits with the teacher's scores (`adapt_teacher`), and the
student is trained with listwise KL or Margin-MSE (`adapt_losses`); labelled groups add LCE.
AdamW with linear warmup and decay, as `es-rerank train`.

Before the first and after the last step the distillation loss is measured on a fixed probe
set of `probe_queries` pseudo groups in eval mode (no dropout): `probe_loss.before/after` in
the log says whether the student moved towards the teacher, which a noisy training loss
cannot say on a short run.

Outputs in `out_dir`: the Hugging Face checkpoint of the last step (there are no judgments to
pick another by), `adapt_log.json`, `recipe.yaml` (prepare and train settings) and `state/`
(resume with the same settings and groups file): saved every `save_every` steps and whenever
`stop_after` ends a run early; with `save_every: 0` a finished run leaves none.

Example:
    >>> log = adapt(config, AdaptInputs(Path("runs/adapt-cranfield/groups.jsonl.gz")),
    ...             Path("runs/adapt-cranfield"))   # doctest: +SKIP
    >>> log["probe_loss"]["after"] < log["probe_loss"]["before"]   # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from es_rerank.errors import ConfigError, DatasetError
from es_rerank.training import state as saved_state
from es_rerank.training.adapt_config import AdaptConfig, write_adapt_recipe
from es_rerank.training.adapt_groups import AdaptGroups, read_adapt_groups
from es_rerank.training.adapt_losses import distill_loss, mixed_loss
from es_rerank.training.adapt_sampling import SampledUnit, TrainingUnit, UnitSampler
from es_rerank.training.adapt_teacher import teacher_scores
from es_rerank.training.model import (input_names, load_cross_encoder, make_scorer, save_checkpoint,
                                      scoring_mode)
from es_rerank.training.optim import build_optimizer, linear_warmup, resolve_precision
from es_rerank.training.throughput import Throughput
from es_rerank.training.tokens import TokenStore

LABELLED_PREFIX = "labelled:"
EVAL_BATCH = 128


@dataclass(frozen=True)
class AdaptInputs:
    """What a run reads: the prepared groups, the prepare settings to record, and optional dev files
    (a scored candidates file of judged queries and its qrels) measured after the last step."""

    groups: Path
    prepare: dict | None = None
    dev_candidates: Path | None = None
    dev_qrels: Path | None = None
    dev_split: str = "train"


def adapt(config: AdaptConfig, inputs: AdaptInputs, out_dir: Path, resume: bool = False,
          show_progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run the adaptation; returns the log (also written to `out_dir/adapt_log.json`).

    `stop_after` ends this invocation after that many steps, leaving `state/` to resume from;
    the checkpoint is written once every step is done.
    """
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be at least 1 step, got {stop_after}")
    if inputs.dev_candidates is not None and inputs.dev_qrels is None:
        raise ConfigError("--dev-candidates needs --dev-qrels (the judgments of those queries)")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    autocast_dtype = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)  # the same fresh head for the same seed
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    groups = read_adapt_groups(inputs.groups)
    units = training_units(groups, config)
    model, tokenizer = load_cross_encoder(config.base_model, config.dropout)
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    store = token_store(groups, tokenizer, config)
    sampler = UnitSampler(units, config.group_size, config.queries_per_step, config.seed, config.include_positive)
    total_steps = sampler.steps_for(config.epochs)
    model.to(device)
    optimizer = build_optimizer(model, config, device)
    scheduler = linear_warmup(optimizer, int(round(total_steps * config.warmup_fraction)), total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    probe = probe_batch(units, config)
    names = input_names(tokenizer)

    log: dict[str, Any] = {"config": config.to_dict(), "groups_file": inputs.groups.name,
                           "groups_fingerprint": fingerprint(inputs.groups), "groups_meta": groups.meta,
                           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                           "units": {"pseudo": len(groups.pseudo), "labelled": len(groups.labelled)},
                           "total_steps": total_steps, "loss_log": [], "probe_loss": {}}
    start_step = 0
    if resume and saved_state.has_state(out_dir):
        start_step = _restore(out_dir, config, device, model, optimizer, scheduler, scaler, log)
    else:
        log["probe_loss"]["before"] = probe_loss(model, store, probe, config, device, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_adapt_recipe(inputs.prepare or groups.meta.get("settings"), config, out_dir / "recipe.yaml")

    end_step = total_steps if stop_after is None else min(total_steps, start_step + stop_after)
    steps = AdaptBatches(sampler, store, names)
    loader = torch.utils.data.DataLoader(
        steps, batch_size=None, sampler=range(start_step, end_step), num_workers=config.num_workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if config.num_workers else None,
        generator=torch.Generator().manual_seed(config.seed))
    bar = _progress(total_steps, start_step, show_progress)
    meter = Throughput(device)
    model.train()
    loss_sum = distill_sum = torch.zeros((), device=device)
    in_sum = 0
    step = start_step
    for batch in loader:
        step = batch["step"] + 1
        loss, distill = train_step(model, batch, config, optimizer, scheduler, scaler, autocast_dtype, device)
        loss_sum, distill_sum, in_sum = loss_sum + loss, distill_sum + distill, in_sum + 1
        meter.count(batch["pairs"], step - start_step)
        if step % config.log_every == 0 or step in (total_steps, end_step):
            entry = {"step": step, "loss": float(loss_sum) / in_sum, "distill": float(distill_sum) / in_sum,
                     "lr": scheduler.get_last_lr()[0], "pairs_per_s": meter.rate()}
            log["loss_log"].append(entry)
            loss_sum = distill_sum = torch.zeros((), device=device)
            in_sum = 0
            if bar is not None:
                rate = entry["pairs_per_s"]
                bar.set_postfix(loss=f"{entry['loss']:.4f}", pairs_s=f"{rate:,.0f}" if rate else "-", refresh=False)
        stopping_early = step == end_step < total_steps
        if stopping_early or (config.save_every and (step % config.save_every == 0 or step == total_steps)):
            meter.pause()
            _save(out_dir, config, step, model, optimizer, scheduler, scaler, log)
            meter.resume()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    log.update({"steps_done": step, "finished": step == total_steps, "train_seconds": meter.seconds,
                "pairs_per_s": meter.rate()})
    if log["finished"]:
        log["probe_loss"]["after"] = probe_loss(model, store, probe, config, device, names)
        save_checkpoint(model, tokenizer, out_dir)
        if not config.save_every:
            shutil.rmtree(saved_state.state_dir(out_dir), ignore_errors=True)  # a stale mid-run state misleads --resume
        if inputs.dev_candidates is not None:
            log["dev"] = _evaluate_dev(model, tokenizer, config, device, inputs)
    (out_dir / "adapt_log.json").write_text(json.dumps(log, indent=2, default=_plain), encoding="utf-8")
    return log


def training_units(groups: AdaptGroups, config: AdaptConfig) -> list[TrainingUnit]:
    """Pseudo groups with their teacher scores, then labelled groups (judged positives first).

    Example:
        >>> units = training_units(read_adapt_groups("groups.jsonl.gz"), config)   # doctest: +SKIP
    """
    weights = config.teacher_weights()
    missing = [n for n in ("bm25", "dense", "ce") if getattr(weights, n) > 0 and n not in groups.score_names()]
    if groups.pseudo and missing:
        raise DatasetError(f"the teacher weighs {', '.join(missing)} but the groups file has only "
                           f"{', '.join(groups.score_names())} scores",
                           hint="prepare it with the missing teacher (--dense / --ce), or set those weights to 0")
    units = []
    for group in groups.pseudo:
        if group.size < 2 or (config.train_sources is not None and group.source not in config.train_sources):
            continue
        units.append(TrainingUnit(group.qid, tuple(group.entry_keys()), teacher_scores(group, weights),
                                  False, group.has_positive))
    for group in groups.labelled:
        keys = (*group.positives, *group.negatives)
        units.append(TrainingUnit(LABELLED_PREFIX + group.qid, keys, None, True, True, len(group.positives)))
    if not units:
        raise DatasetError("the groups file has no group with two or more entries"
                           + (f" from sources {', '.join(config.train_sources)}" if config.train_sources else ""),
                           hint="prepare it again with a larger depth, or train on other sources")
    return units


def token_store(groups: AdaptGroups, tokenizer, config: AdaptConfig) -> TokenStore:
    """Every query and document text of the file, tokenized once (pairs as the serving PairEncoder cuts them)."""
    store = TokenStore(tokenizer.backend_tokenizer, config.max_length, config.query_max_length,
                       int(tokenizer.pad_token_id or 0))
    store.add_queries({g.qid: g.query for g in groups.pseudo})
    store.add_queries({LABELLED_PREFIX + g.qid: g.query for g in groups.labelled})
    store.add_documents({g.positive_key: g.positive for g in groups.pseudo if g.has_positive})
    store.add_documents(groups.docs)
    return store


class AdaptBatches(torch.utils.data.Dataset):
    """Map-style dataset: item `step` is that step's model inputs, grid slots, mask and teacher grid."""

    def __init__(self, sampler: UnitSampler, store: TokenStore, names: Sequence[str]) -> None:
        self.sampler, self.store, self.names = sampler, store, list(names)

    def __getitem__(self, step: int) -> dict:
        return {"step": step, **grid_batch(self.sampler.step(step), self.sampler.group_size, self.store, self.names)}


def grid_batch(units: Sequence[SampledUnit], width: int, store: TokenStore, names: Sequence[str]) -> dict:
    """Model inputs for the units' pairs and the (units, width) grids the losses read."""
    qids, doc_ids, slots = [], [], []
    mask = np.zeros((len(units), width), dtype=bool)
    teacher = np.zeros((len(units), width), dtype=np.float32)
    for row, unit in enumerate(units):
        for col, key in enumerate(unit.keys):
            qids.append(unit.query_key)
            doc_ids.append(key)
            slots.append(row * width + col)
        mask[row, :len(unit.keys)] = True
        teacher[row, :len(unit.keys)] = unit.teacher
    arrays = store.pair_batch(qids, doc_ids)
    return {"inputs": {name: torch.from_numpy(arrays[name]) for name in names},
            "slots": torch.tensor(slots, dtype=torch.long), "mask": torch.from_numpy(mask),
            "teacher": torch.from_numpy(teacher), "labelled": torch.tensor([u.labelled for u in units]),
            "positive_first": torch.tensor([u.positive_first for u in units]),
            "pairs": len(slots)}


def scores_grid(model, batch: dict, device: torch.device, autocast_dtype) -> torch.Tensor:
    """The student's logits laid out on the batch's (units, width) grid (zeros where masked)."""
    with _autocast(device, autocast_dtype):
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch["inputs"].items()}
        logits = model(**inputs).logits.view(-1).float()
    mask = batch["mask"].to(device)
    slots = batch["slots"].to(device, non_blocking=True)
    return logits.new_zeros(mask.numel()).index_copy(0, slots, logits).view(mask.shape)


def train_step(model, batch: dict, config: AdaptConfig, optimizer, scheduler, scaler, autocast_dtype,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; returns (mean loss, mean distillation loss) as detached tensors (no sync)."""
    grid = scores_grid(model, batch, device, autocast_dtype)
    mask = batch["mask"].to(device)
    per_query, distill = mixed_loss(config.loss, grid, batch["teacher"].to(device), mask,
                                    batch["labelled"].to(device), config.temperature, config.margin_scale,
                                    config.labelled_weight, config.positive_lce_weight,
                                    batch["positive_first"].to(device))
    loss = per_query.mean()
    scaler.scale(loss).backward()
    if config.max_grad_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    pseudo = (~batch["labelled"]).sum().clamp(min=1).to(device)
    return loss.detach(), distill.detach().sum() / pseudo


def probe_batch(units: Sequence[TrainingUnit], config: AdaptConfig) -> list[SampledUnit]:
    """A fixed set of pseudo groups (the first `probe_queries` by a hash of their ids), cut to `group_size`."""
    pseudo = sorted((u for u in units if not u.labelled),
                    key=lambda u: hashlib.sha256(f"probe\0{u.query_key}".encode()).hexdigest())
    chosen = pseudo[:config.probe_queries]
    if not chosen:
        return []
    sampler = UnitSampler(chosen, config.group_size, len(chosen), seed=config.seed, include_positive=True)
    return sampler.step(0)


def probe_loss(model, store: TokenStore, probe: Sequence[SampledUnit], config: AdaptConfig, device: torch.device,
               names: Sequence[str], chunk: int = 16) -> float | None:
    """Mean distillation loss over the probe groups, in eval mode, without gradients."""
    if not probe:
        return None
    total = 0.0
    with scoring_mode(model, device, None), torch.inference_mode():
        for start in range(0, len(probe), chunk):
            part = probe[start:start + chunk]
            batch = grid_batch(part, config.group_size, store, names)
            grid = scores_grid(model, batch, device, None)
            losses = distill_loss(config.loss, grid, batch["teacher"].to(device), batch["mask"].to(device),
                                  config.temperature, config.margin_scale)
            total += float(losses.sum())
    return total / len(probe)


def fingerprint(path: Path) -> str:
    """sha256 of a file's bytes: a resumed run must train on the very same groups."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _evaluate_dev(model, tokenizer, config: AdaptConfig, device: torch.device, inputs: AdaptInputs) -> dict:
    from es_rerank.datasets import read_qrels
    from es_rerank.training.adapt_eval import evaluate_student

    scorer = make_scorer(model, tokenizer, config.max_length, config.query_max_length, device, EVAL_BATCH)
    qrels = read_qrels(inputs.dev_qrels, inputs.dev_split)
    with scoring_mode(model, device, torch.float16 if device.type == "cuda" else None):
        return evaluate_student(scorer, inputs.dev_candidates, qrels, "adapted")


def _save(out_dir: Path, config: AdaptConfig, step: int, model, optimizer, scheduler, scaler, log: dict) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "scaler": scaler.state_dict(), "step": step, "config": config.to_dict(),
               "groups_fingerprint": log["groups_fingerprint"],
               "log": {"loss_log": log["loss_log"], "probe_loss": log["probe_loss"]}}
    saved_state.save_state(out_dir, 0, payload)


def _restore(out_dir: Path, config: AdaptConfig, device: torch.device, model, optimizer, scheduler, scaler,
             log: dict) -> int:
    payload = saved_state.load_state(out_dir, 0, config, device)
    if payload.get("groups_fingerprint") != log["groups_fingerprint"]:
        raise ConfigError(f"cannot resume {out_dir}: the groups file differs from the one the run started with",
                          hint="resume with the same --groups file, or start a new output folder")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    log.update(payload["log"])
    log["resumed_from_step"] = payload["step"]
    return payload["step"]


def _autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _progress(total: int, initial: int, enabled: bool):
    if not enabled or os.environ.get("ES_RERANK_NO_PROGRESS"):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="adapting", unit="step", dynamic_ncols=True, mininterval=1.0)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
