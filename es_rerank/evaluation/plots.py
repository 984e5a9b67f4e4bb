"""The report's figures as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Example:
    >>> from es_rerank.evaluation.report import build_report
    >>> report = build_report({"bm25": {"q": ["a"]}, "rerank": {"q": ["a"]}}, {"q": {"a": 1}})
    >>> metric_bars(report)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io

import numpy as np

# Colour-blind-safe palette (Okabe-Ito); the baseline is always grey.
BASELINE_COLOUR = "#8c8c8c"
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
DPI = 110


def metric_bars(report: dict) -> bytes:
    """Grouped bars: one group per metric, one bar per side, 95% CI as error bars."""
    figure, (axes,) = _figure(7.5, 3.8)
    metrics = report["metrics_order"]
    sides = report["sides"]
    width = 0.8 / len(sides)
    x = np.arange(len(metrics))
    for i, side in enumerate(sides):
        means = np.array([side["metrics"][m]["mean"] for m in metrics])
        lows = np.array([side["metrics"][m]["ci"][0] for m in metrics])
        highs = np.array([side["metrics"][m]["ci"][1] for m in metrics])
        errors = np.vstack([np.clip(means - lows, 0, None), np.clip(highs - means, 0, None)])
        bars = axes.bar(x + (i - (len(sides) - 1) / 2) * width, means, width, yerr=errors, capsize=3,
                        label=side["name"], color=_colour(i), edgecolor="white")
        axes.bar_label(bars, labels=[f"{m:.3f}" for m in means], fontsize=7, padding=2)
    axes.set_xticks(x, metrics)
    axes.set_ylim(0, min(1.05, max(1e-3, max(s["metrics"][m]["ci"][1] for s in sides for m in metrics)) * 1.18))
    axes.set_ylabel("mean over queries")
    axes.set_title("Metrics with 95% bootstrap confidence intervals", fontsize=10)
    axes.legend(fontsize=8, frameon=False, ncol=min(4, len(sides)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def delta_histogram(report: dict, metric: str) -> bytes:
    """Histogram of per-query `metric` differences (variant minus baseline), one panel per variant."""
    from matplotlib.ticker import MaxNLocator

    comparisons = report["comparisons"]
    figure, axes_list = _figure(7.5, 2.6 * len(comparisons), rows=len(comparisons))
    baseline = report["per_query"][metric][report["baseline"]]
    bins = np.linspace(-1.025, 1.025, 42)  # 0.05 wide, centred on 0 so ties sit in their own bar
    for i, (axes, comparison) in enumerate(zip(axes_list, comparisons)):
        variant = report["per_query"][metric][comparison["variant"]]
        deltas = np.array([variant[q] - baseline[q] for q in baseline])
        entry = comparison["metrics"][metric]
        axes.hist(deltas, bins=bins, color=_colour(i + 1), edgecolor="white")
        axes.axvline(0, color="black", linewidth=0.8)
        axes.axvline(entry["delta"], color="#D55E00", linestyle="--", linewidth=1,
                     label=f"mean {entry['delta']:+.3f}")
        axes.set_title(f"{comparison['variant']} − {comparison['baseline']}: {metric} per query "
                       f"({entry['wins']} better, {entry['ties']} equal, {entry['losses']} worse)", fontsize=9)
        axes.set_ylabel("queries")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=8, frameon=False)
        axes.spines[["top", "right"]].set_visible(False)
    axes_list[-1].set_xlabel(f"{metric} difference")
    return _png(figure)


def per_query_scatter(report: dict, metric: str) -> bytes:
    """Each query as a point: baseline value on x, variant value on y; above the diagonal = better."""
    comparisons = report["comparisons"]
    figure, axes_list = _figure(3.6 * len(comparisons), 3.6, cols=len(comparisons))
    baseline = report["per_query"][metric][report["baseline"]]
    rng = np.random.default_rng(0)  # a little jitter so identical points stay visible
    for i, (axes, comparison) in enumerate(zip(axes_list, comparisons)):
        variant = report["per_query"][metric][comparison["variant"]]
        xs = np.array([baseline[q] for q in baseline])
        ys = np.array([variant[q] for q in baseline])
        jitter = rng.uniform(-0.008, 0.008, size=(2, len(xs)))
        axes.scatter(xs + jitter[0], ys + jitter[1], s=10, alpha=0.6, color=_colour(i + 1), edgecolors="none")
        axes.plot([0, 1], [0, 1], color="black", linewidth=0.8)
        axes.set_xlim(-0.03, 1.03)
        axes.set_ylim(-0.03, 1.03)
        axes.set_xlabel(f"{comparison['baseline']} {metric}")
        axes.set_ylabel(f"{comparison['variant']} {metric}")
        axes.set_aspect("equal")
        axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, list(axes.ravel())


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _colour(i: int) -> str:
    return BASELINE_COLOUR if i == 0 else COLOURS[(i - 1) % len(COLOURS)]
