"""Recalibration maps on confidences: Platt, beta, isotonic and histogram binning.

Each follows scikit-learn's estimator conventions (``fit`` returns the estimator, ``transform``
and ``predict`` map confidences, fitted attributes end in ``_``) and serialises with
``to_dict``/``from_dict``. Inputs: confidences in ``[0, 1]`` and 0/1 correctness, 1-D.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _native
from .._arrays import view
from ..calibration import CalibrationStats, calibration_stats
from ..reference.calibration import uniform_bin_index

__all__ = ["BetaCalibration", "HistogramBinning", "IsotonicCalibration", "PlattScaling"]

# Confidences of exactly 0 or 1 have an infinite logit; Platt and beta calibration clip them
# to [_CLIP, 1 - _CLIP] first (scikit-learn's CalibratedClassifierCV sees decision values, so
# it has no such convention; this one keeps the logit finite and 1 - _CLIP exact).
_CLIP = 1e-12


def _confidence(confidence: Any, name: str = "confidence") -> np.ndarray:
    """The checked confidences, float64."""
    return _confidence_range(confidence, name, keep_float32=False)[0]


def _confidence_range(confidence: Any, name: str, keep_float32: bool) -> tuple:
    """The checked confidences, float64 (or float32 as given, with ``keep_float32``), and their
    smallest and largest value."""
    c = np.asarray(confidence)
    if not (keep_float32 and c.dtype == np.float32):
        c = np.asarray(c, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {c.shape}")
    if c.size == 0:
        raise ValueError(f"{name} must not be empty")
    lo, hi = c.min(), c.max()
    if not (lo >= 0.0 and hi <= 1.0):  # a NaN fails these too
        i = int(np.flatnonzero(~((c >= 0.0) & (c <= 1.0)))[0])
        raise ValueError(f"{name}[{i}] = {float(c[i])!r} is not in [0, 1]")
    return c, lo, hi


def _pairs(
    confidence: Any, correct: Any, who: str, *, distinct: bool = False, keep_float32: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The checked (confidence, correct) of a fit: dense float64 (or float32 as given, with
    ``keep_float32``), and dense uint8 0/1; ``distinct``: the confidences must not all be
    equal. Each check of every value is one or two reductions where that suffices."""
    c, c_lo, c_hi = _confidence_range(confidence, "confidence", keep_float32)
    y = np.asarray(correct)
    if y.shape != c.shape:
        raise ValueError(f"correct must have the shape of confidence {c.shape}, got {y.shape}")
    if y.dtype != np.bool_ and not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"correct must be booleans or 0/1 numbers, got dtype {y.dtype}")
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        lo, hi = int(y.min()), int(y.max())  # integers in [0, 1] are 0 or 1
        off = None if lo >= 0 and hi <= 1 else ~((y == 0) | (y == 1))
    else:
        off = ~((y == 0) | (y == 1))
    if off is not None and off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"correct[{i}] = {y[i].item()!r} is not 0 or 1")
    y = np.ascontiguousarray(y != 0).view(np.uint8)
    if off is not None:  # floats, all 0 or 1: their range is that of y now
        lo, hi = int(y.min()), int(y.max())
    if lo == hi:
        raise ValueError(f"correct holds only {lo}s: {who} needs both outcomes (0 and 1) to fit")
    if distinct and c_lo == c_hi:
        raise ValueError(
            f"confidence is constant ({float(c[0])!r}): {who} needs two distinct values"
        )
    return np.ascontiguousarray(c), y


def _check_fitted(est: Any, attr: str) -> None:
    if getattr(est, attr, None) is None:
        raise ValueError(f"this {type(est).__name__} is not fitted yet: call fit first")


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, _CLIP, 1.0 - _CLIP)
    return np.log(c) - np.log1p(-c)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logistic_terms(X: np.ndarray, y: np.ndarray) -> Callable:
    """The logistic loss of ``P(y = 1) = sigmoid(X w)``, its gradient and Hessian, in numpy."""

    def evaluate(w: np.ndarray) -> tuple:
        t = X @ w
        p = _sigmoid(t)
        loss = float(np.sum(np.logaddexp(0.0, t) - y * t))
        return loss, X.T @ (p - y), (X * (p * (1.0 - p))[:, None]).T @ X

    return evaluate


def _platt_terms(c: np.ndarray, y: np.ndarray, stride: int = 1) -> Callable:
    """The same for ``sigmoid(a logit(c) + b)``: the six sums from one compiled pass over the
    confidences (every ``stride``-th sample), which takes the logit itself."""
    c_view, y_view = view(c, "confidence"), view(y, "correct")

    def evaluate(w: np.ndarray) -> tuple:
        loss, grad, hess = _native.cpu.platt_sums(
            confidence=c_view, correct=y_view, a=float(w[0]), b=float(w[1]), stride=stride
        )
        return loss, np.array(grad), np.array(hess)

    return evaluate


