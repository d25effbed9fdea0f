"""Float64 numpy references of the calibration functions, from their definitions.

Written for clarity, not speed: per-bin sums with ``np.bincount`` in float64, ``np.log`` for the
NLL, exact rationals where the bin rule needs them. They are the oracle of the tests, the
baseline of the benchmarks and, for ``compat``, a port of the peers' conventions that runs
without the peers installed.

>>> import numpy as np
>>> from logcal import reference
>>> reference.uniform_bin_index(np.array([0.3, 0.6, 1.0]), 10)
array([2, 5, 9])
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ReferenceCalibrationStats",
    "binary_calibration_error",
    "bootstrap_weights",
    "brier_score",
    "brier_score_loss",
    "calibration_curve",
    "calibration_stats",
    "classwise_ece",
    "ece",
    "log_loss",
    "mce",
    "multiclass_calibration_error",
    "nll",
    "quantile_edges",
    "rmsce",
    "top_label",
    "torch_linspace",
    "uniform_bin_index",
]

_U64 = np.uint64
_GOLDEN = 0x9E3779B97F4A7C15
_POISSON_CDF = np.array(
    [
        0x5E2D58D8B3BCDF1A,
        0xBC5AB1B16779BE35,
        0xEB715E1DC1582DC2,
        0xFB23979734A252F1,
        0xFF1025F59174DC3D,
        0xFFD90F3BA4055E19,
        0xFFFA8B71FC72C913,
        0xFFFF540C0914B3C9,
        0xFFFFED1F4AA8F120,
        0xFFFFFE216E641462,
        0xFFFFFFD4D85D3183,
        0xFFFFFFFC6DA262B4,
        0xFFFFFFFFBA12D178,
        0xFFFFFFFFFB07C64C,
        0xFFFFFFFFFFAB8EA5,
        0xFFFFFFFFFFFABE22,
        0xFFFFFFFFFFFFB11A,
        0xFFFFFFFFFFFFFBA1,
        0xFFFFFFFFFFFFFFC5,
        0xFFFFFFFFFFFFFFFD,
    ],
    dtype=np.uint64,
)


# --- bins -------------------------------------------------------------------------------------


def uniform_bin_index(conf: Any, n_bins: int) -> np.ndarray:
    """Bin k of n holds c with k/n <= c < (k+1)/n (the last also 1.0), decided exactly.

    ``floor(c * n)`` in floating point is wrong only when the product rounds up onto an
    integer; those few values are decided with exact rationals.
    """
    c = np.asarray(conf, dtype=np.float64).reshape(-1)
    p = c * n_bins
    k = np.floor(p)
    for i in np.flatnonzero((k == p) & (k > 0)):
        if Fraction(float(c[i])) * n_bins < int(k[i]):
            k[i] -= 1
    return np.minimum(k, n_bins - 1).astype(np.int64)


def quantile_edges(conf: Any, n_bins: int) -> np.ndarray:
    """Equal-mass edges ``[0, e_1, ..., 1]``: e_j is the value at sorted position
    ``floor(j N / n_bins)``; duplicates and edges not above the minimum are dropped."""
    s = np.sort(np.asarray(conf, dtype=np.float64).reshape(-1))
    n = s.size
    cand = np.array([s[(j * n) // n_bins] for j in range(1, n_bins)], dtype=np.float64)
    inner = np.unique(cand[cand > s[0]])
    return np.concatenate([[0.0], inner, [1.0]])


def _bin_of(c: np.ndarray, binning: Any, n_bins: int) -> tuple:
    if isinstance(binning, str) and binning == "uniform":
        return uniform_bin_index(c, n_bins), np.arange(n_bins + 1) / n_bins
    edges = (
        quantile_edges(c, n_bins)
        if isinstance(binning, str)
        else np.asarray(binning, dtype=np.float64)
    )
    return np.searchsorted(edges[1:-1], c, side="right").astype(np.int64), edges


# --- the bootstrap's counter-based weights ----------------------------------------------------


def _mix64(z: np.ndarray) -> np.ndarray:
    z = z.astype(_U64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def bootstrap_weights(seed: int, units: Any, n_bootstrap: int) -> np.ndarray:
    """Poisson(1) weights ``[len(units), n_bootstrap]`` of resampling units: the inversion of
    a SplitMix64 hash of (seed, unit, replicate) through the Poisson CDF, as in calibration.h."""
    units = np.asarray(units, dtype=_U64).reshape(-1)
    with np.errstate(over="ignore"):
        s = _mix64(np.array([seed ^ 0x6C6F6763616C2121], dtype=_U64))
        key = _mix64(s + (units + _U64(1)) * _U64(_GOLDEN))
        r = _mix64((np.arange(n_bootstrap, dtype=_U64) + _U64(1)) * _U64(_GOLDEN))
        u = _mix64(key[:, None] ^ r[None, :])
    return (u[..., None] >= _POISSON_CDF).sum(axis=-1).astype(np.int64)


# --- statistics -------------------------------------------------------------------------------


class ReferenceCalibrationStats(NamedTuple):
    """Per-bin float64 sums (weighted by the sample weights) and the metrics from them."""

    edges: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    sum_confidence: np.ndarray
    sum_correct: np.ndarray
    sum_sq_error: np.ndarray  # sum w (c - y)^2
    sum_conf_correct: np.ndarray
    sum_correct_sq: np.ndarray
    sum_nll: np.ndarray
    replicates: dict | None = None  # metric inputs per bootstrap replicate

    @property
    def mean_confidence(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_confidence / self.weight

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_correct / self.weight

    def ece(self, norm: str = "l1", debias: bool = False) -> float:
        return _ece(self.weight, self.sum_confidence, self.sum_correct, self.count, norm, debias)

    def mce(self) -> float:
        return self.ece("max")

    def rmsce(self, debias: bool = False) -> float:
        return self.ece("l2", debias)

    def brier(self) -> float:
        return float(self.sum_sq_error.sum() / self.weight.sum())

    def nll(self) -> float:
        return float(self.sum_nll.sum() / self.weight.sum())

    def bootstrap(self, metric: str = "ece", **kwargs: Any) -> np.ndarray:
        r = self.replicates
        if metric == "brier":
            return r["sq_error"] / r["weight"].sum(axis=1)
        if metric == "nll":
            return r["nll"] / r["weight"].sum(axis=1)
        norm = {"mce": "max", "rmsce": "l2"}.get(metric, kwargs.get("norm", "l1"))
        return np.array(
            [
                _ece(
                    r["weight"][i],
                    r["conf"][i],
                    r["correct"][i],
                    r["weight"][i],
                    norm,
                    kwargs.get("debias", False),
                )
                for i in range(r["weight"].shape[0])
            ]
        )


def _ece(
    W: np.ndarray, C: np.ndarray, Y: np.ndarray, n: np.ndarray, norm: str, debias: bool
) -> float:
    total = W.sum()
    live = W > 0
    gap = np.abs(Y[live] / W[live] - C[live] / W[live])
    w = W[live] / total
    if norm == "l1":
        return float(np.sum(w * gap))
    if norm == "max":
        return float(gap.max())
    if not debias:
        return float(math.sqrt(np.sum(w * gap**2)))
    # Kumar et al. (2019), as in their reference code: bins with fewer than 2 samples give 0.
    nb = np.asarray(n, dtype=np.float64)[live]
    acc = Y[live] / W[live]
    with np.errstate(invalid="ignore", divide="ignore"):
        term = np.where(nb >= 2, gap**2 - acc * (1 - acc) / (nb - 1), 0.0)
    return float(math.sqrt(max(np.sum(w * term), 0.0)))


def _nll_terms(c: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    # each outcome's probability clipped after the complement (as logcal and scikit-learn do)
    return -(y * np.log(np.clip(c, eps, 1 - eps)) + (1 - y) * np.log(np.clip(1 - c, eps, 1 - eps)))


def calibration_stats(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: Any = "uniform",
    weights: Any = None,
    eps: float = 1e-12,
    n_bootstrap: int = 0,
    seed: int = 0,
    bootstrap_block: int = 1,
    bootstrap_offset: int = 0,
) -> ReferenceCalibrationStats:
    """Per-bin sums in float64 with the same bins, clip and bootstrap weights as logcal."""
    c = np.asarray(confidence, dtype=np.float64).reshape(-1)
    y = np.asarray(correct, dtype=np.float64).reshape(-1)
    w = np.ones_like(c) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    k, edges = _bin_of(c, binning, n_bins)
    m = edges.size - 1
    nll_i = _nll_terms(c, y, eps)
    terms = {
        "weight": w,
        "conf": w * c,
        "correct": w * y,
        "sq_error": w * (c - y) ** 2,
        "conf_correct": w * c * y,
        "correct_sq": w * y * y,
        "nll": w * nll_i,
    }

    def bins(v: np.ndarray) -> np.ndarray:
        return np.bincount(k, weights=v, minlength=m)

    reps = None
    if n_bootstrap:
        unit = (bootstrap_offset + np.arange(c.size)) // bootstrap_block
        uniq, inv = np.unique(unit, return_inverse=True)
        rw = bootstrap_weights(seed, uniq, n_bootstrap)[inv]  # [N, B]
        reps = {
            name: np.stack(
                [
                    np.bincount(k, weights=rw[:, r] * terms[name], minlength=m)
                    for r in range(n_bootstrap)
                ]
            )
            for name in ("weight", "conf", "correct")
        }
        reps.update({name: (rw * terms[name][:, None]).sum(axis=0) for name in ("sq_error", "nll")})
    return ReferenceCalibrationStats(
        edges=edges,
        count=np.bincount(k, minlength=m),
        weight=bins(w),
        sum_confidence=bins(terms["conf"]),
        sum_correct=bins(terms["correct"]),
        sum_sq_error=bins(terms["sq_error"]),
        sum_conf_correct=bins(terms["conf_correct"]),
        sum_correct_sq=bins(terms["correct_sq"]),
        sum_nll=bins(terms["nll"]),
        replicates=reps,
    )


def ece(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    binning: Any = "uniform",
    debias: bool = False,
    weights: Any = None,
) -> float:
    return calibration_stats(
        confidence, correct, n_bins=n_bins, binning=binning, weights=weights
    ).ece(norm, debias)


def mce(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: Any = "uniform",
    weights: Any = None,
) -> float:
    return ece(confidence, correct, n_bins=n_bins, norm="max", binning=binning, weights=weights)


def rmsce(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: Any = "uniform",
    debias: bool = False,
    weights: Any = None,
) -> float:
    return ece(
        confidence,
        correct,
        n_bins=n_bins,
        norm="l2",
        binning=binning,
        debias=debias,
        weights=weights,
    )


def brier_score(confidence: Any, correct: Any, *, weights: Any = None) -> float:
    return calibration_stats(confidence, correct, n_bins=1, weights=weights).brier()


def nll(confidence: Any, correct: Any, *, eps: float = 1e-12, weights: Any = None) -> float:
    return calibration_stats(confidence, correct, n_bins=1, eps=eps, weights=weights).nll()


def top_label(probs: Any, labels: Any) -> tuple:
    p = np.asarray(probs, dtype=np.float64)
    pred = np.argmax(p, axis=-1)
    return np.max(p, axis=-1), pred == np.asarray(labels)


def classwise_ece(probs: Any, labels: Any, *, n_bins: int = 15, norm: str = "l1") -> float:
    p = np.asarray(probs, dtype=np.float64)
    p = p.reshape(-1, p.shape[-1])
    lab = np.asarray(labels).reshape(-1)
    return float(
        np.mean([ece(p[:, k], lab == k, n_bins=n_bins, norm=norm) for k in range(p.shape[1])])
    )


# --- scikit-learn's conventions (numeric ports of sklearn 1.9) --------------------------------


def _column_or_1d(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 1:
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        return y.ravel()
    raise ValueError(f"y should be a 1d array, got an array of shape {y.shape} instead.")


def _consistent_length(*arrays: Any) -> None:
    lengths = [len(a) for a in arrays if a is not None]
    if len(set(lengths)) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths!r}")


def _pos_label(pos_label: Any, y_true: np.ndarray) -> Any:
    if pos_label is not None:
        return pos_label
    classes = np.unique(y_true)
    ok = (
        classes.dtype.kind not in "OUS"
        and classes.shape[0] <= 2
        and any(
            classes.shape == np.shape(ref) and np.all(classes == ref)
            for ref in ([0, 1], [-1, 1], [0], [-1], [1])
        )
    )
    if not ok:
        classes_repr = ", ".join(repr(c) for c in classes.tolist())
        raise ValueError(
            f"y_true takes value in {{{classes_repr}}} and pos_label is not specified: either make "
            "y_true take value in {0, 1} or {-1, 1} or pass pos_label explicitly."
        )
    return 1


def calibration_curve(
    y_true: Any, y_prob: Any, *, pos_label: Any = None, n_bins: int = 5, strategy: str = "uniform"
) -> tuple:
    """scikit-learn's ``calibration_curve``: bins ``[0, e_1], (e_1, e_2], ..., (e_{n-1}, 1]``
    with ``np.linspace`` (or ``np.percentile``) edges, empty bins dropped."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(
            f"The 'n_bins' parameter of calibration_curve must be an int in the range "
            f"[1, inf). Got {n_bins!r} instead."
        )
    if strategy not in ("uniform", "quantile"):
        raise ValueError(
            "The 'strategy' parameter of calibration_curve must be a str among "
            f"{{'quantile', 'uniform'}}. Got {strategy!r} instead."
        )
    y_true = _column_or_1d(y_true)
    y_prob = _column_or_1d(y_prob)
    _consistent_length(y_true, y_prob)
    pos_label = _pos_label(pos_label, y_true)
    if y_prob.min() < 0 or y_prob.max() > 1:
        raise ValueError("y_prob has values outside [0, 1].")
    labels = np.unique(y_true)
    if len(labels) > 2:
        raise ValueError(f"Only binary classification is supported. Provided labels {labels}.")
    y_true = y_true == pos_label
    if strategy == "quantile":
        bins = np.percentile(y_prob, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        bins = np.linspace(0.0, 1.0, n_bins + 1)
    binids = np.searchsorted(bins[1:-1], y_prob)
    bin_sums = np.bincount(binids, weights=y_prob, minlength=n_bins)
    bin_true = np.bincount(binids, weights=y_true, minlength=n_bins)
    bin_total = np.bincount(binids, minlength=n_bins)
    nonzero = bin_total != 0
    return bin_true[nonzero] / bin_total[nonzero], bin_sums[nonzero] / bin_total[nonzero]


def _as_float(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _finite(a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(
            "Input contains NaN."
            if np.isnan(a).any()
            else "Input contains infinity or a value too large for dtype('float64')."
        )


def _onehot(y_true: np.ndarray, labels: Any, n_cols: int) -> np.ndarray:
    classes = np.unique(y_true if labels is None else np.asarray(labels))
    if labels is None and classes.size == 1:
        raise ValueError(
            f"y_true contains only one label ({classes[0]}). Please provide the list of "
            "all expected class labels explicitly through the labels argument."
        )
    if classes.size != n_cols:
        raise ValueError(
            f"y_true and y_prob contain different number of classes: {classes.size} vs {n_cols}. "
            "Please provide the true labels explicitly through the labels argument. Classes found in "
            f"y_true: {classes}"
        )
    return (y_true[:, None] == classes[None, :]).astype(np.float64)


def brier_score_loss(
    y_true: Any,
    y_proba: Any,
    *,
    sample_weight: Any = None,
    pos_label: Any = None,
    labels: Any = None,
    scale_by_half: Any = "auto",
) -> float:
    """scikit-learn's ``brier_score_loss``: binary ``mean (y - p)^2``; multiclass
    ``mean sum_c (y_c - p_c)^2``, halved when there are at most two columns (``"auto"``)."""
    p = _as_float(y_proba)
    y_true = np.asarray(y_true)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if p.ndim == 1 or p.shape[1] == 1:
        p = _column_or_1d(p)
        y_true = _column_or_1d(y_true)
        _finite(y_true) if y_true.dtype.kind == "f" else None
        _finite(p)
        _consistent_length(p, y_true, w)
        if np.unique(y_true).size > 2:
            raise ValueError(
                "The type of the target inferred from y_true is multiclass but should "
                "be binary according to the shape of y_prob."
            )
        if p.max() > 1:
            raise ValueError(f"y_prob contains values greater than 1: {p.max()}")
        if p.min() < 0:
            raise ValueError(f"y_prob contains values less than 0: {p.min()}")
        try:
            pos = _pos_label(pos_label, y_true)
        except ValueError:
            classes = np.unique(y_true)
            if classes.dtype.kind in "OUS":
                raise
            pos = classes[-1]
        t = (y_true == pos).astype(p.dtype)
        p2 = np.stack([1 - p, p], axis=1)
        t2 = np.stack([1 - t, t], axis=1)
    else:
        if p.max() > 1:
            raise ValueError(f"y_prob contains values greater than 1: {p.max()}")
        if p.min() < 0:
            raise ValueError(f"y_prob contains values lower than 0: {p.min()}")
        _consistent_length(p, y_true, w)
        t2 = _onehot(y_true, labels, p.shape[1]).astype(p.dtype)
        p2 = p
    score = np.average(np.sum((t2 - p2) ** 2, axis=1), weights=w)
    if scale_by_half == "auto":
        scale_by_half = p2.shape[1] < 3
    return float(score * 0.5 if scale_by_half else score)


def log_loss(
    y_true: Any,
    y_proba: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
) -> float:
    """scikit-learn's ``log_loss``: probabilities clipped to ``[eps, 1 - eps]`` with ``eps``
    the machine epsilon of their dtype; 1-D input is the probability of the greater class."""
    p = _as_float(y_proba)
    y_true = _column_or_1d(np.asarray(y_true))
    _finite(p)
    if p.max() > 1:
        raise ValueError(f"y_prob contains values greater than 1: {p.max()}")
    if p.min() < 0:
        raise ValueError(f"y_prob contains values lower than 0: {p.min()}")
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    _consistent_length(p, y_true, w)
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    t = _onehot(y_true, labels, p.shape[1])
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    loss = -np.sum(np.where(t > 0, t * np.log(p), 0.0), axis=1)
    if normalize:
        return float(np.average(loss, weights=w))
    return float(np.sum(loss) if w is None else np.dot(loss, w))


# --- torchmetrics' conventions (float64 ports of torchmetrics 1.9) ----------------------------


def torch_linspace(n_bins: int, dtype: Any = np.float64) -> np.ndarray:
    """The values of ``torch.linspace(0, 1, n_bins + 1, dtype=dtype)`` on the CPU.

    They are taken from torch itself when it is installed: torch fills the vector lanes with
    ``base + j * step`` from the start for the first half and from the end for the second, so
    its roundings depend on the SIMD width of the machine. Without torch: the scalar formula.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is in the test extra
        torch = None
    dt = np.dtype(dtype)
    if torch is not None:
        tdt = {
            np.dtype(np.float64): torch.float64,
            np.dtype(np.float32): torch.float32,
            np.dtype(np.float16): torch.float16,
        }[dt]
        return torch.linspace(0, 1, n_bins + 1, dtype=tdt).numpy()
    steps = n_bins + 1
    step = dt.type(1.0) / dt.type(n_bins)
    out = np.empty(steps, dtype=dt)
    for i in range(steps):
        out[i] = (
            dt.type(i) * step if i < steps // 2 else dt.type(1.0) - dt.type(steps - 1 - i) * step
        )
    return out


def _tm_compute(conf: np.ndarray, acc: np.ndarray, n_bins: int, norm: str, dtype: Any) -> float:
    b = torch_linspace(n_bins, dtype).astype(np.float64)
    idx = np.searchsorted(b, conf, side="right") - 1  # torch.bucketize(right=True) - 1
    m = b.size  # n_bins + 1 slots: 1.0 falls in the last one, alone
    count = np.bincount(idx, minlength=m).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_bin = np.nan_to_num(np.bincount(idx, weights=conf, minlength=m) / count)
        acc_bin = np.nan_to_num(np.bincount(idx, weights=acc, minlength=m) / count)
    prop = count / count.sum()
    if norm == "l1":
        return float(np.sum(np.abs(acc_bin - conf_bin) * prop))
    if norm == "max":
        return float(np.max(np.abs(acc_bin - conf_bin)))
    ce = np.sum((acc_bin - conf_bin) ** 2 * prop)
    return float(math.sqrt(ce)) if ce > 0 else 0.0


def binary_calibration_error(
    preds: Any, target: Any, n_bins: int = 15, norm: str = "l1", ignore_index: int | None = None
) -> float:
    """torchmetrics' ``binary_calibration_error`` in float64: edges ``torch.linspace`` in the
    input dtype, bins ``[b_k, b_{k+1})`` plus an extra one for 1.0, sigmoid applied to every
    value when any is outside [0, 1]."""
    p = np.asarray(preds).reshape(-1)
    t = np.asarray(target).reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    dtype = p.dtype
    x = p.astype(np.float64)
    if not np.all((x >= 0) & (x <= 1)):
        x = (1 / (1 + np.exp(-x))).astype(dtype).astype(np.float64)
    return _tm_compute(x, t.astype(np.float64), n_bins, norm, dtype)


def multiclass_calibration_error(
    preds: Any,
    target: Any,
    num_classes: int,
    n_bins: int = 15,
    norm: str = "l1",
    ignore_index: int | None = None,
) -> float:
    """torchmetrics' ``multiclass_calibration_error``: softmax over dim 1 when any value is
    outside [0, 1], top-label confidence and correctness, always in float32 (bins too)."""
    p = np.asarray(preds)
    p = np.moveaxis(p, 1, -1).reshape(-1, p.shape[1])
    t = np.asarray(target).reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    x = p.astype(np.float64)
    if not np.all((x >= 0) & (x <= 1)):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        x = e / e.sum(axis=1, keepdims=True)
    conf = x.max(axis=1).astype(np.float32).astype(np.float64)
    acc = (x.argmax(axis=1) == t).astype(np.float64)
    return _tm_compute(conf, acc, n_bins, norm, np.float32)
