"""`adapt()`: distil a teacher's ranking of pseudo-query groups into a cross-encoder (`es-rerank adapt`).

The distillation task of the one training loop (`training.loop.fit`, so DDP, gradient
accumulation and resume work as for `es-rerank train`). Units are the prepared file's pseudo
groups, each with its masked positive and its BM25 hits scored by the teacher
(`adapt_teacher`), plus its labelled groups when it has them; the objective is listwise KL or
Margin-MSE (`losses.Distillation`), with LCE on the labelled groups.

Before the first and after the last step the distillation loss is measured on a fixed probe
set of `probe_queries` pseudo groups in eval mode (no dropout): `probe_loss.before/after` in
the log says whether the student moved towards the teacher, which a noisy training loss
cannot say on a short run.

Outputs in `out_dir`: the Hugging Face checkpoint of the last step (there are no judgments to
pick another by), `adapt_log.json`, `recipe.yaml` (prepare and train settings) and `state/`
(resume with the same settings and groups file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from es_rerank.errors import ConfigError, DatasetError
from es_rerank.training.adapt_config import AdaptConfig, write_adapt_recipe
from es_rerank.training.adapt_groups import AdaptGroups, read_adapt_groups
from es_rerank.training.adapt_teacher import teacher_scores
from es_rerank.training.batches import grid_batch, score_grid
from es_rerank.training.loop import Loop, Prepared, fit
from es_rerank.training.losses import distill_loss
from es_rerank.training.model import input_names, make_scorer, save_checkpoint, scoring_mode
from es_rerank.training.sampling import SampledGroup, TrainingUnit, UnitSampler, labelled_unit
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
    if inputs.dev_candidates is not None and inputs.dev_qrels is None:
        raise ConfigError("--dev-candidates needs --dev-qrels (the judgments of those queries)")
    return fit(config, AdaptTask(config, inputs), out_dir, resume=resume, show_progress=show_progress,
               stop_after=stop_after)


class AdaptTask:
    """Pseudo-query groups, a teacher, distillation, probe and dev measures (see `training.loop.Task`)."""

    label = "adapting"
    log_name = "adapt_log.json"
    resumed_log: tuple[str, ...] = ("probe_loss",)

    def __init__(self, config: AdaptConfig, inputs: AdaptInputs) -> None:
        self.config, self.inputs, self.groups = config, inputs, inputs.groups
        self.data = read_adapt_groups(inputs.groups)
        self.units = training_units(self.data, config)
        self.probe = probe_batch(self.units, config)
        self.store: TokenStore | None = None
        self.names: list[str] = []

    def prepare(self, model, tokenizer) -> Prepared:
        config = self.config
        if config.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        self.store = token_store(self.data, tokenizer, config)
        self.names = input_names(tokenizer)
        sampler = UnitSampler(self.units, config.group_size, config.queries_per_step, config.seed,
                              config.include_positive)
        return Prepared(sampler, self.store, sampler.steps_for(config.epochs))

    def header(self) -> dict[str, Any]:
        return {"groups_meta": self.data.meta,
                "units": {"pseudo": len(self.data.pseudo), "labelled": len(self.data.labelled)}, "probe_loss": {}}

    def write_recipe(self, path: Path) -> None:
        write_adapt_recipe(self.inputs.prepare or self.data.meta.get("settings"), self.config, path)

    def begin(self, trainer: Loop, resumed: bool) -> None:
        if not resumed:
            trainer.log["probe_loss"]["before"] = self.probe_loss(trainer)

    def evaluates_at(self, step: int) -> bool:
        return False  # no judgments to measure mid-run by

    def evaluate(self, trainer: Loop, step: int) -> None:
        raise AssertionError("adapt has no mid-run evaluation")

    def finish(self, trainer: Loop) -> None:
        parts = trainer.parts
        trainer.log["probe_loss"]["after"] = self.probe_loss(trainer)
        save_checkpoint(parts.model, parts.tokenizer, trainer.out_dir)
        if self.inputs.dev_candidates is not None:
            trainer.log["dev"] = self._evaluate_dev(trainer)

    def probe_loss(self, trainer: Loop, chunk: int = 16) -> float | None:
        """Mean distillation loss over the probe groups, in eval mode, without gradients."""
        if not self.probe:
            return None
        model, device, config = trainer.parts.model, trainer.runtime.device, self.config
        total = 0.0
        with scoring_mode(model, device, None), torch.inference_mode():
            for start in range(0, len(self.probe), chunk):
                batch = grid_batch(self.probe[start:start + chunk], self.config.group_size, self.store, self.names)
                scores = score_grid(model, batch, device, None)
                losses = distill_loss(config.loss, scores, batch["teacher"].to(device), batch["mask"].to(device),
                                      config.temperature, config.margin_scale)
                total += float(losses.sum())
        return total / len(self.probe)

    def _evaluate_dev(self, trainer: Loop) -> dict:
        from es_rerank.data.beir import read_qrels
        from es_rerank.training.evaluate import evaluate_student

        config, inputs, parts, device = self.config, self.inputs, trainer.parts, trainer.runtime.device
        scorer = make_scorer(parts.model, parts.tokenizer, config.max_length, config.query_max_length, device,
                             EVAL_BATCH)
        qrels = read_qrels(inputs.dev_qrels, inputs.dev_split)
        with scoring_mode(parts.model, device, torch.float16 if device.type == "cuda" else None):
            return evaluate_student(scorer, inputs.dev_candidates, qrels, "adapted")


def training_units(groups: AdaptGroups, config: AdaptConfig) -> list[TrainingUnit]:
    """Pseudo groups with their teacher scores, then labelled groups (judged positives first)."""
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
    units.extend(labelled_unit(group, key_prefix=LABELLED_PREFIX) for group in groups.labelled)
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


def probe_batch(units: Sequence[TrainingUnit], config: AdaptConfig) -> list[SampledGroup]:
    """A fixed set of pseudo groups (the first `probe_queries` by a hash of their ids), cut to `group_size`."""
    pseudo = sorted((u for u in units if not u.labelled),
                    key=lambda u: hashlib.sha256(f"probe\0{u.query_key}".encode()).hexdigest())
    chosen = pseudo[:config.probe_queries]
    if not chosen:
        return []
    sampler = UnitSampler(chosen, config.group_size, len(chosen), seed=config.seed, include_positive=True)
    return sampler.step(0)
