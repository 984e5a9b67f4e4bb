"""The load, fault and soak run: a throw-away node, the fault relay, the proxy process, open-loop load.

Phases, each bounded in time: an optional rate ramp without faults (held load: the highest
rate whose p99 stays under the bound with no errors); the fault run at a fixed rate with
every fault kind injected in turn; an optional soak at a steady rate while the proxy's RSS
and open fds are sampled. Then the checks against OpenSearch itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from es_rerank.data.beir import read_queries
from es_rerank.errors import EsRerankError
from es_rerank.data.textfiles import open_text
from lab.reliability.classify import ACCEPTABLE, classify, overlaps
from lab.reliability.faults import FaultTools, FaultWindow, fault_plan, inject
from lab.reliability.node import THROWAWAY_PORT, ThrowawayNode, load_corpus
from lab.reliability.openloop import Record, RunClock, new_session, run_rate, summarize
from lab.reliability.proxy_process import ProxyProcess, ProxySpec, free_port
from lab.reliability.relay import FaultRelay
from lab.reliability.scorers import write_fault
from lab.reliability.soak import flatness, sample_until
from lab.reliability.survival import survived_kinds, window_outcome
from lab.reliability.verify import page_findings, uid_counts, write_findings
from lab.reliability.workload import Workload, writes_index_body

CORPUS_INDEX = "rel-corpus"
WRITES_INDEX = "rel-writes"
_METRIC_LINE = re.compile(r'^es_rerank_requests_total\{kind="([^"]+)"\} (\S+)$', re.MULTILINE)


@dataclass(frozen=True)
class LoadRunSettings:
    """Knobs of the run; the defaults are the CI-sized run."""

    dataset: Path
    work_dir: Path
    port: int = THROWAWAY_PORT
    heap: str = "512m"
    model: str = ""
    window: int = 30
    deadline_ms: int = 300
    read_timeout_s: float = 2.0
    rate: float = 20.0  # 0: half the highest held ramp rate
    ramp_rates: tuple[float, ...] = ()
    ramp_step_s: float = 15.0
    p99_bound_ms: float = 1000.0
    fault_rounds: int = 1
    fault_hold_s: float = 4.0
    gap_s: float = 5.0
    tail_s: float = 6.0
    grace_s: float = 3.0
    hang_s: float = 10.0
    client_timeout_s: float = 30.0
    soak_minutes: float = 0.0
    soak_rate: float = 0.0  # 0: the fault run's rate
    max_queries: int = 200
    max_in_flight: int = 32


def run_load_suite(settings: LoadRunSettings, log: Callable[[str], None] = print,
                   then: Callable[[ProxyProcess, ThrowawayNode], dict] | None = None) -> dict:
    """Run every phase and return the report (figures, findings, fault outcomes, soak verdict).

    `then(proxy, node)` runs last, while the proxy and node still run; its result is `report["then"]`.
    """
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    node = ThrowawayNode(settings.port, settings.heap)
    log(f"starting a throw-away OpenSearch node on {node.url} (fresh data)")
    node.start_fresh()
    try:
        docs = load_corpus(node, settings.dataset, CORPUS_INDEX)
        node.call("PUT", f"/{WRITES_INDEX}", writes_index_body())
        log(f"indexed {docs} documents into {CORPUS_INDEX}; writes go to {WRITES_INDEX}")
        with FaultRelay("127.0.0.1", settings.port) as relay:
            return _with_relay(settings, node, relay, log, then)
    finally:
        node.stop()
        node.release()


def _with_relay(settings: LoadRunSettings, node: ThrowawayNode, relay: FaultRelay, log, then) -> dict:
    fault_file = settings.work_dir / "scorer-fault"
    write_fault(fault_file, "none")
    spec = ProxySpec(upstream=relay.url, index=CORPUS_INDEX, port=free_port(), fault_file=str(fault_file),
                     log_file=str(settings.work_dir / "proxy.log"), model=settings.model, window=settings.window,
                     deadline_ms=settings.deadline_ms, read_timeout_s=settings.read_timeout_s,
                     max_in_flight=settings.max_in_flight)
    proxy = ProxyProcess(spec, settings.work_dir / "proxy-spec.json")
    proxy.start()
    log(f"proxy up at {proxy.url} (pid {proxy.pid}), relaying through {relay.url} to {node.url}")
    queries = list(read_queries(settings.dataset).values())[: settings.max_queries]
    workload = Workload(f"rel{int(time.time())}", CORPUS_INDEX, WRITES_INDEX, queries)
    lifetimes: list[Counter] = []
    try:
        phases = asyncio.run(_phases(settings, workload, node, relay, proxy, fault_file, lifetimes, log))
        lifetimes.append(_requests_in(proxy.metrics()))
        report = _report(settings, phases, workload, node, relay, lifetimes, log)
        if then is not None:
            report["then"] = then(proxy, node)
        return report
    finally:
        if proxy.process is not None:
            proxy.terminate()


async def _phases(settings, workload, node, relay, proxy, fault_file, lifetimes, log) -> dict:
    clock = RunClock()
    phases: dict = {"ramp": [], "fault_records": [], "windows": [], "soak_records": [], "soak_samples": []}
    seq = 0
    async with new_session(512, settings.client_timeout_s) as session:
        for rate in settings.ramp_rates:
            records = await run_rate(session, proxy.url, workload, rate, settings.ramp_step_s, clock, seq)
            seq += len(records)
            step = {"rate": rate, **summarize(records)}
            step["findings"] = sum(_label(r, workload, [], relay, settings) not in ACCEPTABLE for r in records)
            step["held"] = _held(step, settings)
            phases["ramp"].append(step)
            phases.setdefault("ramp_records", []).extend(records)
            log(f"ramp {rate:g} req/s: p99 {step['p99_ms']} ms, {step['findings']} findings -> "
                f"{'held' if step['held'] else 'not held'}")
            if not step["held"]:
                break
        rate = phases["fault_rate"] = _fault_rate(settings, phases["ramp"])
        tools = FaultTools(relay, node, proxy, fault_file)
        stop = asyncio.Event()
        budget = 600.0 * settings.fault_rounds + 120.0
        load = asyncio.create_task(run_rate(session, proxy.url, workload, rate, budget, clock, seq, stop=stop))
        log(f"fault run at {rate:g} req/s: {settings.fault_rounds} round(s) of every fault")
        windows = await inject(fault_plan(settings.fault_rounds, settings.fault_hold_s), tools, clock, settings.gap_s,
                               on_proxy_stop=lambda p: lifetimes.append(_requests_in(p.metrics())))
        for window in windows:
            log(f"  {window.kind}: {window.began:.1f}s-{window.ended:.1f}s {window.detail}{window.error}")
        await asyncio.sleep(settings.tail_s)
        stop.set()
        phases["fault_records"] = await load
        phases["windows"] = windows
        seq += len(phases["fault_records"])
        if settings.soak_minutes > 0:
            soak_rate = phases["soak_rate"] = settings.soak_rate or rate
            log(f"soak: {settings.soak_minutes:g} min at {soak_rate:g} req/s, sampling proxy pid {proxy.pid}")
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_until(proxy.pid, stop, 5.0, settings.soak_minutes * 60 + 60))
            phases["soak_records"] = await run_rate(session, proxy.url, workload, soak_rate,
                                                    settings.soak_minutes * 60, clock, seq)
            stop.set()
            phases["soak_samples"] = await sampler
    return phases


def _fault_rate(settings: LoadRunSettings, ramp: list[dict]) -> float:
    """The fault run's rate: as set, or half the highest held ramp rate (headroom for recovery bursts)."""
    if settings.rate > 0:
        return settings.rate
    held = [step["rate"] for step in ramp if step["held"]]
    if not held:
        raise EsRerankError("no ramp rate was held, so there is no rate to run the faults at",
                            hint="lower --ramp-rates, raise --p99-bound-ms, or give --rate")
    return max(5.0, max(held) / 2)


