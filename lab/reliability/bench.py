"""`es-rerank bench reliability`: the load, fault and soak run, the abuse catalogue, the fuzzing, the figures.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from lab.reliability.loadrun import CORPUS_INDEX, LoadRunSettings, run_load_suite

ATHERIS_TIMEOUT_S = 1800


@dataclass(frozen=True)
class BenchSettings:
    """The load run's settings plus the fuzzing budget and the command line to record."""

    load: LoadRunSettings
    fuzz_examples: int
    atheris_runs: int
    command: str


def run_reliability_bench(settings: BenchSettings, log: Callable[[str], None] = print) -> dict:
    """Every part in one run; the report holds the details and `figures` (benchmarks.json records).
    """
    started = time.monotonic()

    def abuse_phase(proxy, node) -> dict:
        return run_abuse(proxy.url, node.url, proxy.spec.max_body_bytes, proxy.spec.body_timeout_s, log)

    report = run_load_suite(settings.load, log, then=abuse_phase)
    report["abuse"] = report.pop("then")
    report["fuzz"] = run_fuzz(settings.fuzz_examples, settings.atheris_runs, log)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["figures"] = figures(report, settings)
    report["passed"] = bool(report["passed"] and report["abuse"]["failures"] == 0
                            and all(f["failures"] == 0 for f in report["fuzz"]))
    return report


def run_abuse(proxy_url: str, node_url: str, max_body_bytes: int, body_timeout_s: float, log) -> dict:
    """The abuse catalogue against the running proxy, with a decoy upstream that must hear nothing.
    """
    from lab.reliability.abuse_runner import CATALOGUE, run_cases
    from lab.reliability.abuse_target import AbuseTarget
    from lab.reliability.decoy import DecoyServer

    log(f"abuse: {len(CATALOGUE)} hostile or malformed requests")
    with DecoyServer() as decoy:
        target = AbuseTarget(proxy_url, node_url, CORPUS_INDEX, "boundary layer", decoy, max_body_bytes,
                             body_timeout_s)
        results = run_cases(target, CATALOGUE)
    failed = [{"case": r.name, "family": r.family, "problems": list(r.problems)} for r in results if not r.ok]
    for failure in failed:
        log(f"  abuse case {failure['case']} failed: {failure['problems']}")
    families: dict[str, int] = {}
    for result in results:
        families[result.family] = families.get(result.family, 0) + 1
    return {"cases": len(results), "failures": len(failed), "by_family": families, "failed": failed,
            "decoy_connections": decoy.connections}


