"""`train()`: fine-tune a cross-encoder on mined groups with LCE or BCE (`es-rerank train`).

The supervised task of the one training loop (`training.loop.fit`): groups mined by
`es-rerank mine` (judged positives, BM25 negatives) become labelled training units. With a dev
run, `dev_fraction` of the training queries are held out; rank 0 evaluates on them every
`eval_every` steps by reranking their BM25 run through `rerank_hits`, and keeps the best
checkpoint in `out_dir`.

Outputs in `out_dir`: the Hugging Face checkpoint (best dev nDCG@10, or the last step without a
dev run), `train_log.json` (loss, pairs/s, dev figures), `recipe.yaml` (the resolved settings)
and `state/` (to resume). tests/integration/test_train_cpu.py runs it end to end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from es_rerank.data.beir import read_qrels, read_queries
from es_rerank.errors import ConfigError, DatasetError
from es_rerank.data.mining import read_groups, read_run
from es_rerank.training.config import TrainConfig, write_recipe
from es_rerank.training.data import (check_run_documents, document_text, prepare_groups, read_corpus_sources,
                                     restrict_qrels, split_dev)
from es_rerank.training.evaluate import bm25_rankings, evaluate_scorer
from es_rerank.training.loop import Loop, Prepared, fit
from es_rerank.evaluation.ir_metrics import summary
from es_rerank.training.model import make_scorer, save_checkpoint, scoring_mode
from es_rerank.training.sampling import GroupSampler, repeat_sources
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

    The options are `training.loop.fit`'s.
    """
    return fit(config, SupervisedTask(config, inputs), out_dir, resume=resume, show_progress=show_progress,
               write_state=write_state, stop_after=stop_after)


class SupervisedTask:
    """Mined groups, LCE/BCE, dev evaluation with the best checkpoint kept (see `training.loop.Task`)."""

    label = "training"
    log_name = "train_log.json"
    resumed_log: tuple[str, ...] = ("dev", "best")

    def __init__(self, config: TrainConfig, inputs: TrainInputs) -> None:
        self.config, self.groups = config, inputs.groups
        self.data = load_data(config, inputs)
        # Up-sampled sources: of the training groups only (the dev queries are held out already),
        # here so that a source no group comes from fails before the model loads.
        self.units = repeat_sources(self.data.groups, config.source_repeats)

    def prepare(self, model, tokenizer) -> Prepared:
        config, data = self.config, self.data
        sampler = GroupSampler(self.units, config.group_size, config.queries_per_step, config.seed, config.neg_depth)
        return Prepared(sampler, tokenize(data, tokenizer, config), config.steps)

    def header(self) -> dict[str, Any]:
        dev = self.data.dev
        return {"train_queries": len(self.data.groups), "train_units": len(self.units),
                "dev_queries": len(dev.qids) if dev else 0,
                "dev_qids": dev.qids if dev else [], "group_problems": self.data.group_report.describe(),
                "dev": [], "best": None}

    def write_recipe(self, path: Path) -> None:
        write_recipe(self.config, path)

    def begin(self, trainer: Loop, resumed: bool) -> None:
        if self.data.dev is not None:
            trainer.log["dev_bm25"] = summary(bm25_rankings(self.data.dev.run, self.config.eval_depth),
                                              self.data.dev.qrels)

    def evaluates_at(self, step: int) -> bool:
        every = self.config.eval_every
        return self.data.dev is not None and (step == self.config.steps or bool(every and step % every == 0))

    def evaluate(self, trainer: Loop, step: int) -> None:
        """Rerank the dev run through `rerank_hits`; a new best is saved as the checkpoint."""
        config, parts, dev, device = self.config, trainer.parts, self.data.dev, trainer.runtime.device
        scorer = make_scorer(parts.model, parts.tokenizer, config.max_length, config.query_max_length, device,
                             config.eval_batch_size)
        with scoring_mode(parts.model, device, EVAL_AUTOCAST):
            figures = evaluate_scorer(scorer, dev.run, self.data.queries, self.data.sources, dev.qrels,
                                      config.eval_depth)
        entry = {"step": step, **figures}
        trainer.log["dev"].append(entry)
        best = trainer.log["best"]
        if best is None or figures["ndcg@10"] > best["ndcg@10"]:
            trainer.log["best"] = best = entry
            save_checkpoint(parts.model, parts.tokenizer, trainer.out_dir)
        trainer.write(f"step {step}: dev nDCG@10 {figures['ndcg@10']:.4f} MRR@10 {figures['mrr@10']:.4f} "
                      f"(best {best['ndcg@10']:.4f} at step {best['step']})")

    def finish(self, trainer: Loop) -> None:
        if self.data.dev is None:  # else the best dev checkpoint is already saved
            save_checkpoint(trainer.parts.model, trainer.parts.tokenizer, trainer.out_dir)


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