# Platt's Newton runs first on evenly spread subsamples (every 4096th sample, every 256th, every
# 16th; those of at least 2**13 samples), each started from the fit before: a subsample's fit
# is within about 1/sqrt(its size) of the full one, so the passes over all the data are only
# Newton's last one or two steps.
_SUBSAMPLE_STRIDES = (4096, 256, 16)
_MIN_SUBSAMPLE = 2**13


def _platt_fit(c: np.ndarray, y: np.ndarray) -> np.ndarray:
    w = np.zeros(2)
    for stride in _SUBSAMPLE_STRIDES:
        if c.size // stride >= _MIN_SUBSAMPLE:
            try:
                w = logistic_newton(_platt_terms(c, y, stride), w, who="PlattScaling")
            except ValueError:
                pass  # one outcome only, or separable, in this subsample: go on from w
    try:
        return logistic_newton(_platt_terms(c, y), w, who="PlattScaling")
    except ValueError:
        if not w.any():
            raise
        # A separable subsample's fit can end where every sigmoid has saturated (its gradient
        # rounds to zero), a start the full data cannot recover from: start afresh.
        return logistic_newton(_platt_terms(c, y), np.zeros(2), who="PlattScaling")


# Newton's stopping rule. Near the optimum the error after a full step s_k is about K |s_k|^2
# (quadratic convergence), and s_k itself about K |s_(k-1)|^2, so the error the last step leaves
# is about |s_k|^3 / |s_(k-1)|^2; each measured relative to 1 + |w|, per coefficient.
_STEP_ERROR = 1e-9  # stop once the error the last step leaves is below this
_STEP_FLOOR = 1e-13  # or once a step is below this: the rounding of the sums


def logistic_newton(
    evaluate: Callable, start: np.ndarray, *, who: str, max_iter: int = 100
) -> np.ndarray:
    """Unregularised logistic regression by Newton's method with step halving, from ``start``
    and ``evaluate(w) -> (loss, gradient, Hessian)``. Returns once the error left after the
    last step, as two successive full steps estimate it (see ``_STEP_ERROR``), is below 1e-9
    relative to ``1 + |w|``, or the step itself is below 1e-13."""
    w = np.array(start, dtype=np.float64)
    loss, grad, hess = evaluate(w)
    last = None  # the relative size of the last full step, if the last step was one
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            raise ValueError(f"{who}: the features are collinear, the fit is not unique") from None
        size = float(np.max(np.abs(step) / (1.0 + np.abs(w))))
        if size <= _STEP_FLOOR or (last is not None and size**3 <= _STEP_ERROR * last**2):
            return w - step
        scale = 1.0
        while True:
            trial = w - scale * step
            trial_terms = evaluate(trial)
            if trial_terms[0] <= loss or scale < 2.0**-30:
                break
            scale /= 2.0
        w, (loss, grad, hess) = trial, trial_terms
        last = size if scale == 1.0 else None
        if not np.isfinite(w).all() or np.abs(w).max() > 1e8:
            break
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
        c, y = _pairs(confidence, correct, "PlattScaling", distinct=True, keep_float32=True)
        a, b = _platt_fit(c, y)
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
        c, y = _pairs(confidence, correct, "BetaCalibration", distinct=True)
        c = np.clip(c, _CLIP, 1.0 - _CLIP)
        features = [np.log(c), -np.log1p(-c)]
        ones, y = np.ones_like(c), y.astype(np.float64)

        def fit(*columns: np.ndarray) -> np.ndarray:
            X = np.column_stack([*columns, ones])
            return logistic_newton(
                _logistic_terms(X, y), np.zeros(X.shape[1]), who="BetaCalibration"
            )

        a, b, m = fit(*features)
        if a < 0:  # as betacal: drop the feature whose coefficient is negative, refit
            b, m = fit(features[1])
            a = 0.0
        elif b < 0:
            a, m = fit(features[0])
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


class IsotonicCalibration:
    """Isotonic regression of correctness on confidence (pool adjacent violators).

    Compiled: the pairs are sorted by a parallel radix sort of their bits, pooled by distinct
    confidence and merged into blocks with exact integer counts, so each fitted value is the
    correctly rounded mean of its block.

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
        x, fitted = np.empty_like(c), np.empty_like(c)
        kept = _native.cpu.isotonic_fit(
            confidence=view(c, "confidence"),
            correct=view(y, "correct"),
            x=view(x, "x"),
            y=view(fitted, "y"),
        )
        self.x_thresholds_, self.y_thresholds_ = x[:kept].copy(), fitted[:kept].copy()
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
