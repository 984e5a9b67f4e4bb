"""`es-rerank bench reliability DATASET_DIR`: load with faults, soak, abuse and fuzzing of the proxy, on loopback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from es_rerank.cli.options import option

DEFAULT_WORK_DIR = Path("runs/reliability")


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated req/s such as 10,20,40, got {text!r}") from None
    if any(rate <= 0 for rate in rates) or list(rates) != sorted(rates):
        raise click.BadParameter(f"rates must be positive and increasing, got {text!r}")
    return rates


@click.command(name="reliability")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Export directory the proxy scores with (CPU); default: a term-overlap scorer.")
@option("--port", type=int, default=9270, help="Port of the throw-away OpenSearch node (wiped, SIGKILLed).")
@option("--heap", default="512m", help="JVM heap of the throw-away node.")
@option("--ramp-rates", default="10,20,40,80,120,160",
        help="Ramp without faults: req/s steps, stopping at the first whose p99 or answers fail.")
@option("--ramp-step-s", type=float, default=20.0, help="Seconds per ramp step.")
@option("--rate", type=float, default=None, help="Req/s of the fault run; default: half the held ramp rate.")
@option("--p99-bound-ms", type=float, default=500.0, help="Latency bound (p99, from intended send time).")
@option("--fault-rounds", type=int, default=2, help="Rounds of all seven fault kinds in the fault run.")
@option("--fault-hold-s", type=float, default=5.0, help="Seconds each relay or scorer fault lasts.")
@option("--gap-s", type=float, default=8.0, help="Calm seconds before each fault (recovery must fit in it).")
@option("--window", type=int, default=30, help="Rerank window of the proxy under test.")
@option("--deadline-ms", type=int, default=300, help="Rerank deadline of the proxy under test.")
@option("--read-timeout-s", type=float, default=2.0, help="Proxy's OpenSearch read timeout (black holes end in 504).")
@option("--hang-s", type=float, default=10.0, help="Longest acceptable answer time; longer counts as a hang.")
@option("--soak-minutes", type=float, default=10.0, help="Soak length at a steady rate (0 skips the soak).")
@option("--soak-rate", type=float, default=None, help="Req/s of the soak; default: the fault run's rate.")
@option("--fuzz-examples", type=int, default=2000, help="Hypothesis examples per fuzzing property.")
@option("--atheris-runs", type=int, default=0, help="Atheris runs of the planning/rewriting harness (0: off).")
@option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR,
        help="Where the proxy log, the scorer's fault switch and the report go.")
@option("--json-out", type=click.Path(path_type=Path), default=None,
        help="Also write the figures (benchmarks.json records) to this file.")
def bench_reliability(dataset_dir: Path, model: Path | None, port: int, heap: str, ramp_rates: str, ramp_step_s: float,
                      rate: float | None, p99_bound_ms: float, fault_rounds: int, fault_hold_s: float, gap_s: float,
                      window: int, deadline_ms: int, read_timeout_s: float, hang_s: float, soak_minutes: float,
                      soak_rate: float | None, fuzz_examples: int, atheris_runs: int, work_dir: Path,
                      json_out: Path | None) -> None:
    """Prove the proxy holds load, survives faults, refuses hostile HTTP; all on loopback, bounded in time.

    \b
    1. A throw-away OpenSearch node (--port, never 9200) gets DATASET_DIR's corpus; the
       proxy runs as its own process behind a fault-injecting TCP relay.
    2. Ramp: open-loop constant-rate load (reranked and pass-through searches, _bulk
       writes with unique ids, _count, _cat) at each --ramp-rates step; the highest step
       with p99 <= --p99-bound-ms and only acceptable answers is the capacity.
    3. Fault run at --rate: relay latency, resets and black hole; scorer stalls and
       out-of-memory; OpenSearch SIGKILLed and restarted; proxy SIGTERMed and restarted.
    4. Soak (--soak-minutes) at --soak-rate: proxy RSS and open fds must stay flat.
    5. Checks against OpenSearch itself: no acknowledged write lost, none stored twice,
       no request sent upstream twice, fallback pages equal to BM25; then the abuse
       catalogue (raw sockets) and hypothesis fuzzing (--atheris-runs adds atheris).

    Prints the report; exits 1 when a check failed.
    """
    from es_rerank.errors import EsRerankError
    from lab.reliability.bench import BenchSettings, run_reliability_bench
    from lab.reliability.loadrun import LoadRunSettings

    ramp = _rates(ramp_rates)
    if rate is None and not ramp:
        raise click.UsageError("give --rate, or --ramp-rates to derive it from")
    load = LoadRunSettings(dataset=dataset_dir, work_dir=work_dir, port=port, heap=heap, model=str(model or ""),
                           window=window, deadline_ms=deadline_ms, read_timeout_s=read_timeout_s,
                           rate=rate or 0.0, ramp_rates=ramp, ramp_step_s=ramp_step_s, p99_bound_ms=p99_bound_ms,
                           fault_rounds=fault_rounds, fault_hold_s=fault_hold_s, gap_s=gap_s, hang_s=hang_s,
                           soak_minutes=soak_minutes, soak_rate=soak_rate or 0.0)
    command = "es-rerank " + " ".join(sys.argv[1:])
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    report = run_reliability_bench(BenchSettings(load, fuzz_examples, atheris_runs, command), log)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    click.echo(json.dumps(report["figures"], indent=2))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report["figures"], indent=2) + "\n")
    if not report["passed"]:
        raise EsRerankError(f"a reliability check failed; details in {work_dir / 'report.json'}",
                            hint="look at findings, faults.windows[].problems, abuse.failed and fuzz there")
