"""Reliability diagrams and confidence histograms (matplotlib; ``pip install logcal[plot]``).

>>> import numpy as np, logcal
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> rng = np.random.default_rng(0)
>>> conf = rng.uniform(0.3, 1.0, 5000)
>>> correct = rng.random(5000) < conf ** 1.5          # overconfident
>>> stats = logcal.calibration_stats(conf, correct, n_bins=10)
>>> fig = logcal.plot.reliability_diagram(stats)
>>> [round(float(p.get_height()), 3) for p in fig.axes[0].patches if p.get_gid() == "accuracy"][:3]
[0.203, 0.297, 0.414]
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["confidence_histogram", "recalibration_diagram", "reliability_diagram"]

_BAR = "#4C72B0"
_GAP = "#C44E52"
_AFTER = "#55A868"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the plot and test extras
        raise ImportError("logcal.plot needs matplotlib: pip install 'logcal[plot]'") from None
    return plt


def _diagram_axes(ax: Any) -> tuple:
    """``(figure, diagram axes, histogram axes)``: a new figure of the two, one above the
    other, or ``ax`` with the histogram in an inset below it."""
    if ax is None:
        fig, (ax, ax_hist) = _pyplot().subplots(
            2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        return fig, ax, ax_hist
    return ax.figure, ax, ax.inset_axes([0.0, -0.45, 1.0, 0.3], sharex=ax)


def _title(stats: Any) -> str:
    title = f"ECE = {stats.ece():.4f}"
    if getattr(stats, "n_bootstrap", 0):
        lo, hi = stats.interval("ece")
        title += f"  (95% CI {lo:.4f} to {hi:.4f})"
    return title


def reliability_diagram(stats: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """Accuracy per confidence bin against the diagonal, with a histogram of confidences beneath.

    Parameters
    ----------
    stats : CalibrationStats
        From :func:`logcal.calibration_stats` (or an accumulator's ``compute()``).
    ax : matplotlib Axes, optional
        Where to draw the diagram; the histogram goes in an inset beneath it. Without ``ax``,
        a new figure with two stacked axes is made.
    title : str, optional
        A first line for the title; the second always gives the ECE, with its bootstrap
        interval when ``stats`` has one.

    Returns
    -------
    matplotlib.figure.Figure
        Its first axes hold the diagram: one bar per non-empty bin (gid ``"accuracy"``), the gap
        to the bin's mean confidence shaded (gid ``"gap"``), and the diagonal.
    """
    fig, ax, ax_hist = _diagram_axes(ax)

    edges = np.asarray(stats.edges, dtype=np.float64)
    count = np.asarray(stats.count)
    accuracy = np.asarray(stats.accuracy, dtype=np.float64)
    mean_conf = np.asarray(stats.mean_confidence, dtype=np.float64)
    filled = count > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]

    bars = ax.bar(
        left,
        accuracy[filled],
        width=width,
        align="edge",
        color=_BAR,
        edgecolor="white",
        linewidth=0.8,
        label="accuracy",
    )
    for bar in bars:
        bar.set_gid("accuracy")
    gap = mean_conf[filled] - accuracy[filled]
    gaps = ax.bar(
        left,
        gap,
        bottom=accuracy[filled],
        width=width,
        align="edge",
        color=_GAP,
        alpha=0.3,
        edgecolor=_GAP,
        hatch="//",
        linewidth=0.5,
        label="gap to confidence",
    )
    for bar in gaps:
        bar.set_gid("gap")
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1, label="perfect calibration")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(_title(stats) if title is None else f"{title}\n{_title(stats)}")
    ax.legend(loc="upper left", frameon=False, fontsize="small")
    confidence_histogram(stats, ax_hist)
    return fig


def recalibration_diagram(
    before: Any,
    after: Any,
    ax: Any = None,
    *,
    labels: tuple = ("before", "after"),
    title: str | None = None,
) -> Any:
    """Two reliability curves on one axes: the same predictions before and after recalibration.

    Each curve joins the non-empty bins' (mean confidence, accuracy) points; the histogram
    beneath gives the share of samples per bin of each. Bars would hide one another, so the
    two are lines.

    Parameters
    ----------
    before, after : CalibrationStats
        The statistics of the same samples, before and after the recalibration map, with the
        same bins.
    ax : matplotlib Axes, optional
        Where to draw the curves; the histogram goes in an inset beneath it. Without ``ax``,
        a new figure with two stacked axes is made.
    labels : (str, str)
        The curves' names in the legend, each followed there by its ECE.
    title : str, optional
        A first line for the title; the second gives both ECEs.

    Returns
    -------
    matplotlib.figure.Figure
        Its first axes hold the curves (gids ``"before"`` and ``"after"``) and the diagonal.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> rng = np.random.default_rng(0)
    >>> conf = rng.uniform(0.3, 1.0, 5000)
    >>> correct = rng.random(5000) < conf ** 1.5          # overconfident
    >>> iso = logcal.recalibration.IsotonicCalibration().fit(conf, correct)
    >>> before = logcal.calibration_stats(conf, correct, n_bins=10)
    >>> after = logcal.calibration_stats(iso.transform(conf), correct, n_bins=10)
    >>> fig = logcal.plot.recalibration_diagram(before, after, labels=("model", "isotonic"))
    >>> [line.get_label()[:8] for line in fig.axes[0].get_lines() if line.get_gid()]
    ['model: E', 'isotonic']
    """
    fig, ax, ax_hist = _diagram_axes(ax)

    edges = np.asarray(before.edges, dtype=np.float64)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1, label="perfect calibration")
    for stats, label, gid, color, marker in (
        (before, labels[0], "before", _GAP, "o"),
        (after, labels[1], "after", _AFTER, "s"),
    ):
        filled = np.asarray(stats.count) > 0
        ax.plot(
            np.asarray(stats.mean_confidence, dtype=np.float64)[filled],
            np.asarray(stats.accuracy, dtype=np.float64)[filled],
            marker=marker,
            markersize=4,
            color=color,
            linewidth=1.5,
            label=f"{label}: ECE {stats.ece():.4f}",
            gid=gid,
        )
        count = np.asarray(stats.count, dtype=np.float64)
        share = count / count.sum() if count.sum() > 0 else count
        ax_hist.stairs(share, edges, color=color, linewidth=1.5, label=label, gid=gid)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    change = f"ECE {before.ece():.4f} -> {after.ece():.4f}"
    ax.set_title(change if title is None else f"{title}\n{change}")
    ax.legend(loc="upper left", frameon=False, fontsize="small")
    ax_hist.set_xlim(edges[0], edges[-1])
    ax_hist.set_xlabel("confidence")
    ax_hist.set_ylabel("share")
    return fig


def confidence_histogram(stats: Any, ax: Any = None) -> Any:
    """The share of samples in each confidence bin, with the mean confidence and the accuracy.

    Returns the matplotlib Figure drawn on.
    """
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 2))
    else:
        fig = ax.figure
    edges = np.asarray(stats.edges, dtype=np.float64)
    count = np.asarray(stats.count, dtype=np.float64)
    total = count.sum()
    share = count / total if total > 0 else count
    bars = ax.bar(
        edges[:-1],
        share,
        width=np.diff(edges),
        align="edge",
        color="0.55",
        edgecolor="white",
        linewidth=0.8,
    )
    for bar in bars:
        bar.set_gid("share")
    if total > 0:
        ax.axvline(
            float(np.sum(stats.sum_confidence) / total),
            color=_GAP,
            linewidth=1.5,
            label="mean confidence",
        )
        ax.axvline(
            float(np.sum(stats.sum_correct) / total),
            color=_BAR,
            linewidth=1.5,
            linestyle=":",
            label="accuracy",
        )
        ax.legend(loc="upper right", frameon=False, fontsize="small")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("confidence")
    ax.set_ylabel("share")
    return fig