def run_fuzz(examples: int, atheris_runs: int, log) -> list[dict]:
    """Hypothesis properties of planning and rewriting (`examples` each), then atheris when asked and installed.
    """
    try:
        from lab.reliability.fuzz_plan import deep_bodies, deep_body_problems, plan_problems, search_requests
        from lab.reliability.fuzz_rewrite import rewrite_cases, rewrite_problems
        from lab.reliability.fuzz_runner import run_property
    except ImportError as exc:
        log(f"fuzzing skipped: {exc} (pip install hypothesis)")
        return []
    results = []
    for name, strategy, check, count in (("plan_search", search_requests(), plan_problems, examples),
                                         ("deep_bodies", deep_bodies(), deep_body_problems, max(1, examples // 10)),
                                         ("rewrite", rewrite_cases(), rewrite_problems, examples)):
        result = run_property(name, strategy, check, count)
        log(f"fuzz {name}: {result.cases} cases, {result.failures} failures {result.example[:300]}")
        results.append({"name": name, "tool": "hypothesis", "cases": result.cases, "failures": result.failures,
                        "example": result.example})
    if atheris_runs > 0:
        results.append(_atheris(atheris_runs, log))
    return results


def _atheris(runs: int, log) -> dict:
    try:
        import atheris  # noqa: F401
    except ImportError:
        log("atheris is not installed: its harness was skipped (pip install atheris)")
        return {"name": "plan_and_rewrite", "tool": "atheris", "cases": 0, "failures": 0, "example": "not installed"}
    done = subprocess.run([sys.executable, "-m", "lab.reliability.atheris_harness", f"-atheris_runs={runs}"],
                          capture_output=True, text=True, timeout=ATHERIS_TIMEOUT_S)
    failed = done.returncode != 0
    log(f"atheris: {runs} runs, {'FAILED' if failed else 'no property violated'}")
    return {"name": "plan_and_rewrite", "tool": "atheris", "cases": runs, "failures": int(failed),
            "example": done.stderr[-2000:] if failed else ""}


def figures(report: dict, settings: BenchSettings) -> list[dict]:
    """The benchmarks.json records of this run (figures that were not measured are left out).
    """
    from lab.proxy_bench.benchmark import hardware

    load = settings.load
    stamp = {"hardware": hardware() + " (shared with OpenSearch, the load generator and the relay)",
             "command": settings.command, "date": datetime.date.today().isoformat()}
    bound = f"p99 from intended send time <= {load.p99_bound_ms:g} ms outside fault windows"
    faults = report["faults"]
    out = [
        ("reliability.load.rps_at_p99", report["rps_at_p99"], "req/s",
         f"{bound}; {faults['injected_kinds']} fault kinds x {load.fault_rounds} injected in the same run; "
         f"mix 35% reranked, 20% pass-through search, 20% _bulk, 15% _count, 10% _cat"),
        ("reliability.load.lost_writes", report["writes"]["lost_writes"], "count",
         f"acknowledged bulk items ({report['writes']['acknowledged_writes']}) missing from the index afterwards"),
        ("reliability.load.duplicate_writes", report["writes"]["duplicate_writes"], "count",
         "documents stored twice per unique uid, plus creates refused as already done"),
        ("reliability.faults.survived", faults["survived"], "count",
         f"of {faults['injected_kinds']} fault kinds injected: " + ", ".join(faults["survived_kinds"])),
        ("reliability.abuse.cases", report["abuse"]["cases"] + sum(f["cases"] for f in report["fuzz"]), "count",
         f"{report['abuse']['cases']} raw-socket cases + " +
         " + ".join(f"{f['cases']} {f['tool']} {f['name']}" for f in report["fuzz"])),
        ("reliability.abuse.failures", report["abuse"]["failures"] + sum(f["failures"] for f in report["fuzz"]), "count",
         "cases without their expected outcome"),
        ("reliability.load.capacity_rps_at_p99_no_faults", report["capacity_rps_at_p99"], "req/s",
         f"highest ramp rate with p99 <= {load.p99_bound_ms:g} ms and no findings, no faults"),
        ("reliability.load.p99_ms_calm", (report["fault_run"].get("calm") or {}).get("p99_ms"), "ms",
         f"fault run at {report['fault_run']['rate']:g} req/s, requests outside fault windows"),
        ("reliability.load.p99_ms_all", report["fault_run"]["p99_ms"], "ms",
         f"fault run at {report['fault_run']['rate']:g} req/s, every answered request, faults included"),
    ]
    soak = report.get("soak")
    if soak and "rss_growth_mib" in soak:
        out += [("reliability.soak.rss_growth_mib", soak["rss_growth_mib"], "MiB",
                 f"{soak['minutes']:g} min at {soak['rate']:g} req/s; allowed {soak['rss_allowed_growth_mib']} MiB"),
                ("reliability.soak.fds_growth", soak["fds_last_quarter_median"] - soak["fds_first_quarter_median"], "count",
                 f"{soak['minutes']:g} min at {soak['rate']:g} req/s; allowed {soak['fds_allowed_growth']}")]
    return [{"name": name, "value": value, "unit": unit, "baseline": baseline, **stamp}
            for name, value, unit, baseline in out if value is not None]
