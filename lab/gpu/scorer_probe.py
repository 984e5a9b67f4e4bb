"""What limits the fp16 scorer on the GPU, measured on the model server's own batches (issue 19).

    python -m lab.gpu.scorer_probe EXPORT_DIR CANDIDATES --out DIR [--queries 300] [--rounds 3]

Every variant scores the same batches: the candidates' windows merged 16 at a time and cut by
a 65,536-token budget, as the model server cuts them. Variants are timed round by round in
turn, so drift on a shared machine hits them alike, and each is checked against `product`:

- `product`: the serving `OnnxScorer` (inputs bound from host memory per run, one stream);
- `sdpa-K`: the same file in a session whose CUDA provider may use only the attention kernels
  of ONNX Runtime's `sdpa_kernel` bit mask K (which kernel the default picks is not reported);
- `device-inputs`: the inputs copied to the GPU before the timed runs, so the difference from
  `product` is what copying them costs;
- `two-sessions`: two sessions, each on its own stream, fed by two threads, so the difference
  is how long the GPU idles between one session's runs;
- `tokens-N`: `product` on batches cut by an N-token budget instead;
- `packed`: the same graph with unpadded attention (`lab.gpu.packed_graph`: RemovePadding and
  PackedAttention, the encoder on the batch's real tokens only);
- `cuda-graph`: on the full 256 x 256 batches only, one captured CUDA graph replayed, against
  `product` on the same batches.

Also: which attention kernel ONNX Runtime picks by default and with cuDNN allowed (its own debug
print, from a child process with ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO set), one window's latency (100 pairs, what a single client waits for) and, where torch's
profiler can see ONNX Runtime's kernels, the kernel table and the GPU's busy share of a run.
On a machine without CUDA only `product`, `tokens-N` and the window latency run, which is what
the CPU test covers. Results: probe.json and probe.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from es_rerank.data.candidates import TextWindow, read_candidates
from es_rerank.proxy.workers import MODEL_SERVER_MAX_ROWS
from es_rerank.scoring.cross_encoder import OnnxScorer
from es_rerank.scoring.onnx_session import session_options
from es_rerank.scoring.token_batches import EncodedBatch, PackedPairs, batch_by_length
from lab.gpu.packed_graph import packed_copy

RunBatch = Callable[[EncodedBatch], np.ndarray]
# ONNX Runtime's AttentionBackend bits: flash, memory-efficient (cutlass), TensorRT fused, cuDNN
# flash, unfused math, TensorRT flash.
SDPA_KERNELS = (1, 2, 4, 8, 16, 32)
# The same choice through ONNX Runtime's environment variables, which a session created without
# `sdpa_kernel` reads (so `serve`'s model server can be pointed at a kernel without a code change).
SDPA_ENV = {1: "ORT_DISABLE_FLASH_ATTENTION", 2: "ORT_DISABLE_MEMORY_EFFICIENT_ATTENTION",
            4: "ORT_DISABLE_FUSED_ATTENTION", 32: "ORT_DISABLE_TRT_FLASH_ATTENTION"}
MERGE_WINDOWS = 16
BATCH_TOKENS = 65_536


@dataclass(frozen=True)
class Batches:
    """A workload: padded batches, and the position of each batch's rows in the flat score list."""

    label: str
    batches: list[EncodedBatch]
    offsets: list[int]

    @property
    def pairs(self) -> int:
        return sum(b.shape[0] for b in self.batches)


def attention_env(bits: int) -> dict[str, str]:
    """Environment variables that leave ONNX Runtime only the kernels of `bits` (and its unfused
    fallback, which it always keeps when no `sdpa_kernel` is set).

    >>> attention_env(8)["ORT_ENABLE_CUDNN_FLASH_ATTENTION"], attention_env(8)["ORT_DISABLE_TRT_FLASH_ATTENTION"]
    ('1', '1')
    >>> attention_env(32)["ORT_DISABLE_TRT_FLASH_ATTENTION"]
    '0'
    """
    env = {name: "0" if bits & bit else "1" for bit, name in SDPA_ENV.items()}
    env["ORT_ENABLE_CUDNN_FLASH_ATTENTION"] = "1" if bits & 8 else "0"
    return env