def _held(step: dict, settings: LoadRunSettings) -> bool:
    return (step["p99_ms"] is not None and step["p99_ms"] <= settings.p99_bound_ms and step["findings"] == 0
            and step["skipped"] == 0)


def _label(record: Record, workload: Workload, windows: list[FaultWindow], relay: FaultRelay,
           settings: LoadRunSettings) -> str:
    opaque = workload.request(record.seq).opaque_id
    return classify(record, opaque, windows, relay.opaque_ids.get(opaque, 0), settings.grace_s, settings.hang_s)


def _requests_in(metrics_text: str) -> Counter:
    return Counter({kind: float(value) for kind, value in _METRIC_LINE.findall(metrics_text)})


def _report(settings, phases, workload, node, relay, lifetimes, log) -> dict:
    records: list[Record] = phases["fault_records"]
    windows: list[FaultWindow] = phases["windows"]
    every = phases.get("ramp_records", []) + records + phases["soak_records"]
    in_fault_run = {r.seq for r in records}
    labels = {r.seq: _label(r, workload, windows if r.seq in in_fault_run else [], relay, settings) for r in every}
    _save_records(settings.work_dir / "records.jsonl.gz", every, labels)
    findings = Counter(label for label in labels.values() if label not in ACCEPTABLE)
    outcomes = [window_outcome(w, records, labels, settings.grace_s, settings.gap_s + settings.grace_s)
                for w in windows]
    log("checking writes and pages against OpenSearch directly")
    writes = write_findings(every, uid_counts(node, WRITES_INDEX), relay.opaque_ids, workload)
    pages = page_findings(every, node, workload, settings.window)
    calm = [r for r in records if not any(overlaps(r, w, settings.grace_s) for w in windows)]
    calm_figures = {k: v for k, v in summarize(calm).items() if k != "offered_rps"} if calm else {}
    fault_run = {"rate": phases["fault_rate"], **summarize(records), "calm": calm_figures,
                 "answers": dict(Counter(labels[r.seq] if labels[r.seq] in ACCEPTABLE else "finding" for r in records))}
    held_rates = [s["rate"] for s in phases["ramp"] if s["held"]]
    proxy_in: Counter[str] = sum(lifetimes, Counter())
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "ramp": phases["ramp"],
        "capacity_rps_at_p99": max(held_rates) if held_rates else None,
        "fault_run": fault_run,
        "faults": {"windows": outcomes, "survived_kinds": survived_kinds(outcomes),
                   "survived": len(survived_kinds(outcomes)), "injected_kinds": len({w.kind for w in windows})},
        "findings": dict(findings),
        "finding_examples": [f"#{seq}: {label}" for seq, label in labels.items() if label not in ACCEPTABLE][:20],
        "writes": writes,
        "pages": pages,
        "requests": {"sent_by_load": len(every), "answered": sum(1 for r in every if r.status),
                     "proxy_counted_in": dict(proxy_in), "proxy_counted_in_total": sum(proxy_in.values()),
                     "upstream_out_seen_by_relay": sum(relay.opaque_ids.values()),
                     "upstream_out_by_kind": _relay_by_kind(every, workload, relay)},
    }
    calm_p99 = (fault_run.get("calm") or {}).get("p99_ms")
    held = (calm_p99 is not None and calm_p99 <= settings.p99_bound_ms and not findings
            and writes["lost_writes"] == 0 and writes["duplicate_writes"] == 0
            and pages["bm25_page_mismatches"] == 0 and pages["reranked_pages_outside_the_window"] == 0)
    report["rps_at_p99"] = fault_run["offered_rps"] if held else None
    if phases["soak_samples"]:
        report["soak_samples"] = [[round(x.t, 1), round(x.rss_mib, 2), x.fds] for x in phases["soak_samples"]]
        report["soak"] = {"minutes": settings.soak_minutes, "rate": phases["soak_rate"], **summarize(phases["soak_records"]),
                          **flatness(phases["soak_samples"], warmup_s=min(60.0, settings.soak_minutes * 60 / 5))}
    report["passed"] = bool(held and report["faults"]["survived"] == report["faults"]["injected_kinds"]
                            and report.get("soak", {"flat": True})["flat"])
    return report


def _save_records(path: Path, records: list[Record], labels: dict[int, str]) -> None:
    """Every request's fate, one JSON line each, for looking into a run afterwards."""
    with open_text(path, "w") as out:
        for r in records:
            out.write(json.dumps({"seq": r.seq, "kind": r.kind, "due": round(r.due, 4), "sent": round(r.sent, 4),
                                  "done": round(r.done, 4), "status": r.status, "client_error": r.client_error,
                                  "x_rerank": r.headers.get("x-rerank", ""), "error_type": r.error_type,
                                  "label": labels[r.seq]}) + "\n")


def _relay_by_kind(records: list[Record], workload: Workload, relay: FaultRelay) -> dict:
    out: Counter[str] = Counter()
    for record in records:
        out[record.kind] += relay.opaque_ids.get(workload.request(record.seq).opaque_id, 0)
    return dict(out)
