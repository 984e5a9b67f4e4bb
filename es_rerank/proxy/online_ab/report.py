"""`es-rerank ab report LOG`: what live traffic says, per arm, from the decision log and click events.

Per variant: searches, click-through (share of searches with at least one click, Wilson 95%
interval) and the mean reciprocal rank of the first click (0 for a search without clicks,
bootstrap 95% interval). Between the split arms: the CTR difference with Fisher's exact test
and the MRR difference with Welch's t-test. For interleaved searches: wins, ties and losses of
the reranked team, with a two-sided binomial test on wins against losses (ties left out).
Searches are treated as independent; many searches by one user make the intervals optimistic.

Example:
    >>> from es_rerank.proxy.online_ab.decision_log import decision_record
    >>> decisions = [decision_record(query_id="q1", client_hash="c", variant="interleave", hit_ids=["a", "b"],
    ...                              teams=["rerank", "bm25"], latency_ms=5, index="i")]
    >>> clicks = [{"action_name": "click", "query_id": "q1", "event_attributes": {"object": {"object_id": "a"}}}]
    >>> summary = summarise(LogContents.from_records(decisions + clicks))
    >>> summary["interleaving"]["wins"], summary["variants"]["interleave"]["mrr"]
    (1, 1.0)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from es_rerank.proxy.online_ab.decision_log import validate_decision
from es_rerank.proxy.online_ab.events import CLICK_ACTIONS
from es_rerank.proxy.online_ab.interleave import credit, outcome
from es_rerank.evaluation.protocol import BM25, INTERLEAVE, RERANK
from es_rerank.evaluation.significance import mean_ci
from es_rerank.errors import DatasetError

SCHEMA = "es-rerank/ab-online/1"


@dataclass
class LogContents:
    """Decision lines by query id, event lines, and the lines that could not be used."""

    decisions: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)

    def add(self, record: object, where: str) -> None:
        """Sort one decoded line into decisions or events, or note why it is unusable."""
        if isinstance(record, dict) and "query_response_hit_ids" in record:
            problems = validate_decision(record)
            if problems:
                self.bad_lines.append(f"{where}: {'; '.join(problems)}")
            elif record["query_id"] in self.decisions:
                self.bad_lines.append(f"{where}: query_id {record['query_id']} logged twice; kept the first")
            else:
                self.decisions[record["query_id"]] = record
        elif isinstance(record, dict) and isinstance(record.get("action_name"), str) and record.get("query_id"):
            self.events.append(record)
        else:
            self.bad_lines.append(f"{where}: neither a decision (query_response_hit_ids) nor an event (action_name)")

    @classmethod
    def from_records(cls, records: Iterable[object]) -> "LogContents":
        contents = cls()
        for i, record in enumerate(records, start=1):
            contents.add(record, f"record {i}")
        return contents


def read_logs(paths: Sequence[Path]) -> LogContents:
    """Read decision and event lines from JSON-lines files (one or several replicas' logs).
    """
    contents = LogContents()
    for path in paths:
        try:
            handle = open(path, encoding="utf-8")
        except OSError as exc:
            raise DatasetError(f"cannot read log {path}: {exc}", hint="pass the proxy's --ab-log file") from exc
        with handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    contents.bad_lines.append(f"{path.name}:{line_no}: not JSON ({exc.msg})")
                    continue
                contents.add(record, f"{path.name}:{line_no}")
    return contents


def clicked_ranks(contents: LogContents) -> tuple[dict[str, set[int]], int]:
    """1-based page positions clicked per query id, and how many click events matched no search.

    A click is placed by its object id in the logged hits, else by its position ordinal.
    """
    ranks: dict[str, set[int]] = {}
    unmatched = 0
    for event in contents.events:
        if event.get("action_name") not in CLICK_ACTIONS:
            continue
        decision = contents.decisions.get(event.get("query_id"))
        attributes = event.get("event_attributes") or {}
        object_id = str((attributes.get("object") or {}).get("object_id", ""))
        ordinal = (attributes.get("position") or {}).get("ordinal")
        if decision is None:
            unmatched += 1
            continue
        hit_ids = decision["query_response_hit_ids"]
        if object_id in hit_ids:
            position = hit_ids.index(object_id) + 1
        elif isinstance(ordinal, int) and 1 <= ordinal <= len(hit_ids):
            position = ordinal
        else:
            unmatched += 1
            continue
        ranks.setdefault(decision["query_id"], set()).add(position)
    return ranks, unmatched


def summarise(contents: LogContents, seed: int = 0) -> dict:
    """Per-variant CTR and MRR with intervals, split-arm differences and interleaving outcomes."""
    from scipy.stats import binomtest

    ranks, unmatched = clicked_ranks(contents)
    by_variant: dict[str, list[dict]] = {}
    for decision in contents.decisions.values():
        by_variant.setdefault(decision["query_attributes"]["variant"], []).append(decision)
    variants = {}
    reciprocal: dict[str, list[float]] = {}
    clicked_counts: dict[str, tuple[int, int]] = {}
    for variant, decisions in sorted(by_variant.items()):
        n = len(decisions)
        clicked = sum(1 for d in decisions if ranks.get(d["query_id"]))
        rr = [1.0 / (d["query_attributes"]["from"] + min(ranks[d["query_id"]])) if ranks.get(d["query_id"]) else 0.0
              for d in decisions]
        reciprocal[variant] = rr
        clicked_counts[variant] = (clicked, n)
        ctr_ci = binomtest(clicked, n).proportion_ci(confidence_level=0.95, method="wilson")
        mrr_ci = mean_ci(rr, seed=seed)
        latencies = sorted(d["query_attributes"]["latency_ms"] for d in decisions)
        variants[variant] = {
            "searches": n, "clicked_searches": clicked, "clicks": sum(len(ranks.get(d["query_id"], ())) for d in decisions),
            "ctr": clicked / n, "ctr_ci": [float(ctr_ci.low), float(ctr_ci.high)],
            "mrr": sum(rr) / n, "mrr_ci": mrr_ci.as_list(),
            "latency_ms_p50": latencies[len(latencies) // 2],
            "fallbacks": sum(1 for d in decisions if d["query_attributes"].get("fallback")),
        }
    summary = {
        "schema": SCHEMA,
        "searches": len(contents.decisions),
        "events": len(contents.events),
        "unmatched_clicks": unmatched,
        "bad_lines": len(contents.bad_lines),
        "variants": variants,
        "split": _split_comparison(clicked_counts, reciprocal),
        "interleaving": _interleaving(by_variant.get(INTERLEAVE, []), ranks),
    }
    return summary


def _split_comparison(clicked: dict[str, tuple[int, int]], reciprocal: dict[str, list[float]]) -> dict | None:
    from scipy.stats import fisher_exact, ttest_ind

    if RERANK not in clicked or BM25 not in clicked:
        return None
    (c1, n1), (c0, n0) = clicked[RERANK], clicked[BM25]
    p_ctr = fisher_exact([[c1, n1 - c1], [c0, n0 - c0]]).pvalue
    rr1, rr0 = reciprocal[RERANK], reciprocal[BM25]
    p_mrr = None
    if len(rr1) > 1 and len(rr0) > 1 and (len(set(rr1)) > 1 or len(set(rr0)) > 1):
        with warnings.catch_warnings():  # one arm without spread makes scipy warn about precision
            warnings.simplefilter("ignore", RuntimeWarning)
            p_mrr = float(ttest_ind(rr1, rr0, equal_var=False).pvalue)
    return {"treatment": RERANK, "control": BM25,
            "ctr_delta": c1 / n1 - c0 / n0, "p_ctr_fisher": float(p_ctr),
            "mrr_delta": sum(rr1) / len(rr1) - sum(rr0) / len(rr0), "p_mrr_welch": p_mrr}


def _interleaving(decisions: list[dict], ranks: dict[str, set[int]]) -> dict | None:
    from scipy.stats import binomtest

    if not decisions:
        return None
    tally = {"win": 0, "loss": 0, "tie": 0}
    # A search the proxy served as plain BM25 (model failure) was never interleaved: leave it out.
    served = [d for d in decisions if not d["query_attributes"].get("fallback")]
    for decision in served:
        result = outcome(credit(decision["query_attributes"]["teams"], ranks.get(decision["query_id"], ())))
        if result is not None:
            tally[result] += 1
    wins, losses, ties = tally["win"], tally["loss"], tally["tie"]
    decided = wins + losses
    with_clicks = decided + ties
    return {
        "searches": len(served), "fallbacks_left_out": len(decisions) - len(served), "with_clicks": with_clicks,
        "wins": wins, "ties": ties, "losses": losses,
        "p_binomial": float(binomtest(wins, decided, 0.5).pvalue) if decided else None,
        # Chapelle et al. (2012): share of wins counting ties as half, minus one half.
        "preference": (wins + ties / 2) / with_clicks - 0.5 if with_clicks else None,
    }


def render_online_table(summary: dict) -> str:
    """The online summary as plain text.

    Example:
        >>> print(render_online_table({"searches": 0, "events": 0, "unmatched_clicks": 0, "bad_lines": 0,
        ...                            "variants": {}, "split": None, "interleaving": None}))
        0 searches, 0 events (0 clicks matched no search, 0 unusable lines)
        no searches in the log
    """
    lines = [f"{summary['searches']} searches, {summary['events']} events "
             f"({summary['unmatched_clicks']} clicks matched no search, {summary['bad_lines']} unusable lines)"]
    if not summary["variants"]:
        return "\n".join(lines + ["no searches in the log"])
    lines += ["", f"{'variant':<12} {'searches':>9} {'clicked':>8}  {'CTR [95% CI]':<24} {'MRR of clicks [95% CI]':<24}"]
    for name, v in summary["variants"].items():
        ctr = f"{v['ctr']:.4f} [{v['ctr_ci'][0]:.3f},{v['ctr_ci'][1]:.3f}]"
        mrr = f"{v['mrr']:.4f} [{v['mrr_ci'][0]:.3f},{v['mrr_ci'][1]:.3f}]"
        lines.append(f"{name:<12} {v['searches']:>9} {v['clicked_searches']:>8}  {ctr:<24} {mrr:<24}".rstrip())
    split = summary.get("split")
    if split:
        p_mrr = "n/a" if split["p_mrr_welch"] is None else f"{split['p_mrr_welch']:.4f}"
        lines += ["", f"rerank - bm25: CTR {split['ctr_delta']:+.4f} (Fisher p {split['p_ctr_fisher']:.4f}), "
                      f"MRR {split['mrr_delta']:+.4f} (Welch p {p_mrr})"]
    inter = summary.get("interleaving")
    if inter:
        p = "n/a" if inter["p_binomial"] is None else f"{inter['p_binomial']:.4f}"
        pref = "n/a" if inter["preference"] is None else f"{inter['preference']:+.4f}"
        lines += ["", f"interleaving: {inter['searches']} searches, {inter['with_clicks']} with clicks; rerank "
                      f"{inter['wins']} wins, {inter['ties']} ties, {inter['losses']} losses "
                      f"(binomial p {p}, preference {pref})"]
    return "\n".join(lines)
