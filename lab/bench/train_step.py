"""`es-rerank bench train-step`: the project's CPU training step against a plain `transformers` step.

Both sides train a copy of the same one-logit model (same weights, same fresh head) on the same
batch of real pairs: `queries` judged queries of a BEIR training split, each with its judged
positive and `group_size - 1` other documents of the corpus, fp32, on the CPU.

- plain: the batch tokenised once by the Hugging Face tokenizer (truncated to `max_length`,
  padded to the longest pair), then per step `AutoModelForSequenceClassification` forward,
  softmax cross-entropy over each query's group, backward, `torch.optim.AdamW`, zero_grad.
  The least a training step can do.
- ours: `training.loop.Loop.train_step` on the item `training.batches.StepBatches` builds for the
  step (sampler, token store, grid): LCE, gradient clipping, the warm-up schedule. What
  `es-rerank train` runs per step, minus the DataLoader.
- ours+loader: `Loop.run` over the same steps, batches coming through the run's DataLoader with
  the configured `num_workers` (the whole per-step path, as `es-rerank train` runs it).

Rounds interleave the sides so that load on a shared machine hits all of them alike; the ratio
of the medians is the figure, not the absolute rates.
"""

from __future__ import annotations

import copy
import datetime
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from es_rerank.data.mining import Group

SIDES = ("plain", "ours", "ours+loader")


@dataclass(frozen=True)
class StepBenchSettings:
    base_model: str
    dataset: Path
    split: str = "train"
    queries: int = 4
    group_size: int = 8
    max_length: int = 128
    query_max_length: int = 64
    steps: int = 3            # timed optimizer steps per side per round
    rounds: int = 5
    warmup: int = 2           # untimed steps per side first
    threads: int | None = None
    num_workers: int = 2      # ours+loader's DataLoader workers (the `es-rerank train` default)
    command: str = "es-rerank bench train-step"


@dataclass(frozen=True)
class StepBenchResult:
    pairs_per_step: int
    pad_width: dict[str, int]               # side -> padded pair width of its batch
    rounds: dict[str, list[float]]          # side -> pairs/s of each round
    threads: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def median(self, side: str) -> float:
        return statistics.median(self.rounds[side])

    def ratio(self, side: str) -> float:
        """Median pairs/s of `side` over plain's (1.0: as fast as a plain transformers step)."""
        return self.median(side) / self.median("plain")


def benchmark_groups(dataset: Path, split: str, queries: int, group_size: int) -> tuple[list[Group], dict, dict]:
    """(groups, query texts, document texts): the first `queries` judged queries of `split` with one
    judged positive each and, as negatives, the first corpus documents not judged for them."""
    from es_rerank.data.beir import read_qrels, read_queries, relevant
    from es_rerank.training.data import document_text, read_corpus_sources

    texts = read_queries(dataset)
    qrels = read_qrels(dataset, split)
    chosen = [q for q in qrels if q in texts and relevant(qrels, q)][:queries]
    if len(chosen) < queries:
        from es_rerank.errors import DatasetError

        raise DatasetError(f"{dataset} has {len(chosen)} judged {split} queries with texts; the batch needs {queries}",
                           hint="pass a larger dataset or fewer --queries")
    sources = read_corpus_sources(dataset)
    ordered = list(sources)
    groups = []
    for i, qid in enumerate(chosen):
        judged = relevant(qrels, qid)
        positive = sorted(d for d in judged if d in sources)[0]
        others = [d for d in ordered[i * group_size:] if d not in judged][:group_size - 1]
        groups.append(Group(qid, (positive,), tuple(others)))
    docs = {d: document_text(sources[d]) for g in groups for d in (*g.positives, *g.negatives)}
    return groups, {g.qid: texts[g.qid] for g in groups}, docs


