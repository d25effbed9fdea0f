"""Float64 references of the recalibration fits and the newer metrics, from their definitions.

Written for clarity, not speed: the temperature by bisection on the derivative of the dense
float64 NLL, Platt scaling by plain Newton iterations, isotonic regression by
the classic sequential pool-adjacent-violators loop, Murphy's decomposition and Spiegelhalter's
z by per-bin and per-sample float64 sums.

>>> import numpy as np
>>> from logcal import reference
>>> reference.isotonic_regression(np.array([1.0, 3.0, 2.0]), np.ones(3))
array([1. , 2.5, 2.5])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .calibration import uniform_bin_index

__all__ = [
    "brier_decomposition",
    "fit_temperature",
    "isotonic_regression",
    "nll_at_temperature",
    "platt_scaling",
    "spiegelhalter",
]


def nll_at_temperature(logits: Any, targets: Any, temperature: float) -> tuple[float, float]:
    """Mean NLL of ``targets`` under ``softmax(logits / T)`` and its derivative in 1/T,
    ``mean (E_p[z] - z_t)``, in float64 over rows of ``[N, V]`` logits."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets)
    s = z / temperature
    m = s.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
    p = np.exp(s - lse[:, None])
    zt = z[np.arange(len(t)), t]
    nll = lse - zt / temperature
    return float(nll.mean()), float(((p * z).sum(axis=1) - zt).mean())


def fit_temperature(logits: Any, targets: Any, lo: float = 0.05, hi: float = 20.0) -> float:
    """The NLL-optimal temperature in ``[lo, hi]``: 200 bisections of the derivative in 1/T
    (the NLL is convex in 1/T)."""
    b_lo, b_hi = 1.0 / hi, 1.0 / lo
    for _ in range(200):
        mid = 0.5 * (b_lo + b_hi)
        if nll_at_temperature(logits, targets, 1.0 / mid)[1] < 0:
            b_lo = mid
        else:
            b_hi = mid
    return 2.0 / (b_lo + b_hi)


def platt_scaling(confidence: Any, correct: Any, clip: float = 1e-12) -> tuple[float, float]:
    """``(a, b)`` of the maximum-likelihood ``sigmoid(a logit(c) + b)``: plain Newton."""
    c = np.clip(np.asarray(confidence, dtype=np.float64), clip, 1 - clip)
    y = np.asarray(correct, dtype=np.float64)
    x = np.log(c / (1 - c))
    a = b = 0.0
    for _ in range(200):
        p = 1 / (1 + np.exp(-(a * x + b)))
        g = np.array([np.sum((p - y) * x), np.sum(p - y)])
        w = p * (1 - p)
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        da, db = np.linalg.solve(h, g)
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-15:
            break
    return a, b


def isotonic_regression(y: Any, w: Any) -> np.ndarray:
    """The least-squares non-decreasing fit of ``y`` (in order) with weights ``w``: the
    sequential pool-adjacent-violators algorithm, one block at a time."""
    blocks: list = []  # [mean, weight, size]
    for yi, wi in zip(np.asarray(y, dtype=np.float64), np.asarray(w, dtype=np.float64)):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def brier_decomposition(confidence: Any, correct: Any, n_bins: int) -> tuple:
    """``(brier, reliability, resolution, uncertainty, within_bin)`` over ``n_bins`` uniform
    bins, each term a float64 sum over the bins of its definition."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    b = uniform_bin_index(c, n_bins)
    acc = y.mean()
    rel = res = within = 0.0
    for k in range(n_bins):
        m = b == k
        if not m.any():
            continue
        w, cb, yb = m.mean(), c[m].mean(), y[m].mean()
        rel += w * (cb - yb) ** 2
        res += w * (yb - acc) ** 2
        within += w * (np.mean((c[m] - cb) ** 2) - 2 * np.mean((c[m] - cb) * (y[m] - yb)))
    return float(np.mean((c - y) ** 2)), rel, res, float(np.mean((y - acc) ** 2)), within


def spiegelhalter(confidence: Any, correct: Any) -> tuple[float, float]:
    """Spiegelhalter's z and its two-sided normal p-value."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    z = np.sum((y - c) * (1 - 2 * c)) / math.sqrt(np.sum((1 - 2 * c) ** 2 * c * (1 - c)))
    return float(z), math.erfc(abs(z) / math.sqrt(2))