def best_attention(result: dict, min_gain: float = 1.03, max_diff: float = 0.02) -> int | None:
    """The fastest `sdpa-K` variant that beats `product` by `min_gain` with scores within
    `max_diff` of it (the export's fp16 parity bound), or None.

    >>> best_attention({"variants": {"product": {"vs_product": 1.0, "max_abs_diff": 0.0},
    ...     "sdpa-8": {"vs_product": 1.4, "max_abs_diff": 0.001}, "sdpa-16": {"vs_product": 1.5, "max_abs_diff": 0.5}}})
    8
    """
    best, best_gain = None, min_gain
    for name, row in result.get("variants", {}).items():
        diff = row.get("max_abs_diff")
        if name.startswith("sdpa-") and diff is not None and diff <= max_diff and row["vs_product"] >= best_gain:
            best, best_gain = int(name.split("-")[1]), row["vs_product"]
    return best


def merged_batches(scorer: OnnxScorer, windows: Sequence[TextWindow], batch_tokens: int,
                   label: str) -> Batches:
    """The windows merged `MERGE_WINDOWS` at a time and cut as the model server cuts them."""
    batches, offsets, offset = [], [], 0
    encoder = scorer.encoder
    for start in range(0, len(windows), MERGE_WINDOWS):
        pairs = PackedPairs.concat([encoder.encode([window.query] * len(window.docs), list(window.docs))
                                    for window in windows[start:start + MERGE_WINDOWS]])
        for batch in batch_by_length(pairs, MODEL_SERVER_MAX_ROWS, encoder.pad_id, max_width=encoder.max_length,
                                     max_tokens=batch_tokens):
            batches.append(batch)
            offsets.append(offset)
        offset += len(pairs)
    return Batches(label, batches, offsets)


