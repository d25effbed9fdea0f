"""Float64 reference of selective: AUROC from average ranks, the risk-coverage curve, AURC, the
rejection metrics, average precision and accuracy at coverages from their definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._arrays import host_only, to_float64, view
from .._selective import DEFAULT_COVERAGES, SelectiveStats

__all__ = ["selective"]


def _average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    """Average precision from its definition: at each distinct score t, from the highest, the
    precision among scores >= t times the recall gained there. NaN without positives."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    hits = np.bincount(inverse, weights=positive, minlength=counts.size)[::-1]
    precision = np.cumsum(hits) / np.cumsum(counts[::-1])
    return float(np.sum(hits / n_pos * precision))


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

    # The perfect ranking: every wrong answer after every right one, no ties.
    perfect_errors = np.maximum(k - n_pos, 0)
    best = float(np.mean(perfect_errors / k))
    # Random rejection: the expected accuracy of any k answers drawn at random is the overall
    # accuracy, so its area under the accuracy-rejection curve is that accuracy.
    auarc = 1.0 - aurc
    auarc_random = n_pos / n
    auarc_oracle = 1.0 - best
    prr = (
        (auarc - auarc_random) / (auarc_oracle - auarc_random)
        if auarc_oracle > auarc_random
        else float("nan")
    )

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
        e_aurc=aurc - best,
        auarc=auarc,
        prr=float(prr),
        auprc_errors=_average_precision(-c, ~y),
        auprc_successes=_average_precision(c, y),
        threshold=threshold,
        coverage=coverage,
        risk=risk,
        coverages=cov,
        accuracy=accuracy,
        n=int(n),
        n_correct=n_pos,
    )
