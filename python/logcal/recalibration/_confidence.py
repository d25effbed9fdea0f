"""Recalibration maps on confidences: Platt, beta, isotonic and histogram binning.

Each follows scikit-learn's estimator conventions (``fit`` returns the estimator, ``transform``
and ``predict`` map confidences, fitted attributes end in ``_``) and serialises with
``to_dict``/``from_dict``. Inputs: confidences in ``[0, 1]`` and 0/1 correctness, 1-D.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..calibration import CalibrationStats, calibration_stats
from ..reference.calibration import uniform_bin_index

__all__ = ["BetaCalibration", "HistogramBinning", "IsotonicCalibration", "PlattScaling"]

# Confidences of exactly 0 or 1 have an infinite logit; Platt and beta calibration clip them
# to [_CLIP, 1 - _CLIP] first (scikit-learn's CalibratedClassifierCV sees decision values, so
# it has no such convention; this one keeps the logit finite and 1 - _CLIP exact).
_CLIP = 1e-12


def _confidence(confidence: Any, name: str = "confidence") -> np.ndarray:
    c = np.asarray(confidence, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {c.shape}")
    if c.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = ~((c >= 0.0) & (c <= 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {float(c[i])!r} is not in [0, 1]")
    return c


def _pairs(confidence: Any, correct: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """The checked (confidence, correct) of a fit, correct as float64 0/1."""
    c = _confidence(confidence)
    y = np.asarray(correct)
    if y.shape != c.shape:
        raise ValueError(f"correct must have the shape of confidence {c.shape}, got {y.shape}")
    if y.dtype != np.bool_:
        if not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"correct must be booleans or 0/1 numbers, got dtype {y.dtype}")
        off = ~((y == 0) | (y == 1))
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ValueError(f"correct[{i}] = {y[i].item()!r} is not 0 or 1")
    y = y.astype(np.float64)
    if y.min() == y.max():
        raise ValueError(
            f"correct holds only {int(y[0])}s: {who} needs both outcomes (0 and 1) to fit"
        )
    return c, y


def _not_constant(c: np.ndarray, who: str) -> None:
    if c.min() == c.max():
        raise ValueError(
            f"confidence is constant ({float(c[0])!r}): {who} needs two distinct values"
        )


def _check_fitted(est: Any, attr: str) -> None:
    if getattr(est, attr, None) is None:
        raise ValueError(f"this {type(est).__name__} is not fitted yet: call fit first")


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, _CLIP, 1.0 - _CLIP)
    return np.log(c) - np.log1p(-c)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logistic_loss(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    t = X @ w
    return float(np.sum(np.logaddexp(0.0, t) - y * t))


def logistic_newton(X: np.ndarray, y: np.ndarray, *, who: str, max_iter: int = 100) -> np.ndarray:
    """Unregularised logistic regression ``P(y = 1) = sigmoid(X w)`` by Newton's method with
    step halving; stops when the step moves every coefficient by < 1e-13 (relative, with 1)."""
    w = np.zeros(X.shape[1])
    loss = _logistic_loss(X, y, w)
    for _ in range(max_iter):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - y)
        hess = (X * (p * (1.0 - p))[:, None]).T @ X
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            raise ValueError(f"{who}: the features are collinear, the fit is not unique") from None
        scale = 1.0
        while True:
            trial = w - scale * step
            trial_loss = _logistic_loss(X, y, trial)
            if trial_loss <= loss or scale < 2.0**-30:
                break
            scale /= 2.0
        w, loss = trial, trial_loss
        if not np.isfinite(w).all() or np.abs(w).max() > 1e8:
            break
        if np.all(np.abs(scale * step) <= 1e-13 * (1.0 + np.abs(w))):
            return w
    raise ValueError(
        f"{who}: the fit did not converge (the outcomes may be separable by confidence, "
        "so the maximum likelihood is not finite)"
    )


class PlattScaling:
    """Platt scaling: ``P(correct) = sigmoid(a logit(c) + b)``, by maximum likelihood.

    The unregularised logistic regression on ``logit(c)`` (confidences clipped to
    ``[1e-12, 1 - 1e-12]``), fitted by Newton's method: scikit-learn's
    ``LogisticRegression(C=inf)`` on the same feature.

    Attributes
    ----------
    coef_, intercept_ : float
        ``a`` and ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.recalibration import PlattScaling
    >>> c = np.array([0.6, 0.7, 0.8, 0.9, 0.95, 0.6, 0.9])
    >>> y = np.array([0, 1, 0, 1, 1, 1, 0])
    >>> p = PlattScaling().fit(c, y)
    >>> np.round(p.transform(np.array([0.5, 0.9])), 3)
    array([0.453, 0.629])
    """

    def __init__(self) -> None:
        self.coef_: float | None = None
        self.intercept_: float | None = None

    def fit(self, confidence: Any, correct: Any) -> PlattScaling:
        c, y = _pairs(confidence, correct, "PlattScaling")
        _not_constant(c, "PlattScaling")
        X = np.column_stack([_logit(c), np.ones_like(c)])
        a, b = logistic_newton(X, y, who="PlattScaling")
        self.coef_, self.intercept_ = float(a), float(b)
        return self

    def transform(self, confidence: Any) -> np.ndarray:
        _check_fitted(self, "coef_")
        return _sigmoid(self.coef_ * _logit(_confidence(confidence)) + self.intercept_)

    predict = transform

    def to_dict(self) -> dict:
        _check_fitted(self, "coef_")
        return {"method": "platt", "coef": self.coef_, "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, d: dict) -> PlattScaling:
        _method(d, "platt")
        out = cls()
        out.coef_, out.intercept_ = float(d["coef"]), float(d["intercept"])
        return out


class BetaCalibration:
    """Beta calibration (Kull, Silva Filho & Flach 2017), the three-parameter form:
    ``P(correct) = sigmoid(a ln c - b ln(1 - c) + m)``.

    Logistic regression on the features ``ln c`` and ``-ln(1 - c)`` (confidences clipped to
    ``[1e-12, 1 - 1e-12]``); as in the authors' ``betacal``, a negative ``a`` or ``b`` is set
    to 0 and the rest refitted, so the map is monotone.

    Attributes
    ----------
    a_, b_, m_ : float

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.recalibration import BetaCalibration
    >>> c = np.array([0.2, 0.4, 0.6, 0.8, 0.9, 0.3, 0.7])
    >>> y = np.array([0, 1, 0, 1, 1, 0, 1])
    >>> b = BetaCalibration().fit(c, y)
    >>> bool(b.transform(np.array([0.3]))[0] < b.transform(np.array([0.8]))[0])
    True
    """

    def __init__(self) -> None:
        self.a_: float | None = None
        self.b_: float | None = None
        self.m_: float | None = None

    def fit(self, confidence: Any, correct: Any) -> BetaCalibration:
        c, y = _pairs(confidence, correct, "BetaCalibration")
        _not_constant(c, "BetaCalibration")
        c = np.clip(c, _CLIP, 1.0 - _CLIP)
        features = [np.log(c), -np.log1p(-c)]
        ones = np.ones_like(c)
        a, b, m = logistic_newton(np.column_stack([*features, ones]), y, who="BetaCalibration")
        if a < 0:  # as betacal: drop the feature whose coefficient is negative, refit
            b, m = logistic_newton(np.column_stack([features[1], ones]), y, who="BetaCalibration")
            a = 0.0
        elif b < 0:
            a, m = logistic_newton(np.column_stack([features[0], ones]), y, who="BetaCalibration")
            b = 0.0
        self.a_, self.b_, self.m_ = float(a), float(b), float(m)
        return self

    def transform(self, confidence: Any) -> np.ndarray:
        _check_fitted(self, "a_")
        c = np.clip(_confidence(confidence), _CLIP, 1.0 - _CLIP)
        return _sigmoid(self.a_ * np.log(c) - self.b_ * np.log1p(-c) + self.m_)

    predict = transform

    def to_dict(self) -> dict:
        _check_fitted(self, "a_")
        return {"method": "beta", "a": self.a_, "b": self.b_, "m": self.m_}

    @classmethod
    def from_dict(cls, d: dict) -> BetaCalibration:
        _method(d, "beta")
        out = cls()
        out.a_, out.b_, out.m_ = float(d["a"]), float(d["b"]), float(d["m"])
        return out


def pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The non-decreasing fit of ``y`` with weights ``w`` (least squares), per point.

    Merging any two adjacent blocks whose means decrease keeps the unique solution's level
    sets intact, so each round merges every chain of violating neighbours at once (numpy over
    all blocks); block means are recomputed from the points' sums each round, not updated.
    """
    wy = w * y
    starts = np.arange(y.size)
    while True:
        sw = np.add.reduceat(w, starts)
        mean = np.add.reduceat(wy, starts) / sw
        violates = mean[:-1] > mean[1:]
        if not violates.any():
            return np.repeat(mean, np.diff(np.append(starts, y.size)))
        starts = starts[np.concatenate([[True], ~violates])]