def flat_scores(workload: Batches, outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Scores of a pass over `workload`, in the merged pairs' input order."""
    total = max((o + int(b.rows.max()) + 1 for o, b in zip(workload.offsets, workload.batches)), default=0)
    scores = np.zeros(total, dtype=np.float32)
    for offset, batch, values in zip(workload.offsets, workload.batches, outputs):
        scores[offset + batch.rows] = np.asarray(values, dtype=np.float32).reshape(-1)
    return scores


def time_passes(variants: dict[str, tuple[Batches, Callable[[Batches], list[np.ndarray]]]], rounds: int,
                errors: dict[str, str] | None = None) -> dict:
    """Pairs/s of each variant over its workload, the variants interleaved round by round; a
    first untimed pass warms each up and gives its scores. A variant whose first pass fails is
    left out and its error kept in `errors`, so one unsupported setting costs only itself."""
    scores = {}
    for name, (work, run) in list(variants.items()):
        try:
            scores[name] = flat_scores(work, run(work))
        except Exception as exc:
            if errors is None:
                raise
            errors[name] = first_line(exc)
            del variants[name]
    seconds = {name: 0.0 for name in variants}
    for _ in range(rounds):
        for name, (work, run) in variants.items():
            started = time.perf_counter()
            run(work)
            seconds[name] += time.perf_counter() - started
    return {name: {"pairs_per_s": round(variants[name][0].pairs * rounds / seconds[name], 1),
                   "pairs": variants[name][0].pairs, "scores": scores[name]} for name in variants}


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def serial(run: RunBatch) -> Callable[[Batches], list[np.ndarray]]:
    return lambda work: [run(batch) for batch in work.batches]


def window_latency_ms(scorer: OnnxScorer, windows: Sequence[TextWindow], rounds: int) -> dict[str, float]:
    """p50/p99 of `score_encoded` over one window's pairs: the model's share of a one-client search."""
    encoded = [scorer.encode_pairs([w.query] * len(w.docs), list(w.docs)) for w in windows]
    for pairs in encoded[:3]:
        scorer.score_encoded(pairs)
    latencies = []
    for _ in range(rounds):
        for pairs in encoded:
            started = time.perf_counter()
            scorer.score_encoded(pairs)
            latencies.append((time.perf_counter() - started) * 1000)
    return {"windows": len(encoded), "p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3)}


class CudaVariants:
    """Sessions over the same fp16 file with other CUDA provider settings or ways of feeding."""

    def __init__(self, model_path: Path, input_names: Sequence[str], output_name: str) -> None:
        import onnxruntime

        self.ort = onnxruntime
        self.model_path = model_path
        self.input_names = tuple(input_names)
        self.output_name = output_name

    def session(self, **cuda_options: str):
        options = {"device_id": "0", "use_tf32": "0", **cuda_options}
        return self.ort.InferenceSession(str(self.model_path), session_options(None),
                                         providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])

    def host_bound(self, session) -> RunBatch:
        def run(batch: EncodedBatch) -> np.ndarray:
            binding = session.io_binding()
            for name, array in batch.arrays(self.input_names).items():
                binding.bind_cpu_input(name, array)
            binding.bind_output(self.output_name, "cuda")
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        return run

    def device_inputs(self, session, work: Batches) -> Callable[[Batches], list[np.ndarray]]:
        on_device = [{name: self.ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)
                      for name, array in batch.arrays(self.input_names).items()} for batch in work.batches]

        def run(_: Batches) -> list[np.ndarray]:
            outputs = []
            for values in on_device:
                binding = session.io_binding()
                for name, value in values.items():
                    binding.bind_ortvalue_input(name, value)
                binding.bind_output(self.output_name, "cuda")
                session.run_with_iobinding(binding)
                outputs.append(binding.copy_outputs_to_cpu()[0])
            return outputs
        return run

    def two_sessions(self) -> Callable[[Batches], list[np.ndarray]]:
        runners = [self.host_bound(self.session()) for _ in range(2)]
        locks = [threading.Lock(), threading.Lock()]
        pool = ThreadPoolExecutor(2, thread_name_prefix="probe-stream")

        def one(index: int, batch: EncodedBatch) -> np.ndarray:
            with locks[index % 2]:
                return runners[index % 2](batch)

        return lambda work: list(pool.map(one, range(len(work.batches)), work.batches))

    def cuda_graph(self, shape: tuple[int, int]) -> RunBatch:
        """One 256 x 256 graph, captured by ONNX Runtime on its first runs, replayed with new ids."""
        session = self.session(enable_cuda_graph="1")
        zeros = np.zeros(shape, dtype=np.int64)
        values = {name: self.ort.OrtValue.ortvalue_from_numpy(zeros.copy(), "cuda", 0) for name in self.input_names}
        out_shape = [shape[0]] + [1] * (len(session.get_outputs()[0].shape) - 1)
        output = self.ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, "cuda", 0)
        binding = session.io_binding()
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_output(self.output_name, output)
        lock = threading.Lock()

        def run(batch: EncodedBatch) -> np.ndarray:
            with lock:
                for name, array in batch.arrays(self.input_names).items():
                    values[name].update_inplace(np.ascontiguousarray(array))
                session.run_with_iobinding(binding)
                return output.numpy().copy()
        return run


def kernel_table(run: RunBatch, batches: Sequence[EncodedBatch], top: int = 15) -> dict:
    """CUDA kernel time by kernel (torch.profiler's CUPTI sees every kernel in the process)."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
    except ImportError as exc:
        return {"unavailable": f"torch.profiler: {exc}"}
    for batch in batches[:2]:
        run(batch)
    torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for batch in batches:
            run(batch)
    wall_us = (time.perf_counter() - started) * 1e6
    rows = []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "self_cuda_time_total", 0)
        if device_us:
            rows.append({"kernel": event.key[:120], "calls": event.count, "us": round(float(device_us), 1)})
    rows.sort(key=lambda r: -r["us"])
    busy = sum(r["us"] for r in rows)
    if not busy:
        return {"unavailable": "the profiler saw no CUDA kernels (CUPTI did not see ONNX Runtime's context)"}
    for row in rows:
        row["share"] = round(row["us"] / busy, 4)
    return {"runs": len(batches), "wall_us": round(wall_us, 1), "kernel_us": round(busy, 1),
            "busy_share": round(busy / wall_us, 4), "top": rows[:top]}


def attention_kernels(export_dir: Path, candidates: Path) -> dict[str, list[str]]:
    """ONNX Runtime's own report of the attention kernel each setting runs, one batch each."""
    env = {**os.environ, "ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO": "1"}
    reports = {}
    for setting in ("0", "8"):
        done = subprocess.run([sys.executable, "-m", "lab.gpu.scorer_probe", str(export_dir), str(candidates),
                               "--out", "-", "--queries", "2", "--debug-sdpa", setting],
                              env=env, capture_output=True, text=True, timeout=300)
        lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if "ttention" in line]
        reports[f"sdpa-{setting}"] = list(dict.fromkeys(lines))[:6] or [f"rc {done.returncode}: {done.stderr[-300:]}"]
    return reports


