"""The faults injected while the load runs, one after another, each recorded as a time window.

Kinds: latency, resets and a black hole in the relay between proxy and OpenSearch; the scorer
stalling past the deadline and running out of memory; OpenSearch SIGKILLed and restarted; the
proxy SIGTERMed (draining) and restarted.

Example:
    >>> [step.kind for step in fault_plan(rounds=1, hold_s=4.0)][:3]
    ['relay_latency', 'relay_reset', 'relay_blackhole']
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.reliability.scorers import write_fault

if TYPE_CHECKING:
    from lab.reliability.node import ThrowawayNode
    from lab.reliability.proxy_process import ProxyProcess
    from lab.reliability.relay import FaultRelay

FAULT_KINDS = ("relay_latency", "relay_reset", "relay_blackhole", "scorer_stall", "scorer_oom",
               "opensearch_sigkill", "proxy_sigterm")
# Faults between the proxy and OpenSearch: the proxy may answer 502/504 of its own while they last.
UPSTREAM_FAULTS = frozenset({"relay_latency", "relay_reset", "relay_blackhole", "opensearch_sigkill"})
SCORER_FAULTS = frozenset({"scorer_stall", "scorer_oom"})


@dataclass(frozen=True)
class FaultStep:
    """One fault to inject: its kind and how long to hold it (restarts take the time they take)."""

    kind: str
    hold_s: float

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class FaultWindow:
    """When a fault was on, on the run clock, and what happened while injecting it."""

    kind: str
    began: float
    ended: float
    detail: str = ""
    error: str = ""


def fault_plan(rounds: int, hold_s: float) -> list[FaultStep]:
    """Every fault kind once per round, the relay's first, the restarts last.

    Example:
        >>> len(fault_plan(rounds=2, hold_s=5.0))
        14
    """
    if rounds < 1 or hold_s <= 0:
        raise ValueError(f"need rounds >= 1 and hold_s > 0, got {rounds} and {hold_s}")
    return [FaultStep(kind, hold_s) for _ in range(rounds) for kind in FAULT_KINDS]


@dataclass
class FaultTools:
    """What the faults act on: the relay, the throw-away node, the proxy process and the scorer's control file."""

    relay: FaultRelay
    node: ThrowawayNode
    proxy: ProxyProcess
    fault_file: Path
    latency_s: float = 0.3
    stall_s: float = 1.5


async def inject(steps: list[FaultStep], tools: FaultTools, clock, gap_s: float,
                 on_proxy_stop=None) -> list[FaultWindow]:
    """Inject `steps` one after another with `gap_s` of calm before each; return their windows.

    `on_proxy_stop(proxy)` runs just before each SIGTERM (to read the metrics of that lifetime).
    """
    windows = []
    for step in steps:
        await asyncio.sleep(gap_s)
        began = clock.now()
        try:
            detail = await _apply(step, tools, on_proxy_stop)
            error = ""
        except Exception as exc:  # a fault that could not be injected or undone is reported, not hidden
            detail, error = "", f"{type(exc).__name__}: {exc}"
        windows.append(FaultWindow(step.kind, began, clock.now(), detail, error))
    return windows


async def _apply(step: FaultStep, tools: FaultTools, on_proxy_stop) -> str:
    kind = step.kind
    if kind.startswith("relay_"):
        mode = kind.removeprefix("relay_")
        tools.relay.set_mode(mode, latency_s=tools.latency_s if mode == "latency" else 0.0)
        try:
            await asyncio.sleep(step.hold_s)
        finally:
            tools.relay.set_mode("pass")
        return f"relay {mode} for {step.hold_s:g}s"
    if kind in SCORER_FAULTS:
        fault = kind.removeprefix("scorer_")
        write_fault(tools.fault_file, fault, tools.stall_s)
        try:
            await asyncio.sleep(step.hold_s)
        finally:
            write_fault(tools.fault_file, "none")
        return f"scorer {fault} for {step.hold_s:g}s" + (f" ({tools.stall_s:g}s per call)" if fault == "stall" else "")
    if kind == "opensearch_sigkill":
        pid = await asyncio.to_thread(tools.node.kill)
        await asyncio.to_thread(tools.node.restart)
        return f"OpenSearch pid {pid} SIGKILLed, restarted on the same data"
    if on_proxy_stop is not None:
        await asyncio.to_thread(on_proxy_stop, tools.proxy)
    code, drain_s = await asyncio.to_thread(tools.proxy.terminate)
    await asyncio.to_thread(tools.proxy.start)
    if code != 0:
        raise RuntimeError(f"the proxy exited with status {code} after SIGTERM")
    return f"proxy SIGTERMed (drained in {drain_s:.2f}s, exit 0), restarted"
