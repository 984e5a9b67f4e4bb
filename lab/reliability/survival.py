"""Did the proxy survive each fault? Acceptable answers while it lasted, its effect seen, and recovery after.

A window survived when: the fault was injected and undone without error; every request open
during it (plus grace) got an acceptable answer; its effect showed (scorer faults: BM25
fallbacks, never a model-ordered page finished inside it); and after it ended every request
kind succeeded again within `recovery_s` (reranked searches reranked again).

Example:
    >>> outcome = window_outcome(FaultWindow("scorer_oom", 1.0, 2.0), [], {}, grace_s=1.0, recovery_s=5.0)
    >>> outcome["survived"], outcome["problems"][0]
    (False, 'no BM25 fallback seen: the fault had no visible effect')
"""

from __future__ import annotations

from collections import Counter

from lab.reliability.classify import ACCEPTABLE, overlaps
from lab.reliability.faults import SCORER_FAULTS, FaultWindow
from lab.reliability.openloop import Record
from lab.reliability.workload import KINDS


def window_outcome(window: FaultWindow, records: list[Record], labels: dict[int, str], grace_s: float,
                   recovery_s: float) -> dict:
    """The verdict on one fault window, with the answers seen during it.

    Example:
        >>> window_outcome(FaultWindow("relay_reset", 0.0, 1.0, error="boom"), [], {}, 1.0, 5.0)["survived"]
        False
    """
    problems = [f"injecting the fault failed: {window.error}"] if window.error else []
    during = [r for r in records if overlaps(r, window, grace_s)]
    seen = Counter(labels[r.seq] if labels[r.seq] in ACCEPTABLE else "finding" for r in during)
    problems += [f"#{r.seq} {r.kind}: {labels[r.seq]}" for r in during if labels[r.seq] not in ACCEPTABLE][:5]
    rerank_headers = Counter(r.headers.get("x-rerank", "none") for r in during if r.kind == "rerank" and r.status == 200)
    if window.kind in SCORER_FAULTS:
        if not rerank_headers.get("fallback"):
            problems.append("no BM25 fallback seen: the fault had no visible effect")
        inside = [r for r in during if r.headers.get("x-rerank") == "reranked" and r.sent > window.began + 0.5
                  and r.done < window.ended]
        problems += [f"#{r.seq} was reranked by the model while it was failing" for r in inside][:5]
    recovered = _recovery_s(window, records, labels)
    if recovered is None or recovered > recovery_s:
        problems.append(f"not every request kind succeeded again within {recovery_s:g}s after the fault "
                        f"({'never' if recovered is None else f'{recovered:.1f}s'})")
    return {"kind": window.kind, "began_s": round(window.began, 2), "ended_s": round(window.ended, 2),
            "detail": window.detail, "answers": dict(seen), "rerank_headers": dict(rerank_headers),
            "recovered_after_s": None if recovered is None else round(recovered, 2),
            "survived": not problems, "problems": problems}


def _recovery_s(window: FaultWindow, records: list[Record], labels: dict[int, str]) -> float | None:
    """Seconds after the window until the last request kind had its first clean success."""
    firsts = {}
    for record in records:
        if record.due < window.ended or labels[record.seq] != "ok" or record.kind in firsts:
            continue
        if record.kind == "rerank" and record.headers.get("x-rerank") != "reranked":
            continue
        firsts[record.kind] = record.done - window.ended
    if set(firsts) != set(KINDS):
        return None
    return max(firsts.values())


def survived_kinds(outcomes: list[dict]) -> list[str]:
    """Fault kinds injected at least once whose every window survived.

    Example:
        >>> survived_kinds([{"kind": "a", "survived": True}, {"kind": "b", "survived": True},
        ...                 {"kind": "b", "survived": False}])
        ['a']
    """
    kinds = sorted({o["kind"] for o in outcomes})
    return [k for k in kinds if all(o["survived"] for o in outcomes if o["kind"] == k)]