def debug_one_batch(export_dir: Path, candidates: Path, sdpa: str) -> None:
    """Run one batch in a session with `sdpa_kernel` = `sdpa` (the debug print goes to stdout)."""
    scorer = OnnxScorer.load(export_dir, device="cuda", batch_size=MODEL_SERVER_MAX_ROWS, variant="fp16")
    work = merged_batches(scorer, read_candidates(candidates).windows()[:2], BATCH_TOKENS, "debug")
    cuda = CudaVariants(export_dir / scorer.variant.file, scorer.meta.input_names, scorer.meta.output_name)
    options = {"sdpa_kernel": sdpa} if sdpa != "0" else {}
    cuda.host_bound(cuda.session(**options))(work.batches[-1])
    sys.stdout.flush()


def packed_file(model_file: Path) -> Path:
    """The unpadded-attention copy of `model_file` (lab.gpu.packed_graph), in a temporary folder:
    it is as large as the model, too large to come back with the results."""
    target = Path(tempfile.mkdtemp(prefix="probe-packed-")) / model_file.name
    packed_copy(str(model_file), str(target))
    return target


def probe(export_dir: Path, candidates: Path, queries: int, rounds: int, device: str,
          save: Callable[[dict], None]) -> dict:
    """All measurements; `save` gets the result so far after each step, so a crash in a late,
    riskier one (graph capture, the profiler) keeps the earlier figures."""
    windows = read_candidates(candidates).windows()[:queries]
    if not windows:
        raise SystemExit(f"{candidates} holds no query windows")
    variant = "fp16" if device == "cuda" else "fp32"
    scorer = OnnxScorer.load(export_dir, device=device, batch_size=MODEL_SERVER_MAX_ROWS, variant=variant,
                             batch_tokens=BATCH_TOKENS)
    work = merged_batches(scorer, windows, BATCH_TOKENS, f"merged{MERGE_WINDOWS}-t{BATCH_TOKENS}")
    variants: dict = {"product": (work, serial(scorer.score_batch))}
    for tokens in (BATCH_TOKENS // 2, BATCH_TOKENS * 2):
        variants[f"tokens-{tokens}"] = (merged_batches(scorer, windows, tokens, f"t{tokens}"), serial(scorer.score_batch))
    errors: dict[str, str] = {}
    result: dict = {"device": device, "variant": variant, "windows": len(windows), "batches": len(work.batches),
                    "pairs": work.pairs, "rounds": rounds, "variants": {}, "cuda_graph_full_batches": {},
                    "window_latency": {}, "kernels": {}, "errors": errors}
    cuda = None
    if device == "cuda":
        cuda = CudaVariants(export_dir / scorer.variant.file, scorer.meta.input_names, scorer.meta.output_name)
        for bits in SDPA_KERNELS:
            try:
                variants[f"sdpa-{bits}"] = (work, serial(cuda.host_bound(cuda.session(sdpa_kernel=str(bits)))))
            except Exception as exc:
                errors[f"sdpa-{bits}"] = first_line(exc)
        try:
            packed = CudaVariants(packed_file(export_dir / scorer.variant.file), scorer.meta.input_names,
                                  scorer.meta.output_name)
            variants["packed"] = (work, serial(packed.host_bound(packed.session())))
        except Exception as exc:
            errors["packed"] = first_line(exc)
        try:
            variants["device-inputs"] = (work, cuda.device_inputs(cuda.session(), work))
            variants["two-sessions"] = (work, cuda.two_sessions())
        except Exception as exc:
            errors["device-inputs/two-sessions"] = first_line(exc)
    result["variants"] = summarise(time_passes(variants, rounds, errors), "product")
    result["window_latency"] = window_latency_ms(scorer, windows[:100], rounds)
    save(result)
    if cuda is None:
        return result
    full_shape = (256, scorer.encoder.max_length)
    full = Batches("full", [b for b in work.batches if b.shape == full_shape],
                   [o for o, b in zip(work.offsets, work.batches) if b.shape == full_shape])
    try:
        kernels = kernel_table(scorer.score_batch, work.batches[:20])
    except Exception as exc:
        kernels = {"unavailable": first_line(exc)}
    result["kernels"] = kernels
    save(result)
    try:
        kernels["attention"] = attention_kernels(export_dir, candidates)
    except Exception as exc:
        errors["attention-report"] = first_line(exc)
    save(result)
    if full.batches:
        try:
            graph = {"product": (full, serial(scorer.score_batch)), "cuda-graph": (full, serial(cuda.cuda_graph(full_shape)))}
            result["cuda_graph_full_batches"] = summarise(time_passes(graph, rounds), "product")
            result["cuda_graph_full_batches"]["batches"] = len(full.batches)
        except Exception as exc:
            errors["cuda-graph"] = first_line(exc)
    save(result)
    return result


def summarise(timed: dict, reference: str) -> dict:
    """Each variant's pairs/s, its ratio to `reference` and its largest score difference from it
    on the same pairs (variants on other batches cover the same pairs in the same order)."""
    base = timed[reference]
    out = {}
    for name, result in timed.items():
        same = result["scores"].shape == base["scores"].shape
        out[name] = {"pairs_per_s": result["pairs_per_s"],
                     "vs_" + reference: round(result["pairs_per_s"] / base["pairs_per_s"], 4),
                     "max_abs_diff": float(np.max(np.abs(result["scores"] - base["scores"]))) if same else None}
    return out


def markdown(result: dict) -> str:
    lines = [f"scorer probe on {result['device']} ({result['variant']}): {result['windows']} windows, "
             f"{result['pairs']} pairs in {result['batches']} batches, {result['rounds']} rounds", "",
             "| variant | pairs/s | vs product | max abs diff |", "|---|---|---|---|"]
    for name, row in result["variants"].items():
        lines.append(f"| {name} | {row['pairs_per_s']:,.0f} | {row['vs_product']:.3f} | {row['max_abs_diff']} |")
    if result["cuda_graph_full_batches"]:
        lines += ["", f"full 256 x 256 batches ({result['cuda_graph_full_batches']['batches']}):"]
        for name in ("product", "cuda-graph"):
            row = result["cuda_graph_full_batches"][name]
            lines.append(f"- {name}: {row['pairs_per_s']:,.0f} pairs/s ({row['vs_product']:.3f}x), "
                         f"max abs diff {row['max_abs_diff']}")
    latency = result["window_latency"]
    lines += ["", f"one window ({latency['windows']} windows): p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms"]
    kernels = result["kernels"]
    if kernels.get("top"):
        lines += ["", f"kernels over {kernels['runs']} runs: GPU busy {kernels['busy_share']:.1%} of the wall time", "",
                  "| kernel | calls | share |", "|---|---|---|"]
        lines += [f"| {row['kernel']} | {row['calls']} | {row['share']:.1%} |" for row in kernels["top"]]
    elif kernels:
        lines += ["", f"kernels: {kernels.get('unavailable')}"]
    for setting, report in kernels.get("attention", {}).items():
        lines += [f"- attention kernel, {setting}: " + " / ".join(report)]
    for name, error in result["errors"].items():
        lines.append(f"- {name} failed: {error}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, nargs="?")
    parser.add_argument("candidates", type=Path, nargs="?")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--env-from", type=Path, default=None,
                        help="print shell exports that select the best attention kernel of this probe.json, then exit")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--debug-sdpa", default=None, help=argparse.SUPPRESS)  # the child of attention_kernels
    args = parser.parse_args(argv)
    if args.env_from is not None:
        bits = best_attention(json.loads(args.env_from.read_text()))
        for name, value in ({} if bits is None else attention_env(bits)).items():
            print(f"export {name}={value}")
        print(f"# best attention kernel bits: {bits}")
        return 0
    if args.export_dir is None or args.candidates is None or args.out is None:
        parser.error("EXPORT_DIR, CANDIDATES and --out are required (or --env-from PROBE_JSON alone)")
    if args.debug_sdpa is not None:
        debug_one_batch(args.export_dir, args.candidates, args.debug_sdpa)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:
        (args.out / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "probe.md").write_text(markdown(result))

    result = probe(args.export_dir, args.candidates, args.queries, args.rounds, args.device, save)
    save(result)
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
