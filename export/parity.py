"""Parity between the exported model and PyTorch fp32 on the same token ids, and the
thresholds an export must meet.

Figures, per query and overall:
- `max_abs_dlogit`: the largest |ONNX logit - PyTorch fp32 logit|.
- `top10_agreement`: the fraction of queries whose top-10 order is identical.
- `top10_overlap`: the mean fraction of PyTorch's top 10 that the export also ranks top 10.

Thresholds (`PARITY_THRESHOLDS`), why these:
- fp32: |Δ| <= 1e-3. The same fp32 arithmetic in another kernel order differs by ~1e-6
  relative; 1e-3 leaves room for long sums without hiding a real graph difference (a wrong
  mask or a dropped layer moves logits by whole units). CI checks the tighter 1e-4 on MiniLM.
- fp16: |Δ| <= 0.02 + 0.01 x the spread (standard deviation) of the PyTorch logits. fp16
  rounds each activation to ~5e-4 relative; over a 6- to 12-layer encoder that leaves errors
  of ~1e-3 on small logits (measured under 0.0015 on random-weight BERT models) and growing
  with the logit scale of a trained model, hence the term that scales with the spread.
- int8: |Δ| <= 1.0 x spread, and on average >= 80% of PyTorch's top 10 kept in the top 10.
  Dynamic int8 quantization rounds every weight and activation to 1/255 of its range, so
  its error is not a rounding error but noise on the scale of the model's own signal. What
  matters for ranking is that noise against the spread of the scores being ranked: no pair
  may move by more than one standard deviation of the fp32 logits, and the top 10 must stay
  mostly the same. Measured on MiniLM-L6 with a fresh (untrained, so small-spread) head on
  SciFact BM25 top-30 candidates: largest |Δ| 0.50 x spread, mean |Δ| 0.15 x spread, top-10
  overlap 0.90. A trained head spreads its logits more, which only helps.

Example:
    >>> import numpy as np
    >>> figures = parity_figures([np.arange(12.0)], [np.arange(12.0) + 1e-5])
    >>> figures["top10_agreement"], figures["max_abs_dlogit"] < 2e-5
    (1.0, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

TOP_K = 10


@dataclass(frozen=True)
class ParityThreshold:
    """Allowed |Δlogit| = `abs_dlogit` + `rel_dlogit` x spread of the reference logits; and the
    least mean top-10 overlap (None: not checked)."""

    abs_dlogit: float
    rel_dlogit: float
    min_top10_overlap: float | None = None

    def limit(self, spread: float) -> float:
        """The largest |Δlogit| allowed when the reference logits have this spread.

        Example:
            >>> ParityThreshold(0.02, 0.01).limit(3.0)
            0.05
        """
        return round(self.abs_dlogit + self.rel_dlogit * spread, 12)


PARITY_THRESHOLDS = {
    "fp32": ParityThreshold(abs_dlogit=1e-3, rel_dlogit=0.0),
    "fp16": ParityThreshold(abs_dlogit=0.02, rel_dlogit=0.01),
    "int8": ParityThreshold(abs_dlogit=0.0, rel_dlogit=1.0, min_top10_overlap=0.8),
}


def parity_figures(reference: Sequence[np.ndarray], exported: Sequence[np.ndarray],
                   query_ids: Sequence[str] | None = None) -> dict:
    """Compare per-query logits of the exported model with the PyTorch reference.

    Example:
        >>> import numpy as np
        >>> parity_figures([np.array([3.0, 2.0, 1.0])], [np.array([2.0, 3.0, 1.0])])["top10_agreement"]
        0.0
    """
    if len(reference) != len(exported) or not reference:
        raise ValueError(f"expected the same non-zero number of queries, got {len(reference)} and {len(exported)}")
    per_query: list[dict] = []
    ids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(reference))]
    for query_id, ref, got in zip(ids, reference, exported):
        ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
        if ref.shape != got.shape:
            raise ValueError(f"a query has {ref.shape[0]} reference scores but {got.shape[0]} exported ones")
        k = min(TOP_K, len(ref))
        ref_top = np.argsort(-ref, kind="stable")[:k]
        got_top = np.argsort(-got, kind="stable")[:k]
        per_query.append({
            "query_id": query_id,
            "pairs": int(len(ref)),
            "max_abs_dlogit": float(np.max(np.abs(ref - got))) if len(ref) else 0.0,
            "top10_identical": bool(np.array_equal(ref_top, got_top)),
            "top10_overlap": float(len(set(ref_top) & set(got_top)) / k) if k else 1.0,
        })
    all_ref = np.concatenate([np.asarray(r, dtype=np.float64) for r in reference])
    all_got = np.concatenate([np.asarray(g, dtype=np.float64) for g in exported])
    return {
        "queries": len(per_query),
        "pairs": int(all_ref.size),
        "max_abs_dlogit": max(q["max_abs_dlogit"] for q in per_query),
        "mean_abs_dlogit": float(np.mean(np.abs(all_ref - all_got))) if all_ref.size else 0.0,
        "top10_agreement": sum(q["top10_identical"] for q in per_query) / len(per_query),
        "top10_overlap": float(np.mean([q["top10_overlap"] for q in per_query])),
        "reference_spread": float(np.std(all_ref)) if all_ref.size else 0.0,
        "per_query": per_query,
    }


def judge(figures: dict, threshold: ParityThreshold) -> dict:
    """`figures` with the threshold, the |Δ| limit it implies, and whether it passed.

    Example:
        >>> judge({"max_abs_dlogit": 0.5, "reference_spread": 2.0, "top10_overlap": 0.9},
        ...       PARITY_THRESHOLDS["int8"])["passed"]
        True
    """
    limit = threshold.limit(figures["reference_spread"])
    passed = figures["max_abs_dlogit"] <= limit
    if threshold.min_top10_overlap is not None:
        passed = passed and figures["top10_overlap"] >= threshold.min_top10_overlap
    return {**figures, "threshold": asdict(threshold), "max_abs_dlogit_limit": limit, "passed": bool(passed)}