class IsotonicCalibration:
    """Isotonic regression of correctness on confidence (pool adjacent violators).

    The least-squares non-decreasing map, as scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")``: equal confidences are pooled first, the map
    is kept at the fitted points' confidences (``x_thresholds_``, ``y_thresholds_``, only the
    ends of each constant stretch) and interpolated linearly between them, constant outside.

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.recalibration import IsotonicCalibration
    >>> iso = IsotonicCalibration().fit(np.array([0.1, 0.4, 0.5, 0.9]), np.array([0, 1, 0, 1]))
    >>> iso.transform(np.array([0.1, 0.45, 0.95]))
    array([0. , 0.5, 1. ])
    """

    def __init__(self) -> None:
        self.x_thresholds_: np.ndarray | None = None
        self.y_thresholds_: np.ndarray | None = None

    def fit(self, confidence: Any, correct: Any) -> IsotonicCalibration:
        c, y = _pairs(confidence, correct, "IsotonicCalibration")
        order = np.argsort(c, kind="stable")
        cs, ys = c[order], y[order]
        new = np.concatenate([[True], cs[1:] != cs[:-1]])
        first = np.flatnonzero(new)
        x = cs[first]
        counts = np.diff(np.append(first, cs.size)).astype(np.float64)
        fitted = pool_adjacent_violators(np.add.reduceat(ys, first) / counts, counts)
        # Keep the ends of each constant stretch: the points between change nothing.
        keep = np.ones(x.size, dtype=bool)
        if x.size > 2:
            keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
        self.x_thresholds_, self.y_thresholds_ = x[keep], fitted[keep]
        return self

    def transform(self, confidence: Any) -> np.ndarray:
        _check_fitted(self, "x_thresholds_")
        return np.interp(_confidence(confidence), self.x_thresholds_, self.y_thresholds_)

    predict = transform

    def to_dict(self) -> dict:
        _check_fitted(self, "x_thresholds_")
        return {
            "method": "isotonic",
            "x": self.x_thresholds_.tolist(),
            "y": self.y_thresholds_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> IsotonicCalibration:
        _method(d, "isotonic")
        out = cls()
        out.x_thresholds_ = np.asarray(d["x"], dtype=np.float64)
        out.y_thresholds_ = np.asarray(d["y"], dtype=np.float64)
        return out


class HistogramBinning:
    """Histogram binning (Zadrozny & Elkan 2001): a confidence maps to its bin's accuracy.

    Fitted from :func:`logcal.calibration_stats` (its exact bins, any binning) or from such
    statistics directly (:meth:`from_stats`, e.g. those of a
    :class:`logcal.CalibrationAccumulator` over a stream). A confidence falls in the bin the
    statistics' rule gives it; an empty bin maps a confidence to itself.

    Parameters
    ----------
    n_bins : int
    binning : str or array
        As for :func:`logcal.calibration_stats`.

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.recalibration import HistogramBinning
    >>> h = HistogramBinning(n_bins=2).fit(np.array([0.2, 0.3, 0.8, 0.9]), np.array([0, 1, 1, 1]))
    >>> h.transform(np.array([0.1, 0.7]))
    array([0.5, 1. ])
    """

    def __init__(self, n_bins: int = 15, binning: Any = "uniform") -> None:
        self.n_bins, self.binning = n_bins, binning
        self.edges_: np.ndarray | None = None
        self.accuracy_: np.ndarray | None = None
        self.uniform_: bool = False

    def fit(self, confidence: Any, correct: Any) -> HistogramBinning:
        c, y = _confidence(confidence), np.asarray(correct)
        stats = calibration_stats(c, y, n_bins=self.n_bins, binning=self.binning)
        return self._take(stats)

    @classmethod
    def from_stats(cls, stats: CalibrationStats) -> HistogramBinning:
        """The binning map of existing statistics."""
        if not isinstance(stats, CalibrationStats):
            raise TypeError(f"stats must be CalibrationStats, got {type(stats).__name__}")
        return cls(n_bins=stats.n_bins, binning=stats.binning)._take(stats)

    def _take(self, stats: CalibrationStats) -> HistogramBinning:
        self.edges_ = np.asarray(stats.edges, dtype=np.float64)
        self.accuracy_ = np.asarray(stats.accuracy, dtype=np.float64)
        self.uniform_ = stats.binning == "uniform"
        return self

    def bin_index(self, confidence: Any) -> np.ndarray:
        """The bin of each confidence, by the statistics' rule (exact for uniform bins)."""
        _check_fitted(self, "edges_")
        c = _confidence(confidence)
        n = self.accuracy_.size
        if self.uniform_:
            return uniform_bin_index(c, n)
        return np.clip(np.searchsorted(self.edges_, c, side="right") - 1, 0, n - 1)

    def transform(self, confidence: Any) -> np.ndarray:
        c = _confidence(confidence)
        acc = self.accuracy_[self.bin_index(c)]
        return np.where(np.isnan(acc), c, acc)

    predict = transform

    def to_dict(self) -> dict:
        _check_fitted(self, "edges_")
        return {
            "method": "histogram",
            "edges": self.edges_.tolist(),
            "accuracy": [None if math.isnan(a) else float(a) for a in self.accuracy_],
            "uniform": self.uniform_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> HistogramBinning:
        _method(d, "histogram")
        edges = np.asarray(d["edges"], dtype=np.float64)
        out = cls(n_bins=edges.size - 1, binning="uniform" if d["uniform"] else edges)
        out.edges_ = edges
        out.accuracy_ = np.array([math.nan if a is None else a for a in d["accuracy"]])
        out.uniform_ = bool(d["uniform"])
        return out


def _method(d: dict, method: str) -> None:
    if d.get("method") != method:
        raise ValueError(f"not a {method} calibration: method = {d.get('method')!r}")
