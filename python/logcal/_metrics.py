"""Calibration metrics beyond the binned ones: smooth ECE and Spiegelhalter's test.

``smooth_ece`` follows the definition of Błasiok & Nakkiran (2023), "Smooth ECE: Principled
Reliability Diagrams via Kernel Smoothing", as their package relplot 1.0.3 computes it
(``relplot.smECE``, reflected Gaussian kernel): the residuals ``c - y`` and the sample density
are smoothed by a Gaussian of width ``sigma`` reflected at 0 and 1, and the smooth ECE at
``sigma`` is ``sum_t |r_sigma(t)| d_sigma(t) / sum_t d_sigma(t)`` over an evaluation mesh; the
width is the fixed point ``sigma = smECE_sigma``, found by ten bisection steps on ``(0, 1]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SmoothECE", "smooth_ece", "spiegelhalter"]

# The data are kept as linear splats (hat functions) of the weights 1 and c - y onto a fixed
# grid of _GRID intervals. Re-splatting a grid of n intervals onto one of m intervals is exact
# when m divides n (a hat of the coarse grid is linear on each fine interval), so for every
# sigma >= 0.01, where relplot uses 1000 intervals, the result is relplot's up to rounding.
# Below, relplot's grid has round(20 / sigma) // 2 intervals, not a divisor: each sample then
# moves by at most 1 / _GRID = 2.5e-5 before smoothing, which changes the smooth ECE by at
# most about 2.5e-5 / sigma relative (and such small sigma means a smooth ECE below 0.01).
_GRID = 40_000
_EPS_DENSITY = 1e-4  # relplot's BaseKernelMixin.smooth: added to the density
_MIN_SIGMA = 0.001  # relplot's smECE eps
_BISECTIONS = 10


def _splat(x: np.ndarray, v: np.ndarray, intervals: int) -> np.ndarray:
    """``v`` spread linearly onto the ``intervals + 1`` nodes ``k / intervals`` around ``x``."""
    pos = x * intervals
    left = np.clip(pos.astype(np.int64), 0, intervals - 1)
    frac = pos - left
    out = np.bincount(left, (1.0 - frac) * v, minlength=intervals + 1)
    out += np.bincount(left + 1, frac * v, minlength=intervals + 1)
    return out


def _interpolate(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = y.size - 1
    inds = np.clip((t * n).astype(np.int64), 0, n - 1)
    residual = (t - inds / n) * n
    return y[inds] * (1 - residual) + y[inds + 1] * residual


def _reflected_gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    points = values.size
    t = np.linspace(0, 1, points)
    kernel = np.exp(-((t - 0.5) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    ext = np.concatenate([values[::-1][:-1], values, values[::-1][1:]])
    return np.convolve(ext, kernel, "valid")[points // 2 : points // 2 + points]


class SmoothECE:
    """The smooth ECE's state: the samples' weight and residual ``c - y`` on a fixed grid.

    Two float64 arrays of 40,001 nodes; :meth:`update` adds samples, :meth:`merge` adds states
    (sums of float64, so merged states equal one-shot ones up to rounding, about 1e-16
    relative), :meth:`compute` gives the smooth ECE. See :func:`smooth_ece`.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> a, b = logcal.SmoothECE(), logcal.SmoothECE()
    >>> a.update(np.array([0.9, 0.8]), np.array([1, 0])); b.update(np.array([0.3]), np.array([0]))
    >>> round(a.merge(b).compute(), 4) == round(
    ...     logcal.smooth_ece(np.array([0.9, 0.8, 0.3]), np.array([1, 0, 0])), 4)
    True
    """

    __slots__ = ("n", "residual", "weight")

    def __init__(self) -> None:
        self.n = 0
        self.weight = np.zeros(_GRID + 1)
        self.residual = np.zeros(_GRID + 1)

    def update(self, confidence: Any, correct: Any) -> None:
        c, y = _checked(confidence, correct)
        self.n += c.size
        self.weight += _splat(c, np.ones_like(c), _GRID)
        self.residual += _splat(c, c - y, _GRID)

    def merge(self, other: SmoothECE) -> SmoothECE:
        if not isinstance(other, SmoothECE):
            raise TypeError(f"can only merge SmoothECE, got {type(other).__name__}")
        out = SmoothECE()
        out.n = self.n + other.n
        out.weight = self.weight + other.weight
        out.residual = self.residual + other.residual
        return out

    def at_sigma(self, sigma: float) -> float:
        """The smooth ECE at kernel width ``sigma`` (relplot's ``smECE_sigma``)."""
        if not (isinstance(sigma, (int, float)) and 0 < sigma <= 1):
            raise ValueError(f"sigma must be a number in (0, 1], got {sigma!r}")
        if self.n == 0:
            raise ValueError("no samples: call update first")
        points = max(2000, round(20 / sigma)) // 2 + 1
        nodes = np.linspace(0.0, 1.0, _GRID + 1)
        mesh = np.linspace(0, 1, max(round(10 / sigma), 200))
        residual, density = (
            _interpolate(mesh, _reflected_gaussian(_splat(nodes, v, points - 1), sigma))
            for v in (self.residual, self.weight)
        )
        density = density + _EPS_DENSITY
        return float(np.sum(np.abs(residual / density) * density) / np.sum(density))

    def compute(self, return_sigma: bool = False) -> Any:
        """The smooth ECE at the width relplot's ``smECE`` picks (``(value, sigma)`` with
        ``return_sigma``)."""
        sigma = self._fixed_point()
        value = self.at_sigma(sigma)
        return (value, sigma) if return_sigma else value

    def _fixed_point(self) -> float:
        """relplot's search: the smallest bisection point of (0, 1] with sigma >= smECE."""

        def small(alpha: float) -> bool:
            return alpha < _MIN_SIGMA or alpha < self.at_sigma(alpha)

        if small(1.0):
            return 1.0
        start, end = 1.0, 0.0
        for _ in range(_BISECTIONS):
            mid = (start + end) / 2
            if small(mid):
                end = mid
            else:
                start = mid
        return start


def _checked(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64).reshape(-1)
    y = np.asarray(correct, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise ValueError("confidence must not be empty")
    if y.shape != c.shape:
        raise ValueError(f"correct must have the shape of confidence {c.shape}, got {y.shape}")
    bad = ~((c >= 0) & (c <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"confidence[{i}] = {float(c[i])!r} is not in [0, 1]")
    off = ~((y == 0) | (y == 1))
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"correct[{i}] = {y[i].item()!r} is not 0 or 1")
    return c, y


def smooth_ece(
    confidence: Any, correct: Any, *, sigma: float | None = None, return_sigma: bool = False
) -> Any:
    """Smooth ECE (Błasiok & Nakkiran 2023), as relplot 1.0.3's ``smECE`` defines it.

    Parameters
    ----------
    confidence : array of floats in ``[0, 1]``
    correct : array of 0/1 (or booleans), same shape
    sigma : float, optional
        A fixed kernel width in ``(0, 1]`` (relplot's ``smECE_sigma``); default: the fixed
        point ``sigma = smECE(sigma)``, as ``smECE``.
    return_sigma : bool
        Also return the width used.

    Notes
    -----
    The samples are held on a grid of 40,000 intervals (:class:`SmoothECE`, mergeable); for
    widths of at least 0.01 the result is relplot's up to float64 rounding, below it differs
    by at most about ``2.5e-5 / sigma`` relative (see the module).

    Examples
    --------
    >>> import numpy as np, logcal
    >>> rng = np.random.default_rng(0)
    >>> c = rng.uniform(size=5000); y = rng.uniform(size=5000) < c ** 2
    >>> round(logcal.smooth_ece(c, y), 3)
    0.162
    """
    state = SmoothECE()
    state.update(confidence, correct)
    if sigma is None:
        return state.compute(return_sigma=return_sigma)
    value = state.at_sigma(sigma)
    return (value, sigma) if return_sigma else value


def spiegelhalter(confidence: Any, correct: Any) -> tuple[float, float]:
    """Spiegelhalter's (1986) test of calibration: ``(z, p_value)``.

    ``z = sum (y - c)(1 - 2c) / sqrt(sum (1 - 2c)^2 c (1 - c))``, standard normal when the
    confidences are calibrated; the p-value is two-sided. The sums are taken with
    :func:`math.fsum` (correctly rounded).

    Examples
    --------
    >>> import numpy as np, logcal
    >>> z, p = logcal.spiegelhalter(np.array([0.9, 0.8, 0.3, 0.6]), np.array([1, 1, 0, 0]))
    >>> round(z, 4), round(p, 4)
    (-0.5025, 0.6153)
    """
    c, y = _checked(confidence, correct)
    num = math.fsum((y - c) * (1 - 2 * c))
    var = math.fsum((1 - 2 * c) ** 2 * c * (1 - c))
    if var == 0:
        raise ValueError(
            "Spiegelhalter's z is undefined: every confidence is 0, 1/2 or 1 (zero variance)"
        )
    z = num / math.sqrt(var)
    return z, math.erfc(abs(z) / math.sqrt(2))