def run_step_bench(settings: StepBenchSettings, log: Callable[[str], None] = lambda message: None
                   ) -> StepBenchResult:
    import torch
    from transformers import AutoModelForSequenceClassification

    from es_rerank.training.batches import StepBatches
    from es_rerank.training.config import TrainConfig
    from es_rerank.training.distributed import Runtime
    from es_rerank.training.loop import Loop, LossSums, Parts
    from es_rerank.training.model import input_names, load_cross_encoder
    from es_rerank.training.optim import build_optimizer, linear_warmup
    from es_rerank.training.sampling import GroupSampler
    from es_rerank.training.tokens import TokenStore

    if settings.threads:
        torch.set_num_threads(settings.threads)
    groups, queries, docs = benchmark_groups(settings.dataset, settings.split, settings.queries, settings.group_size)
    pairs = settings.queries * settings.group_size
    total_steps = settings.warmup + settings.steps * settings.rounds + 1
    config = TrainConfig(base_model=settings.base_model, loss="lce", group_size=settings.group_size,
                         queries_per_step=settings.queries, steps=total_steps, max_length=settings.max_length,
                         query_max_length=settings.query_max_length, precision="fp32", log_every=10 ** 6,
                         save_every=0, num_workers=settings.num_workers, eval_every=0)

    torch.manual_seed(config.seed)
    ours_model, tokenizer = load_cross_encoder(settings.base_model)
    plain_model = AutoModelForSequenceClassification.from_pretrained(settings.base_model, num_labels=1,
                                                                     dtype=torch.float32)
    plain_model.load_state_dict(ours_model.state_dict())  # the same fresh head on both sides
    loader_model = copy.deepcopy(ours_model)
    device = torch.device("cpu")

    # plain: tokenised once, the way a transformers script does it
    firsts = [queries[g.qid] for g in groups for _ in range(settings.group_size)]
    seconds = [docs[d] for g in groups for d in (*g.positives, *g.negatives)]
    plain_batch = tokenizer(firsts, seconds, truncation="longest_first", max_length=settings.max_length,
                            padding=True, return_tensors="pt")
    plain_model.train()
    plain_opt = torch.optim.AdamW(plain_model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    target = torch.zeros(settings.queries, dtype=torch.long)

    def plain_step() -> None:
        logits = plain_model(**plain_batch).logits.view(settings.queries, settings.group_size)
        torch.nn.functional.cross_entropy(logits, target).backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    # ours: the loop's own step on the items its StepBatches builds
    store = TokenStore(tokenizer.backend_tokenizer, config.max_length, config.query_max_length,
                       int(tokenizer.pad_token_id or 0))
    store.add_queries(queries)
    store.add_documents(docs)
    sampler = GroupSampler(groups, config.group_size, config.queries_per_step, config.seed, config.neg_depth)
    steps_data = StepBatches(sampler, store, 0, 1, config.grad_accum, input_names(tokenizer))
    runtime = Runtime(0, 1, 0, device)

    def loop_for(model) -> Loop:
        model.train()
        optimizer = build_optimizer(model, config, device)
        parts = Parts(model, tokenizer, optimizer, linear_warmup(optimizer, config.warmup_steps, total_steps),
                      torch.amp.GradScaler("cuda", enabled=False))
        return Loop(config, _NoTask(), runtime, parts, Path("."), {"loss_log": []}, None, False, total_steps, None)

    ours_loop, loader_loop = loop_for(ours_model), loop_for(loader_model)
    sums = LossSums(device)
    counters = {"ours": 0, "ours+loader": 0}

    def ours_step() -> None:
        ours_loop.train_step(ours_model, steps_data[counters["ours"]], sums)
        counters["ours"] += 1

    def loader_steps(n: int) -> None:
        start = counters["ours+loader"]
        loader_loop.run(steps_data, start, start + n)
        counters["ours+loader"] += n

    widths = {"plain": int(plain_batch["input_ids"].shape[1]),
              "ours": int(steps_data[0]["micro"][0]["inputs"]["input_ids"].shape[1])}
    widths["ours+loader"] = widths["ours"]
    for _ in range(settings.warmup):
        plain_step()
        ours_step()
    loader_steps(settings.warmup)
    log(f"{pairs} pairs per step (pair width: plain {widths['plain']}, ours {widths['ours']}), "
        f"{torch.get_num_threads()} torch threads; {settings.rounds} rounds of {settings.steps} steps per side")
    load_before = os.getloadavg()
    rounds: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(settings.rounds):
        for side in SIDES:
            start = time.perf_counter()
            if side == "ours+loader":
                loader_steps(settings.steps)
            else:
                for _ in range(settings.steps):
                    (plain_step if side == "plain" else ours_step)()
            rounds[side].append(settings.steps * pairs / (time.perf_counter() - start))
        log(f"round {r + 1}: " + ", ".join(f"{side} {rounds[side][-1]:.1f}" for side in SIDES) + " pairs/s")
    return StepBenchResult(pairs, widths, rounds, torch.get_num_threads(), load_before, os.getloadavg())


class _NoTask:
    """The loop's task for a benchmark: it only steps; `fit`'s hooks are never reached."""

    label = "bench"
    log_name = "bench_log.json"
    groups = Path("-")
    resumed_log: tuple[str, ...] = ()

    def evaluates_at(self, step: int) -> bool:
        return False

    def prepare(self, model, tokenizer):
        raise AssertionError("the benchmark builds its own batches")

    def header(self) -> dict:
        return {}

    def write_recipe(self, path: Path) -> None:
        raise AssertionError("the benchmark writes no recipe")

    def begin(self, trainer, resumed: bool) -> None:
        raise AssertionError("the benchmark runs no task hooks")

    def evaluate(self, trainer, step: int) -> None:
        raise AssertionError("the benchmark evaluates nothing")

    def finish(self, trainer) -> None:
        raise AssertionError("the benchmark saves nothing")


def figures(result: StepBenchResult, settings: StepBenchSettings) -> list[dict]:
    """The docs/benchmarks.json entries of one run: ours over plain, per side."""
    hardware = f"{os.cpu_count()}-core {platform.machine()} CPU, {result.threads} torch threads, shared machine"
    load = "load average {:.2f} before, {:.2f} after".format(result.load_before[0], result.load_after[0])
    baseline = (f"plain transformers step (AutoModelForSequenceClassification, AdamW) in the same run, "
                f"{result.median('plain'):.1f} pairs/s median; {load}")
    names = {"ours": "training.cpu.step_vs_transformers", "ours+loader": "training.cpu.loop_vs_transformers"}
    return [{"name": names[side], "value": round(result.ratio(side), 3), "unit": "x plain transformers pairs/s",
             "baseline": baseline, "hardware": hardware, "command": settings.command,
             "date": datetime.date.today().isoformat(),
             "workload": f"{settings.dataset.name} {settings.split}: {settings.queries} queries x {settings.group_size} "
                         f"= {result.pairs_per_step} pairs, max_length {settings.max_length}, fp32, "
                         f"{settings.rounds} rounds x {settings.steps} steps"}
            for side in ("ours", "ours+loader")]


def table(result: StepBenchResult) -> str:
    rows = [f"{'side':<12} {'pairs/s median':>15} {'vs plain':>9}  rounds"]
    for side in SIDES:
        rates = " ".join(f"{r:.1f}" for r in result.rounds[side])
        rows.append(f"{side:<12} {result.median(side):15.1f} {result.ratio(side):9.3f}  {rates}")
    rows.append("load average (1 min) {:.2f} before, {:.2f} after".format(result.load_before[0],
                                                                           result.load_after[0]))
    return "\n".join(rows)
