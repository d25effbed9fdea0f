"""scikit-learn 1.9's ``calibration_curve``, ``brier_score_loss`` and ``log_loss``, faster.

Same signatures, conventions and numbers (to 1e-12 on float64 input). The quirks kept:

- ``calibration_curve``: bins are ``[0, e_1], (e_1, e_2], ..., (e_{n-1}, 1]`` -- closed on the
  right, so a value on an edge goes to the bin *below* -- with edges from
  ``np.linspace(0, 1, n_bins + 1)`` (0.30000000000000004, not 0.3) or, for
  ``strategy="quantile"``, ``np.percentile``; **empty bins are dropped** from both returned
  arrays, and no counts are returned; NaN probabilities pass the check and give NaN.
- ``brier_score_loss``: binary ``mean (y - p)^2`` (``scale_by_half="auto"`` halves the sum
  over the two columns); multiclass sums over classes (range [0, 2]).
- ``log_loss``: clips to ``[eps, 1 - eps]`` with ``eps`` the machine epsilon *of the input
  dtype* (36.04 nats at most for float64, 15.94 for float32); a 1-D ``y_proba`` is the
  probability of the greater class.

Fast path: 1-D numeric labels (bool or integers 0/1) and float32/float64 probabilities in
[0, 1]; the sums are then exact (logcal's fixed-point kernel), where scikit-learn sums in
floating point, so results agree to rounding (about 1e-16 relative on float64; on float32
input scikit-learn computes in float32, so there the agreement is about 1e-7). Every other
input (string labels, other ``pos_label``, multiclass probabilities, NaN, negative weights, ...)
goes to scikit-learn itself when it is installed, else to the numpy port in
:mod:`logcal.reference.calibration`, so errors and edge cases are scikit-learn's.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..calibration._fixed import CONF, CORRECT, FIELDS, MAX_WEIGHT, MIN_WEIGHT, FixedSums, to_ints
from ..calibration._inputs import pairs
from ..calibration._kernel import add_pairs
from ..reference import calibration as _ref

__all__ = ["brier_score_loss", "calibration_curve", "log_loss"]


def _fallback(name: str):
    try:
        if name == "calibration_curve":
            from sklearn.calibration import calibration_curve as fn
        else:
            import sklearn.metrics

            fn = getattr(sklearn.metrics, name)
        return fn
    except ImportError:
        return getattr(_ref, name)


def _column(a: Any) -> np.ndarray | None:
    """``a`` as a 1-D numpy array (a column (n, 1) is raveled, as sklearn does), or None."""
    if isinstance(a, np.ndarray):
        arr = a
    elif type(a).__module__.startswith("torch") or isinstance(a, (list, tuple)):
        try:
            arr = np.asarray(a)
        except Exception:
            return None
    else:
        return None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    return arr if arr.ndim == 1 else None


def _labels01(y: np.ndarray | None) -> bool:
    return y is not None and y.dtype.kind in "biu"


def _probs(p: np.ndarray | None) -> bool:
    return p is not None and p.dtype in (np.float32, np.float64)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _weights_ok(w: Any, n: int) -> tuple[bool, np.ndarray | None]:
    if w is None:
        return True, None
    arr = _column(w)
    if arr is None or arr.size != n or arr.dtype.kind not in "iuf":
        return False, None
    arr = arr.astype(np.float64)
    # Weights the fixed-point sums hold exactly (zero, or in [MIN_WEIGHT, MAX_WEIGHT)); any
    # other goes to scikit-learn itself, which accepts them.
    ok = bool(np.all(np.isfinite(arr) & ((arr == 0) | (arr >= MIN_WEIGHT)) & (arr < MAX_WEIGHT)))
    return ok, arr if ok else None


def _run(
    y_prob: np.ndarray, y_true: np.ndarray, weights: np.ndarray | None, func: str, **kwargs: Any
) -> FixedSums | None:
    """The kernel over the pairs, or None when some sample is invalid (then: the slow path)."""
    p = pairs(y_prob, y_true, weights, func)
    sums = FixedSums(kwargs.pop("n_bins", 1))
    if add_pairs(p, sums, **kwargs) >= 0:
        return None
    return sums


def _totals(sums: FixedSums) -> dict:
    return {f: sum(to_ints(sums.sums[:, i])) for i, f in enumerate(FIELDS)}


def calibration_curve(
    y_true: Any, y_prob: Any, *, pos_label: Any = None, n_bins: int = 5, strategy: str = "uniform"
) -> tuple:
    """Fraction of positives and mean predicted probability per non-empty bin.

    See :func:`sklearn.calibration.calibration_curve`; the conventions are listed in this
    module's docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.compat.sklearn import calibration_curve
    >>> y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    >>> y_pred = np.array([0.1, 0.2, 0.3, 0.4, 0.65, 0.7, 0.8, 0.9,  1.])
    >>> calibration_curve(y_true, y_pred, n_bins=3)
    (array([0. , 0.5, 1. ]), array([0.2  , 0.525, 0.85 ]))
    """
    yt, yp = _column(y_true), _column(y_prob)
    fast = (
        _is_int(n_bins)
        and n_bins >= 1
        and strategy in ("uniform", "quantile")
        and pos_label in (None, 1)
        and not isinstance(pos_label, float)
        and _labels01(yt)
        and _probs(yp)
        and yt.size == yp.size
        and yt.size > 0
    )
    if fast:
        n = int(n_bins)
        if strategy == "uniform":
            bins, scale = np.linspace(0.0, 1.0, n + 1), float(n)
        else:
            bins, scale = np.percentile(yp, np.linspace(0, 1, n + 1) * 100), 0.0
        state = _run(
            yp,
            yt,
            None,
            "calibration_curve",
            n_bins=n,
            inner_edges=bins[1:-1],
            right_closed=True,
            edges_scale=scale,
            light=True,
        )
        if state is not None:
            count = state.count.tolist()
            conf = to_ints(state.sums[:, CONF])
            corr = to_ints(state.sums[:, CORRECT])
            keep = [b for b in range(n) if count[b] > 0]
            prob_true = np.array([corr[b] / (count[b] << 64) for b in keep], dtype=np.float64)
            prob_pred = np.array([conf[b] / (count[b] << 64) for b in keep], dtype=np.float64)
            return prob_true, prob_pred
    return _fallback("calibration_curve")(
        y_true, y_prob, pos_label=pos_label, n_bins=n_bins, strategy=strategy
    )


def brier_score_loss(
    y_true: Any,
    y_proba: Any,
    *,
    sample_weight: Any = None,
    pos_label: Any = None,
    labels: Any = None,
    scale_by_half: Any = "auto",
) -> float:
    """Brier score, as :func:`sklearn.metrics.brier_score_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.compat.sklearn import brier_score_loss
    >>> round(brier_score_loss(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.8, 0.3])), 12)
    0.0375
    """
    yt = _column(y_true)
    yp = _column(y_proba) if np.ndim(y_proba) <= 2 else None
    fast = (
        _labels01(yt)
        and _probs(yp)
        and yt.size == yp.size
        and yt.size > 0
        and pos_label in (None, 1)
        and not isinstance(pos_label, float)
        and (isinstance(scale_by_half, (bool, np.bool_)) or scale_by_half == "auto")
    )
    if fast:
        ok, w = _weights_ok(sample_weight, yt.size)
        state = _run(yp, yt, w, "brier_score_loss") if ok else None
        if state is not None:
            t = _totals(state)
            factor = 1 if (scale_by_half == "auto" or scale_by_half) else 2
            if t["weight"] > 0:
                return factor * t["sq_error"] / t["weight"]
    return _fallback("brier_score_loss")(
        y_true,
        y_proba,
        sample_weight=sample_weight,
        pos_label=pos_label,
        labels=labels,
        scale_by_half=scale_by_half,
    )


def log_loss(
    y_true: Any,
    y_proba: Any = None,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
    y_pred: Any = "deprecated",
) -> float:
    """Log loss (cross-entropy), as :func:`sklearn.metrics.log_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from logcal.compat.sklearn import log_loss
    >>> round(log_loss(np.array([1, 0, 0, 1]), np.array([0.9, 0.1, 0.2, 0.65])), 5)
    0.21616
    """
    yt = _column(y_true)
    yp = _column(y_proba) if y_proba is not None else None
    fast = (
        isinstance(y_pred, str)
        and y_pred == "deprecated"
        and labels is None
        and isinstance(normalize, (bool, np.bool_))
        and _labels01(yt)
        and _probs(yp)
        and yt.size == yp.size
        and yt.size > 0
    )
    if fast:
        ok, w = _weights_ok(sample_weight, yt.size)
        eps = float(np.finfo(yp.dtype).eps)
        state = _run(yp, yt, w, "log_loss", eps=eps) if ok else None
        if state is not None:
            ones = int(np.count_nonzero(yt))
            t = _totals(state)
            # Both classes present (else scikit-learn raises), weights not all zero.
            if 0 < ones < yt.size and t["weight"] > 0:
                return t["nll"] / t["weight"] if normalize else t["nll"] / 2**64
    kwargs = {} if isinstance(y_pred, str) and y_pred == "deprecated" else {"y_pred": y_pred}
    fallback = _fallback("log_loss")
    if fallback is _ref.log_loss:
        if kwargs:
            y_proba = y_pred
        return fallback(
            y_true, y_proba, normalize=normalize, sample_weight=sample_weight, labels=labels
        )
    return fallback(
        y_true, y_proba, normalize=normalize, sample_weight=sample_weight, labels=labels, **kwargs
    )
