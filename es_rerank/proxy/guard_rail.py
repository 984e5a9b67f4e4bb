"""Do no harm: a model that loses to BM25 on an index's judged dev queries is not served there.

The evidence is an offline A/B verdict recorded in the export directory (`ab-verdicts.json`,
written by `es-rerank ab --model EXPORT --record-verdict`, and by the quickstart). A verdict
says "harm" when `ab`'s paired randomization test finds nDCG@10 significantly below BM25.
On such an index `serve` (unless `--allow-harm`) serves the safest configuration it has: BM25
fused with the bi-encoder when the index has one (`SAFE_FUSION`, no cross-encoder weight),
else plain BM25 (reranking off). An index without a recorded verdict is served as configured,
with a warning that says how to record one. Adapted models (`es-rerank adapt`) are exports
like any other, so the same rule holds for them.

Example:
    >>> from es_rerank.proxy.settings import IndexRule
    >>> verdict = Verdict("scifact", "train-dev", 50, 0.69, 0.43, -0.26, 0.0002, True)
    >>> rule, why = guard_rule(IndexRule("scifact"), verdict, allow_harm=False)
    >>> rule.rerank, why.startswith("index 'scifact': the model is not served")
    (False, True)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from es_rerank.proxy.settings import IndexRule
from es_rerank.errors import ModelError
from es_rerank.scoring.fusion import FusionWeights

VERDICTS_FILE = "ab-verdicts.json"
# The weights of recipes/fusion/bm25_dense_minilm.yaml (fitted on SciFact train, beat BM25 on
# SciFact and Cranfield test); tests check that the two stay equal.
SAFE_FUSION = FusionWeights(ce=0.0, bm25=0.5, dense=0.5, norm="minmax")


@dataclass(frozen=True)
class Verdict:
    """One offline A/B of the model against BM25 on one index (nDCG@10)."""

    index: str
    split: str
    queries: int
    bm25_ndcg10: float
    model_ndcg10: float
    delta: float
    p: float | None
    harm: bool          # significantly below BM25 (ab's `significant_harm`)

    @classmethod
    def from_report(cls, report: dict, split: str) -> "Verdict":
        """The verdict of the first comparison in an `es-rerank ab` report.json.

        Example:
            >>> report = {"index": "i", "queries": {"evaluated": 9}, "comparisons": [{"significant_harm": False,
            ...     "metrics": {"nDCG@10": {"baseline_mean": 0.5, "mean": 0.6, "delta": 0.1, "p": 0.01}}}]}
            >>> Verdict.from_report(report, "dev").delta
            0.1
        """
        try:
            comparison = report["comparisons"][0]
            ndcg = comparison["metrics"]["nDCG@10"]
            return cls(str(report["index"]), split, int(report["queries"]["evaluated"]), float(ndcg["baseline_mean"]),
                       float(ndcg["mean"]), float(ndcg["delta"]), ndcg.get("p"), bool(comparison["significant_harm"]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(f"the A/B report has no nDCG@10 comparison to record ({type(exc).__name__}: {exc})",
                             hint="record the report.json of an `es-rerank ab` run with one model side") from exc

    def describe(self) -> str:
        """One line: the figures and what they mean.

        Example:
            >>> Verdict("i", "test", 300, 0.6775, 0.7258, 0.0483, 0.0001, False).describe()
            'nDCG@10 0.7258 vs BM25 0.6775 (+0.0483, p=0.0001) on 300 judged test queries of i'
        """
        p = "n/a" if self.p is None else f"{self.p:.4f}"
        return (f"nDCG@10 {self.model_ndcg10:.4f} vs BM25 {self.bm25_ndcg10:.4f} ({self.delta:+.4f}, p={p}) "
                f"on {self.queries} judged {self.split} queries of {self.index}")


def record_verdict(export_dir: str | Path, verdict: Verdict) -> Path:
    """Add (or replace) the verdict for `verdict.index` in EXPORT_DIR/ab-verdicts.json."""
    path = Path(export_dir) / VERDICTS_FILE
    verdicts = _read(path)
    verdicts[verdict.index] = asdict(verdict)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(verdicts, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def recorded_verdict(export_dir: str | Path, index: str) -> Verdict | None:
    """The verdict recorded for `index` in the export, or None when there is none."""
    entry = _read(Path(export_dir) / VERDICTS_FILE).get(index)
    if entry is None:
        return None
    try:
        return Verdict(**entry)
    except TypeError as exc:
        raise ModelError(f"the verdict for {index!r} in {Path(export_dir) / VERDICTS_FILE} is malformed: {exc}",
                         hint="delete the file and record the A/B again with `es-rerank ab --record-verdict`") from exc


def guard_rules(rules: Sequence[IndexRule], model_dir: Path | None, allow_harm: bool) -> tuple[tuple[IndexRule, ...], list[str]]:
    """Every rule under the guard rail, with the verdicts recorded in the exports it serves.

    A rule that scores with the cross-encoder is judged by `model_dir`'s verdict; a rule that
    only fuses BM25 with a bi-encoder by the verdict in that bi-encoder's export. The fused
    fallback is itself refused where its own export records harm on the index.
    """
    guarded, lines = [], []
    for rule in rules:
        uses_ce = rule.fusion is None or rule.fusion.needs_ce
        judged_by = model_dir if uses_ce else rule.dense_model
        verdict = recorded_verdict(judged_by, rule.pattern) if rule.rerank and judged_by is not None else None
        fallback = recorded_verdict(rule.dense_model, rule.pattern) if uses_ce and rule.dense_model else None
        rule, line = guard_rule(rule, verdict, allow_harm, fallback_harms=fallback is not None and fallback.harm)
        guarded.append(rule)
        if line:
            lines.append(line)
    return tuple(guarded), lines


def guard_rule(rule: IndexRule, verdict: Verdict | None, allow_harm: bool,
               fallback_harms: bool = False) -> tuple[IndexRule, str]:
    """The rule to serve under the guard rail, and a line saying what was decided and why.

    `fallback_harms`: BM25 fused with the rule's bi-encoder has a recorded harm of its own there.

    Example:
        >>> from es_rerank.proxy.settings import IndexRule
        >>> harm = Verdict("s", "dev", 50, 0.69, 0.43, -0.26, 0.0002, True)
        >>> rule, why = guard_rule(IndexRule("s", dense_model="dense"), harm, allow_harm=False)
        >>> rule.fusion.as_dict(), why.split(";")[1]
        ({'ce': 0.0, 'bm25': 0.5, 'dense': 0.5, 'norm': 'minmax'}, ' serving BM25 fused with the bi-encoder instead')
        >>> guard_rule(IndexRule("s"), harm, allow_harm=True)[0].rerank
        True
    """
    if not rule.rerank:
        return rule, ""
    if verdict is None:
        return rule, (f"index {rule.pattern!r}: no A/B of this model is recorded for it, so nothing guards against "
                      "harm; record one with `es-rerank ab --model EXPORT --index NAME --record-verdict ...`")
    if not verdict.harm:
        return rule, f"index {rule.pattern!r}: the model is served: {verdict.describe()}"
    if allow_harm:
        return rule, f"index {rule.pattern!r}: the model is served despite harm (--allow-harm): {verdict.describe()}"
    why = f"index {rule.pattern!r}: the model is not served: it is significantly below BM25, {verdict.describe()}"
    uses_ce = rule.fusion is None or rule.fusion.needs_ce
    if rule.dense_model is not None and uses_ce and not fallback_harms:
        return replace(rule, fusion=SAFE_FUSION), why + "; serving BM25 fused with the bi-encoder instead"
    return replace(rule, rerank=False), why + "; serving BM25 (pass --allow-harm to serve the model anyway)"


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is unreadable: {exc}",
                         hint="delete it and record the A/B again with `es-rerank ab --record-verdict`") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object keyed by index name",
                         hint="delete it and record the A/B again with `es-rerank ab --record-verdict`")
    return data
