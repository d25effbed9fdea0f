"""Float64 reference of selective: AUROC from average ranks, the risk-coverage curve, AURC and
accuracy at coverages from their definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._arrays import host_only, to_float64, view
from .._selective import DEFAULT_COVERAGES, SelectiveStats

__all__ = ["selective"]


def selective(
    confidence: Any, correct: Any, *, coverages: Sequence[float] = DEFAULT_COVERAGES
) -> SelectiveStats:
    """The fields of :func:`logcal.selective`, in float64 numpy."""
    c = to_float64(confidence, "confidence")
    y = np.asarray(host_only(view(correct, "correct"), "correct", "reference")) != 0
    n = c.size
    n_pos = int(y.sum())
    n_neg = n - n_pos

    # AUROC = Mann-Whitney U / (n_pos n_neg), U from the rank sum of the right answers, tied
    # confidences getting their average rank.
    values, inverse, counts = np.unique(c, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = below[inverse] + (counts[inverse] + 1) / 2.0
    u = rank[y].sum() - n_pos * (n_pos + 1) / 2.0
    auroc = u / (n_pos * n_neg) if n_pos and n_neg else float("nan")

    # Groups of equal confidence, most confident first.
    g_n = counts[::-1]
    g_right = np.bincount(inverse, weights=y, minlength=values.size)[::-1]
    cum_n = np.cumsum(g_n)
    cum_right = np.cumsum(g_right)
    threshold = values[::-1]
    coverage = cum_n / n
    risk = (cum_n - cum_right) / cum_n

    # AURC: mean over k of the risk of the k most confident, ties averaged over their orders:
    # the expected number of errors grows linearly through a group.
    k = np.arange(1, n + 1)
    group = np.repeat(np.arange(g_n.size), g_n)
    start = cum_n - g_n
    errors_before = (start - (cum_right - g_right))[group]
    expected_errors = errors_before + (k - start[group]) * ((g_n - g_right) / g_n)[group]
    aurc = float(np.mean(expected_errors / k))

    # Accuracy among the x = c N most confident: the expected right answers, linear within each
    # group, so a piecewise-linear interpolation of the cumulative counts.
    cov = np.atleast_1d(np.asarray(coverages, dtype=np.float64))
    x = cov * n
    right = np.interp(x, np.concatenate([[0], cum_n]), np.concatenate([[0], cum_right]))
    with np.errstate(invalid="ignore", divide="ignore"):
        # Inside the first group the accuracy is that group's share of right answers, however
        # small x is (right / x would lose it to rounding for a subnormal coverage).
        accuracy = np.where(x <= cum_n[0], cum_right[0] / cum_n[0], right / x)

    return SelectiveStats(
        auroc=float(auroc),
        aurc=aurc,
        threshold=threshold,
        coverage=coverage,
        risk=risk,
        coverages=cov,
        accuracy=accuracy,
        n=int(n),
        n_correct=n_pos,
    )
