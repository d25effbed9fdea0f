"""Calibration: exact, mergeable binned statistics, the ECE family, and a one-pass bootstrap.

Every sum behind every metric is kept per bin as a fixed-point integer (see
:class:`CalibrationStats`), so the statistics of a dataset are the same bits however it is
split into chunks, ordered, threaded or merged.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from . import _device, _native
from ._arrays import as_host_array, format_index, int_arg, wrap

__all__ = [
    "CalibrationAccumulator",
    "CalibrationStats",
    "ReliabilityBin",
    "brier_score",
    "calibration_stats",
    "classwise_ece",
    "ece",
    "mce",
    "nll",
    "rmsce",
    "top_label",
]

# Field order of the per-bin sums: logcal::calib::Field in cpp/include/logcal/calibration.h.
FIELDS = ("weight", "conf", "correct", "sq_error", "conf_correct", "correct_sq", "nll")
_W, _C, _Y, _SQ, _CY, _YY, _NLL = range(7)
# Replicate sums: per bin (weight, conf, correct); totals (sq_error, nll).
BOOT_BIN_FIELDS = ("weight", "conf", "correct")
BOOT_TOTAL_FIELDS = ("sq_error", "nll")

FIXED_FRAC_BITS = 64  # a sum is stored as floor(value * 2^64), in 128 bits
DEFAULT_EPS = 1e-12
MAX_WEIGHT = 2.0**30
MAX_BINS = 2**24
DEFAULT_BOOTSTRAP_BLOCK = 4096  # accumulator default; calibration_stats chooses from N
_MAX_AUTO_UNITS = 2**12

_CONF_CODES = {"float32": 0, "float64": 1}
_CORRECT_CODES = {"uint8": 0, "int32": 1, "int64": 2, "float32": 3, "float64": 4}
_NORMS = ("l1", "l2", "max")
_METRICS = ("ece", "mce", "rmsce", "brier", "nll")


# --- 128-bit integers as (lo, hi) uint64 pairs ------------------------------------------------


def _add128(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise a + b of (..., 2) uint64 arrays of (lo, hi) words, exactly (mod 2^128)."""
    lo = a[..., 0] + b[..., 0]
    carry = (lo < a[..., 0]).astype(np.uint64)
    hi = a[..., 1] + b[..., 1] + carry
    return np.stack([lo, hi], axis=-1)


def _ints(a: np.ndarray) -> list:
    """(..., 2) uint64 pairs as nested lists of Python ints."""
    if a.ndim == 1:
        return (int(a[1]) << 64) | int(a[0])
    return [_ints(x) for x in a]


def _from_ints(values: Any) -> np.ndarray:
    """Nested lists of non-negative Python ints (< 2^128) as (..., 2) uint64 pairs."""
    arr = np.asarray(values, dtype=object)
    flat = arr.reshape(-1)
    out = np.empty((flat.size, 2), dtype=np.uint64)
    for i, v in enumerate(flat):
        v = int(v)
        if not 0 <= v < 2**128:
            raise ValueError(f"fixed-point sum {v} is outside [0, 2**128)")
        out[i, 0] = v & 0xFFFFFFFFFFFFFFFF
        out[i, 1] = v >> 64
    return out.reshape((*arr.shape, 2))


def _to_float(a: np.ndarray) -> np.ndarray:
    """(..., 2) fixed-point sums as float64 values (hi is the integer part): to ~1e-16."""
    return a[..., 1].astype(np.float64) + a[..., 0].astype(np.float64) * 2.0**-64


def _ratio(num: int, den: int) -> float:
    return float("nan") if den == 0 else num / den  # int / int is correctly rounded


# --- argument checks --------------------------------------------------------------------------


def _n_bins(n_bins: Any) -> int:
    n = int_arg(n_bins, "n_bins")
    if n < 1:
        raise ValueError(f"n_bins must be >= 1, got {n}")
    if n > MAX_BINS:
        raise ValueError(f"n_bins must be <= 2**24, got {n}")
    return n


def _eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    e = float(eps)
    if not 1e-300 <= e < 0.5:
        raise ValueError(f"eps must be in [1e-300, 0.5), got {eps!r}")
    return e


def _norm(norm: Any) -> str:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of 'l1', 'l2', 'max', got {norm!r}")
    return norm


def _edges_arg(binning: Any) -> np.ndarray:
    try:
        edges = np.asarray(binning, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "binning must be 'uniform', 'quantile' or an array of bin edges, got "
            f"{type(binning).__name__}"
        ) from exc
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(
            f"bin edges must be a 1-D array of at least 2 values, got shape {edges.shape}"
        )
    if edges[0] != 0.0 or edges[-1] != 1.0:
        raise ValueError(
            f"bin edges must start at 0 and end at 1, got {float(edges[0])!r} ... "
            f"{float(edges[-1])!r}"
        )
    bad = np.flatnonzero(~(np.diff(edges) >= 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"bin edges must be non-decreasing, got edges[{i}] = {float(edges[i])!r} > "
            f"edges[{i + 1}] = {float(edges[i + 1])!r}"
        )
    return edges


# --- inputs -----------------------------------------------------------------------------------


class _Pairs(NamedTuple):
    conf: np.ndarray  # flat float32/float64 view
    correct: np.ndarray  # flat uint8/int32/int64/float32/float64 view
    weights: np.ndarray | None  # flat float64, validated
    shape: tuple  # the callers' shape, for messages
    conf_orig: np.ndarray  # flat views of what the caller passed, for messages
    correct_orig: np.ndarray


def _as_float_probs(x: Any, name: str, func: str) -> tuple[np.ndarray, np.ndarray]:
    arr = as_host_array(x, name, func)
    data = arr.data
    if arr.dtype == "bfloat16":
        data = (data.astype(np.uint32) << 16).view(np.float32)
    elif arr.dtype == "float16":
        data = data.astype(np.float32)
    elif arr.dtype not in ("float32", "float64"):
        raise TypeError(
            f"{name} must be an array of floating-point probabilities (float16, bfloat16, "
            f"float32 or float64), got dtype {arr.dtype}"
        )
    return data, data


def _as_correct(x: Any, func: str) -> tuple[np.ndarray, np.ndarray]:
    arr = as_host_array(x, "correct", func)
    data = arr.data
    orig = data
    kind = data.dtype.kind
    if arr.dtype == "bfloat16":
        data = (data.astype(np.uint32) << 16).view(np.float32)
        orig = data
    elif kind == "b":
        data = data.view(np.uint8)
    elif data.dtype in (np.int8, np.uint8):
        data = data.view(np.uint8)  # -1 reads as 255: still not 0 or 1
    elif data.dtype in (np.int32, np.int64):
        pass
    elif kind in "iu":
        data = data.astype(np.int64)  # uint64 > 2^63 wraps negative: still not 0 or 1
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype in (np.float32, np.float64):
        pass
    else:
        raise TypeError(
            "correct must be an array of bool, integers (0 or 1) or floats in [0, 1], "
            f"got dtype {arr.dtype}"
        )
    return data, orig


def _weights(weights: Any, shape: tuple, func: str) -> np.ndarray:
    arr = as_host_array(weights, "weights", func).data
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"weights must be a numeric array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(
            f"weights must have the shape of confidence {shape}, got shape {arr.shape}"
        )
    w = np.asarray(arr, dtype=np.float64).reshape(-1)
    ok = np.isfinite(w) & (w >= 0) & (w < MAX_WEIGHT)
    if not ok.all():
        i = int(np.argmin(ok))
        v = float(w[i])
        where = f"weights{format_index(shape, i)} = {v!r}"
        if not math.isfinite(v):
            raise ValueError(f"{where} is not finite")
        if v < 0:
            raise ValueError(f"{where} is negative")
        raise ValueError(f"{where} is not below 2**30 (the range of the fixed-point sums)")
    return w


def _pairs(
    confidence: Any, correct: Any, weights: Any, func: str, *, allow_empty: bool = False
) -> _Pairs:
    conf, conf_orig = _as_float_probs(confidence, "confidence", func)
    corr, corr_orig = _as_correct(correct, func)
    if corr.shape != conf.shape:
        raise ValueError(
            f"correct must have the same shape as confidence {conf.shape}, got shape {corr.shape}"
        )
    if conf.size == 0 and not allow_empty:
        raise ValueError(
            f"confidence is empty (shape {conf.shape}): {func} needs at least one sample"
        )
    w = None if weights is None else _weights(weights, conf.shape, func)
    return _Pairs(
        conf.reshape(-1),
        corr.reshape(-1),
        w,
        conf.shape,
        conf_orig.reshape(-1),
        corr_orig.reshape(-1),
    )


def _sample_error(
    p: _Pairs, flat: int, conf_name: str = "confidence", correct_name: str = "correct"
) -> ValueError:
    where = format_index(p.shape, flat)
    c = float(p.conf_orig[flat])
    if not 0.0 <= c <= 1.0:
        if math.isnan(c):
            return ValueError(f"{conf_name}{where} = nan is not a probability in [0, 1]")
        return ValueError(f"{conf_name}{where} = {c!r} is outside [0, 1]")
    y = p.correct_orig[flat]
    if p.correct_orig.dtype.kind == "f":
        y = float(y)
        if math.isnan(y):
            return ValueError(f"{correct_name}{where} = nan is not in [0, 1]")
        return ValueError(f"{correct_name}{where} = {y!r} is outside [0, 1]")
    return ValueError(
        f"{correct_name}{where} = {int(y)} is not 0 or 1 ({correct_name} must be bool, "
        "integers 0 or 1, or floats in [0, 1])"
    )


# --- the kernel -------------------------------------------------------------------------------


class _State:
    """Fixed-point sums being filled: the kernel adds into these arrays."""

    def __init__(self, n_bins: int, n_bootstrap: int = 0) -> None:
        self.count = np.zeros(n_bins, dtype=np.int64)
        self.sums = np.zeros((n_bins, len(FIELDS), 2), dtype=np.uint64)
        self.boot_bins = np.zeros((n_bootstrap, n_bins, len(BOOT_BIN_FIELDS), 2), dtype=np.uint64)
        self.boot_totals = np.zeros((n_bootstrap, len(BOOT_TOTAL_FIELDS), 2), dtype=np.uint64)


class _Boot(NamedTuple):
    n: int
    seed: int
    block: int


def _run(
    p: _Pairs,
    state: _State,
    *,
    n_bins: int,
    inner_edges: np.ndarray | None = None,
    right_closed: bool = False,
    edges_scale: float = 0.0,
    eps: float = DEFAULT_EPS,
    boot: _Boot | None = None,
    offset: int = 0,
    light: bool = False,
) -> int:
    """Adds the samples to `state`; returns the first invalid position, or -1. ``light``:
    only the sums behind the binned metrics (sq_error and nll stay 0)."""
    if p.conf.size == 0:
        return -1
    edges = None if inner_edges is None else np.ascontiguousarray(inner_edges, dtype=np.float64)
    return _native.cpu.calibration_stats(
        p.conf,
        _CONF_CODES[p.conf.dtype.name],
        p.correct,
        _CORRECT_CODES[p.correct.dtype.name],
        p.weights,
        n_bins,
        edges,
        right_closed,
        float(edges_scale),
        eps,
        light,
        0 if boot is None else boot.n,
        0 if boot is None else boot.seed,
        1 if boot is None else boot.block,
        offset,
        state.count,
        state.sums.reshape(-1),
        state.boot_bins.reshape(-1),
        state.boot_totals.reshape(-1),
    )


def _run_checked(p: _Pairs, state: _State, **kwargs: Any) -> None:
    bad = _run(p, state, **kwargs)
    if bad >= 0:
        raise _sample_error(p, bad)


# --- binning ----------------------------------------------------------------------------------


def _quantile_edges(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass edges [0, e_1, ..., 1] from the data: e_j = the value at sorted position
    floor(j N / n_bins), deduplicated, and dropped when not above the minimum. Bins are
    [e_j, e_{j+1}), so a run of equal values always lands in one bin, and no bin is empty."""
    x = np.asarray(conf, dtype=np.float64)
    n = x.size
    ranks = sorted({(j * n) // n_bins for j in range(1, n_bins)})
    vals = np.partition(x, ranks)[ranks] if ranks else np.empty(0)  # partition copies
    lowest = x.min() if n else 0.0
    inner = np.unique(vals[vals > lowest])
    return np.concatenate([[0.0], inner, [1.0]])


def _fine_inner_edges() -> np.ndarray:
    """The accumulator's fine grid for equal-mass bins: in u = c below 1/2 and u = 1 - c above,
    32 bins per octave of u from 2^-30 to 1/2 (relative width 1/32 in c near 0 and in 1 - c near
    1; at most 1/128 wide in the middle), plus one bin for u < 2^-30 at each end. Every edge is an
    exact double, and bins are [e_j, e_{j+1}) like all others."""
    low = [2.0**e * (1.0 + j / 32.0) for e in range(-30, -1) for j in range(32)]
    high = [1.0 - u for u in reversed(low)]
    return np.array([*low, 0.5, *high], dtype=np.float64)


_FINE_INNER = _fine_inner_edges()
FINE_BINS = _FINE_INNER.size + 1  # 1858


def _auto_block(n: int) -> int:
    """Bootstrap unit for N samples: single samples up to 2^12 of them, then the smallest power
    of two that leaves at most 2^12 units (plenty for percentile intervals: the variance of
    the sum is then estimated with 4095 degrees of freedom), at most 4096."""
    block = 1
    while block < 4096 and (n + block - 1) // block > _MAX_AUTO_UNITS:
        block *= 2
    return block


# --- results ----------------------------------------------------------------------------------


class ReliabilityBin(NamedTuple):
    """One row of :meth:`CalibrationStats.reliability`."""

    lower: float
    upper: float
    count: int
    weight: float
    confidence: float  # mean confidence (NaN when empty)
    accuracy: float  # mean correctness (NaN when empty)
    gap: float  # accuracy - confidence


class CalibrationStats:
    """Exact per-bin statistics of (confidence, correctness) pairs, and the metrics from them.

    Made by :func:`calibration_stats` or :meth:`CalibrationAccumulator.compute`; immutable.

    **Bins.** ``edges`` ``[n_bins + 1]``; bin k holds the confidences c with
    ``edges[k] <= c < edges[k+1]``, the last bin also holds ``edges[-1] = 1.0``. Uniform bins
    (``binning="uniform"``) have ``edges[k] = k / n_bins`` and membership is decided on the
    stored value in exact arithmetic, identically for float32 and float64 input: the double
    nearest 0.3 is below 3/10, so with 10 bins it is in bin 2 (``floor(c * n)`` of the real
    product, computed exactly; ``1.0`` joins the last bin). Equal-mass bins
    (``binning="quantile"``) take their edges from the data: edge j is the value at sorted
    position ``floor(j N / n_bins)``; equal values never straddle an edge, so there may be
    fewer bins than asked and ``edges`` reports those used (no bin is empty). In a
    :class:`CalibrationAccumulator` the equal-mass edges come from a fine grid of 1858 bins:
    32 per octave of ``c`` below 1/2 and of ``1 - c`` above (relative resolution 1/32 near 0
    and near 1, at most 1/128 in between, one bin each for ``c`` or ``1 - c`` below 2**-30),
    so each edge is a grid edge and a bin holds ``N / n_bins`` samples up to one fine bin.

    **Exact sums.** Per bin: ``count`` (int64) and, as fixed-point integers of 128 bits with
    64 fractional bits (resolution 2**-64 = 5.4e-20 per unit), the sums of ``w``, ``w c``,
    ``w y``, ``w (c - y)^2``, ``w c y``, ``w y^2`` and ``w nll`` (``w`` the weight, 1 without
    weights; ``y`` the correctness; ``sum w c^2`` is derived, see :meth:`fixed_sums`). Each
    sample's term is a pure function of its bits (products in IEEE double arithmetic, then
    truncated), and integer sums do not depend on
    their order: the statistics, and every metric computed from them, are bitwise identical
    for any chunking, merge order and number of threads. Error bound: per sample at most one
    double rounding (relative 2**-53) plus 2**-64 absolute; confidences and 0/1 correctness
    are exact up to the 2**-64 truncation. For 10**12 samples the mean confidence of a bin is
    off by less than 1.2e-16 relative plus 5.4e-20. Capacity: 2**64 (1.8e19) units per sum,
    e.g. 10**12 samples with weight x value up to 1.8e7 each.

    **NLL** clips the probability of each outcome (``c`` and ``1 - c``) to ``[eps, 1 - eps]``
    (``eps`` default 1e-12, so at most 27.6 nats per sample), and uses a deterministic
    logarithm (fdlibm's algorithm, < 1 ulp).

    **Metrics** are computed from the integer sums in rational arithmetic and rounded once
    (``ece()`` with ``norm="l1"``, ``mce()``, ``brier()`` and ``nll()`` are the correctly
    rounded values of the fixed-point sums; ``rmsce()`` adds a square root). With confidences
    of at least 2**-11 and 0/1 correctness, the ECE and MCE are therefore the correctly rounded
    values of the exact definitions; the Brier score and NLL carry the per-sample roundings
    above (relative 2**-52).

    **Bootstrap** (``n_bootstrap > 0``): replicate sums from a Poisson(1) bootstrap computed
    in the same pass. Replicate r weighs resampling unit u (``bootstrap_block`` consecutive
    samples) by Poisson(1) drawn by inverting the CDF at a SplitMix64 hash of (seed, u, r): a
    counter-based generator, so the replicates too are identical for any chunking and thread
    count, and merge like the main sums. The bins are not re-estimated per replicate. See
    :meth:`bootstrap` and :meth:`interval`.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> s = logcal.calibration_stats(np.array([0.9, 0.8, 0.3, 0.95]), np.array([1, 0, 0, 1]),
    ...                              n_bins=2)
    >>> s.count
    array([1, 3])
    >>> s.accuracy
    array([0.        , 0.66666667])
    >>> round(s.ece(), 4), round(s.brier(), 4)
    (0.2375, 0.1856)
    """

    __slots__ = (
        "_binning",
        "_boot",
        "_boot_bins",
        "_boot_totals",
        "_cache",
        "_count",
        "_edges",
        "_eps",
        "_sums",
        "_weighted",
    )

    def __init__(
        self,
        *,
        edges: np.ndarray,
        count: np.ndarray,
        sums: np.ndarray,
        binning: str = "uniform",
        eps: float = DEFAULT_EPS,
        weighted: bool = False,
        bootstrap: _Boot | None = None,
        boot_bins: np.ndarray | None = None,
        boot_totals: np.ndarray | None = None,
    ) -> None:
        edges = np.array(edges, dtype=np.float64)
        count = np.array(count, dtype=np.int64)
        sums = np.array(sums, dtype=np.uint64)
        n = count.shape[0]
        if edges.shape != (n + 1,) or sums.shape != (n, len(FIELDS), 2):
            raise ValueError("inconsistent shapes of edges, count and sums")
        for a in (edges, count, sums):
            a.flags.writeable = False
        self._edges, self._count, self._sums = edges, count, sums
        self._binning, self._eps, self._weighted = binning, float(eps), bool(weighted)
        self._boot = bootstrap
        if bootstrap is not None:
            boot_bins = np.array(boot_bins, dtype=np.uint64)
            boot_totals = np.array(boot_totals, dtype=np.uint64)
            if boot_bins.shape != (
                bootstrap.n,
                n,
                len(BOOT_BIN_FIELDS),
                2,
            ) or boot_totals.shape != (bootstrap.n, len(BOOT_TOTAL_FIELDS), 2):
                raise ValueError("inconsistent shapes of the bootstrap replicates")
            boot_bins.flags.writeable = False
            boot_totals.flags.writeable = False
        self._boot_bins, self._boot_totals = boot_bins, boot_totals
        self._cache: dict = {}

    # -- fields --

    @property
    def edges(self) -> np.ndarray:
        """Bin edges ``[n_bins + 1]`` (float64)."""
        return self._edges

    @property
    def binning(self) -> str:
        """``"uniform"``, ``"quantile"`` or ``"edges"`` (given by the caller)."""
        return self._binning

    @property
    def n_bins(self) -> int:
        return int(self._count.shape[0])

    @property
    def count(self) -> np.ndarray:
        """Samples per bin (int64)."""
        return self._count

    @property
    def n(self) -> int:
        """Total number of samples."""
        return int(self._count.sum())

    @property
    def eps(self) -> float:
        """The NLL clip: outcome probabilities are taken in ``[eps, 1 - eps]``."""
        return self._eps

    @property
    def weighted(self) -> bool:
        """Whether per-sample weights were given (to any part, for merged statistics)."""
        return self._weighted

    @property
    def n_bootstrap(self) -> int:
        return 0 if self._boot is None else self._boot.n

    @property
    def seed(self) -> int | None:
        return None if self._boot is None else self._boot.seed

    @property
    def bootstrap_block(self) -> int | None:
        """Samples per bootstrap unit (1: the classic per-sample bootstrap)."""
        return None if self._boot is None else self._boot.block

    def fixed_sums(self, field: str) -> list:
        """The exact sums of ``field`` per bin, as integers in units of 2**-64.

        ``field`` is one of ``"weight"`` (sum w), ``"conf"`` (sum w c), ``"correct"``
        (sum w y), ``"sq_error"`` (sum w (c - y)^2), ``"conf_correct"`` (sum w c y),
        ``"correct_sq"`` (sum w y^2), ``"nll"`` (sum w nll), or the derived ``"conf_sq"``
        = sq_error + 2 conf_correct - correct_sq (sum w c^2 up to the per-sample roundings).
        """
        if field == "conf_sq":
            sq, cy, yy = (self.fixed_sums(f) for f in ("sq_error", "conf_correct", "correct_sq"))
            return [a + 2 * b - c for a, b, c in zip(sq, cy, yy)]
        if field not in FIELDS:
            raise ValueError(f"field must be one of {(*FIELDS, 'conf_sq')}, got {field!r}")
        key = ("ints", field)
        if key not in self._cache:
            self._cache[key] = _ints(self._sums[:, FIELDS.index(field)])
        return self._cache[key]

    def _float_field(self, field: str) -> np.ndarray:
        return np.array([_ratio(v, 2**64) for v in self.fixed_sums(field)], dtype=np.float64)

    @property
    def weight(self) -> np.ndarray:
        """Sum of weights per bin (= ``count`` without weights)."""
        return self._float_field("weight")

    @property
    def sum_confidence(self) -> np.ndarray:
        """Sum of (weighted) confidences per bin, correctly rounded from the exact sum."""
        return self._float_field("conf")

    @property
    def sum_correct(self) -> np.ndarray:
        """Sum of (weighted) correctness per bin."""
        return self._float_field("correct")

    def _mean(self, field: str) -> np.ndarray:
        w = self.fixed_sums("weight")
        return np.array([_ratio(v, d) for v, d in zip(self.fixed_sums(field), w)])

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean confidence per bin (NaN for an empty bin)."""
        return self._mean("conf")

    @property
    def accuracy(self) -> np.ndarray:
        """Mean correctness per bin (NaN for an empty bin)."""
        return self._mean("correct")

    # -- metrics --

    def ece(self, norm: str = "l1", debias: bool = False) -> float:
        """Expected calibration error over the bins.

        ``norm="l1"``: ``sum_b w_b |acc_b - conf_b|`` (``w_b`` = bin weight / total);
        ``"l2"``: ``sqrt(sum_b w_b (acc_b - conf_b)^2)`` (RMSCE); ``"max"``:
        ``max_b |acc_b - conf_b|`` over non-empty bins (MCE). ``debias=True`` (``"l2"`` only)
        is the debiased estimator of Kumar, Liang & Ma (2019), "Verified uncertainty
        calibration": ``sqrt(max(0, sum_b w_b [(acc_b - conf_b)^2 - acc_b (1 - acc_b) /
        (n_b - 1)]))`` with bins of fewer than two samples contributing 0, as in their
        reference code (torchmetrics' private variant keeps those bins' plug-in term).
        """
        norm = _norm(norm)
        if debias and norm != "l2":
            raise ValueError("debias=True is defined for norm='l2' (Kumar et al. 2019) only")
        if debias and self._weighted:
            raise ValueError("debias=True is not defined for weighted statistics")
        W = self.fixed_sums("weight")
        C = self.fixed_sums("conf")
        Y = self.fixed_sums("correct")
        total = sum(W)
        if total == 0:
            return float("nan")
        if norm == "l1":
            return sum(abs(y - c) for y, c in zip(Y, C)) / total
        if norm == "max":
            return float(max(Fraction(abs(y - c), w) for y, c, w in zip(Y, C, W) if w > 0))
        q = Fraction(0)
        for y, c, w, n in zip(Y, C, W, self._count.tolist()):
            if w == 0:
                continue
            if not debias:
                q += Fraction((y - c) ** 2, w)
            elif n >= 2:
                acc = Fraction(y, w)
                q += Fraction((y - c) ** 2, w) - w * acc * (1 - acc) / (n - 1)
        q /= total
        return math.sqrt(max(float(q), 0.0))

    def mce(self) -> float:
        """Maximum calibration error: ``ece(norm="max")``."""
        return self.ece(norm="max")

    def rmsce(self, debias: bool = False) -> float:
        """Root-mean-square calibration error: ``ece(norm="l2", debias=debias)``."""
        return self.ece(norm="l2", debias=debias)

    def brier(self) -> float:
        """Brier score ``mean (c - y)^2`` (weighted mean with weights)."""
        return _ratio(sum(self.fixed_sums("sq_error")), sum(self.fixed_sums("weight")))

    def nll(self) -> float:
        """Mean negative log-likelihood ``-[y log c + (1 - y) log(1 - c)]`` with ``c`` and
        ``1 - c`` each clipped to ``[eps, 1 - eps]``."""
        return _ratio(sum(self.fixed_sums("nll")), sum(self.fixed_sums("weight")))

    def metric(self, name: str, **kwargs: Any) -> float:
        """A metric by name: ``"ece"``, ``"mce"``, ``"rmsce"``, ``"brier"`` or ``"nll"``."""
        if name not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {name!r}")
        return getattr(self, name)(**kwargs)

    def reliability(self) -> list:
        """Per-bin rows (:class:`ReliabilityBin`), ready to print or plot."""
        conf, acc, weight = self.mean_confidence, self.accuracy, self.weight
        return [
            ReliabilityBin(
                float(self._edges[b]),
                float(self._edges[b + 1]),
                int(self._count[b]),
                float(weight[b]),
                float(conf[b]),
                float(acc[b]),
                float(acc[b] - conf[b]),
            )
            for b in range(self.n_bins)
        ]

    # -- bootstrap --

    def bootstrap(self, metric: str = "ece", **kwargs: Any) -> np.ndarray:
        """The metric on each bootstrap replicate, ``[n_bootstrap]`` float64.

        Replicate r weighs each resampling unit (``bootstrap_block`` consecutive samples) by
        an independent Poisson(1) count drawn from a counter-based generator keyed by (seed,
        unit, r); the bins are those of these statistics. Accepts the keyword arguments of the
        metric (``norm``, ``debias``).
        """
        if self._boot is None:
            raise ValueError("these statistics have no bootstrap: pass n_bootstrap > 0")
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        if metric == "mce":
            metric, kwargs = "ece", {"norm": "max"}
        elif metric == "rmsce":
            metric, kwargs = "ece", {"norm": "l2", **kwargs}
        bins = _to_float(self._boot_bins)  # [B, n, 3]
        tot = _to_float(self._boot_totals)  # [B, 2]: sq_error, nll
        W, C, Y = bins[..., 0], bins[..., 1], bins[..., 2]
        total = W.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if metric == "brier":
                return tot[:, 0] / total
            if metric == "nll":
                return tot[:, 1] / total
            norm = _norm(kwargs.get("norm", "l1"))
            debias = bool(kwargs.get("debias", False))
            if debias and (norm != "l2" or self._weighted):
                raise ValueError("debias=True needs norm='l2' and unweighted statistics")
            gap = np.abs(Y - C)
            if norm == "l1":
                return gap.sum(axis=1) / total
            if norm == "max":
                per_bin = np.where(W > 0, gap / W, -np.inf)
                out = per_bin.max(axis=1)
                return np.where(np.isfinite(out), out, np.nan)
            sq = np.where(W > 0, gap**2 / W, 0.0)
            if debias:
                acc = Y / W
                corr = np.where(W >= 2, W * acc * (1 - acc) / (W - 1), 0.0)
                sq = np.where(W >= 2, sq - corr, 0.0)
            return np.sqrt(np.maximum(sq.sum(axis=1) / total, 0.0))

    def interval(self, metric: str = "ece", level: float = 0.95, **kwargs: Any) -> tuple:
        """Percentile bootstrap interval ``(lower, upper)`` of a metric at ``level``.

        Examples
        --------
        >>> import numpy as np, logcal
        >>> rng = np.random.default_rng(0)
        >>> c = rng.uniform(0.5, 1, 5000); y = rng.uniform(size=5000) < c
        >>> s = logcal.calibration_stats(c, y, n_bootstrap=200, seed=1)
        >>> lo, hi = s.interval("ece")
        >>> bool(lo <= s.ece() <= hi)
        True
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        values = self.bootstrap(metric, **kwargs)
        units = -(-self.n // self._boot.block)
        if units < 100:
            warnings.warn(
                f"the bootstrap resampled only about {units} units of {self._boot.block} samples; "
                "its interval is unreliable (pass a smaller bootstrap_block)",
                stacklevel=2,
            )
        lo, hi = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def intervals(self, level: float = 0.95) -> dict:
        """``{metric: (lower, upper)}`` for ece, mce, rmsce, brier and nll."""
        return {m: self.interval(m, level) for m in _METRICS}

    # -- merging and serialisation --

    def _same_layout(self, other: CalibrationStats) -> None:
        if not isinstance(other, CalibrationStats):
            raise TypeError(f"can only merge CalibrationStats, got {type(other).__name__}")
        if self._edges.shape != other._edges.shape or not np.array_equal(self._edges, other._edges):
            raise ValueError("cannot merge statistics with different bin edges")
        if self._eps != other._eps:
            raise ValueError(
                f"cannot merge statistics with different eps ({self._eps} and {other._eps})"
            )
        if self._boot != other._boot:
            raise ValueError(
                f"cannot merge statistics with different bootstrap settings ({self._boot} and "
                f"{other._boot})"
            )

    def merge(self, other: CalibrationStats) -> CalibrationStats:
        """The statistics of both datasets (exact: associative and commutative, bit for bit).

        Both must have the same edges, ``eps`` and bootstrap settings. For the bootstrap to
        stay valid the two parts must use different resampling units (``bootstrap_offset``).
        """
        self._same_layout(other)
        kwargs = {}
        if self._boot is not None:
            kwargs = {
                "boot_bins": _add128(self._boot_bins, other._boot_bins),
                "boot_totals": _add128(self._boot_totals, other._boot_totals),
            }
        return CalibrationStats(
            edges=self._edges,
            count=self._count + other._count,
            sums=_add128(self._sums, other._sums),
            binning=self._binning,
            eps=self._eps,
            weighted=self._weighted or other._weighted,
            bootstrap=self._boot,
            **kwargs,
        )

    __add__ = merge

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalibrationStats):
            return NotImplemented
        same = (
            np.array_equal(self._edges, other._edges)
            and self._binning == other._binning
            and np.array_equal(self._count, other._count)
            and np.array_equal(self._sums, other._sums)
            and self._eps == other._eps
            and self._weighted == other._weighted
            and self._boot == other._boot
        )
        if same and self._boot is not None:
            same = np.array_equal(self._boot_bins, other._boot_bins) and np.array_equal(
                self._boot_totals, other._boot_totals
            )
        return bool(same)

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict:
        """A JSON-ready dict of the exact state (Python ints for the fixed-point sums)."""
        d = {
            "format": "logcal.CalibrationStats",
            "version": 1,
            "binning": self._binning,
            "edges": [float(e) for e in self._edges],
            "eps": self._eps,
            "weighted": self._weighted,
            "count": [int(c) for c in self._count],
            "sums": {f: _ints(self._sums[:, i]) for i, f in enumerate(FIELDS)},
            "bootstrap": None,
        }
        if self._boot is not None:
            d["bootstrap"] = {
                "n_bootstrap": self._boot.n,
                "seed": self._boot.seed,
                "block": self._boot.block,
                "bins": {f: _ints(self._boot_bins[:, :, i]) for i, f in enumerate(BOOT_BIN_FIELDS)},
                "totals": {
                    f: _ints(self._boot_totals[:, i]) for i, f in enumerate(BOOT_TOTAL_FIELDS)
                },
            }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationStats:
        """Inverse of :meth:`to_dict`."""
        if d.get("format") != "logcal.CalibrationStats" or d.get("version") != 1:
            raise ValueError("not a logcal.CalibrationStats dict (format/version)")
        n = len(d["count"])
        sums = np.stack([_from_ints(d["sums"][f]).reshape(n, 2) for f in FIELDS], axis=1)
        kwargs: dict = {}
        b = d.get("bootstrap")
        if b is not None:
            boot = _Boot(int(b["n_bootstrap"]), int(b["seed"]), int(b["block"]))
            bins = np.stack(
                [_from_ints(b["bins"][f]).reshape(boot.n, n, 2) for f in BOOT_BIN_FIELDS], axis=2
            )
            totals = np.stack(
                [_from_ints(b["totals"][f]).reshape(boot.n, 2) for f in BOOT_TOTAL_FIELDS], axis=1
            )
            kwargs = {"bootstrap": boot, "boot_bins": bins, "boot_totals": totals}
        return cls(
            edges=np.array(d["edges"], dtype=np.float64),
            count=np.array(d["count"]),
            sums=sums,
            binning=d["binning"],
            eps=d["eps"],
            weighted=d["weighted"],
            **kwargs,
        )

    def __repr__(self) -> str:
        n = self.n
        ece_s = f"{self.ece():.6g}" if n else "nan"
        boot = f", n_bootstrap={self.n_bootstrap}" if self._boot is not None else ""
        return (
            f"CalibrationStats(n={n}, n_bins={self.n_bins}, binning={self._binning!r}, "
            f"ece={ece_s}{boot})"
        )


# --- the public functions ---------------------------------------------------------------------


def _binning_plan(binning: Any, n_bins: int, conf: np.ndarray | None) -> tuple:
    """(name, full edges, inner edges or None for exact uniform)."""
    if isinstance(binning, str):
        if binning == "uniform":
            return "uniform", np.arange(n_bins + 1, dtype=np.float64) / n_bins, None
        if binning == "quantile":
            if conf is None:
                raise ValueError("binning='quantile' needs the data")
            edges = _quantile_edges(conf, n_bins)
            return "quantile", edges, edges[1:-1]
        raise ValueError(
            f"binning must be 'uniform', 'quantile' or an array of edges, got {binning!r}"
        )
    edges = _edges_arg(binning)
    return "edges", edges, edges[1:-1]


def _bootstrap_args(
    n_bootstrap: Any, seed: Any, block: Any, offset: Any, n: int, default_block: int | None
) -> tuple[_Boot | None, int]:
    nb = int_arg(n_bootstrap, "n_bootstrap")
    if nb < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {nb}")
    s = int_arg(seed, "seed")
    if not 0 <= s < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {s}")
    off = int_arg(offset, "bootstrap_offset")
    if off < 0:
        raise ValueError(f"bootstrap_offset must be >= 0, got {off}")
    if nb == 0:
        return None, off
    if block is None:
        block = default_block if default_block is not None else _auto_block(n)
    block = int_arg(block, "bootstrap_block")
    if block < 1:
        raise ValueError(f"bootstrap_block must be >= 1, got {block}")
    return _Boot(nb, s, block), off


# --- CUDA inputs ------------------------------------------------------------------------------


def _gpu_unsupported(func: str, what: str) -> ValueError:
    return ValueError(
        f"{func}: {what} is not available for CUDA arrays in this version; pass "
        "host arrays (e.g. tensor.cpu()) for it"
    )


def _gpu_run(
    confidence: Any,
    correct: Any,
    state: Any,
    inner: np.ndarray | None,
    *,
    eps: float,
    light: bool,
    func: str,
) -> None:
    """Adds CUDA (confidence, correct) pairs into the device state `state`; validates them with
    one synchronisation and, on a bad sample, raises the CPU's message (read from a host copy)."""
    from . import _cuda_ops

    core = _device.require_cuda(func)
    shape = _device.describe(confidence).shape
    c, y, n = _cuda_ops.calib_pairs(confidence, correct, func)
    if n == 0:
        return
    s = _device.stream(c)
    first = _device.full_u64_max(c)
    scratch = _cuda_ops.DeviceState(state.n_bins, state.like)
    edges = None if inner is None else _device.from_host(np.asarray(inner, np.float64), c)
    _cuda_ops.calib_launch(
        core,
        scratch,
        s,
        n=n,
        n_bins=state.n_bins,
        edges=edges,
        eps=eps,
        light=light,
        conf=c,
        corr=y,
        first=first,
    )
    if _device.read_u64(core, first, s) != _device.NONE_FOUND:
        host = _pairs(
            _device.to_host(c).reshape(shape),
            _device.to_host(y).reshape(shape),
            None,
            func,
            allow_empty=True,
        )
        probe = _State(state.n_bins)
        bad = _run(host, probe, n_bins=state.n_bins, inner_edges=inner, eps=eps, light=light)
        raise _sample_error(host, bad if bad >= 0 else 0)
    core.calibration_add_state(
        state.like.device,
        s,
        state.count.ptr,
        state.sums.ptr,
        scratch.count.ptr,
        scratch.sums.ptr,
        state.n_bins,
    )


def _gpu_stats(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int,
    binning: Any,
    weights: Any,
    eps: float,
    light: bool,
    func: str,
) -> tuple:
    """(name, edges, count, sums) of CUDA pairs, computed on their GPU (synchronises: the
    result is host numbers)."""
    from . import _cuda_ops

    _device.require_cuda(func)
    if weights is not None:
        raise _gpu_unsupported(func, "weights=")
    if isinstance(binning, str) and binning == "quantile":
        raise _gpu_unsupported(func, "binning='quantile'")
    name, edges, inner = _binning_plan(binning, n_bins, None)
    nb = edges.size - 1
    c = _device.describe(confidence)
    if int(np.prod(c.shape)) == 0:
        raise ValueError(f"confidence is empty (shape {c.shape}): {func} needs at least one sample")
    state = _cuda_ops.DeviceState(nb, c)
    _gpu_run(confidence, correct, state, inner, eps=eps, light=light, func=func)
    count, sums = state.to_host()
    return name, edges, count, sums


def calibration_stats(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: str | Sequence[float] = "uniform",
    weights: Any = None,
    eps: float = DEFAULT_EPS,
    n_bootstrap: int = 0,
    seed: int = 0,
    bootstrap_block: int | None = None,
    bootstrap_offset: int = 0,
) -> CalibrationStats:
    """Exact per-bin statistics of (confidence, correctness) pairs, in one pass.

    Parameters
    ----------
    confidence : array
        The model's confidence in the answer it gave, in ``[0, 1]`` (float16/bfloat16 are
        upcast to float32; float32 and float64 are read as they are). Any shape and strides;
        numpy, torch CPU tensors, or anything with ``__array__``/``__dlpack__``.
    correct : array of the same shape
        Whether that answer was right: bool, integers 0/1, or floats in ``[0, 1]`` (soft
        labels).
    n_bins : int
        Number of bins (``>= 1``).
    binning : {"uniform", "quantile"} or array of edges
        Exact uniform bins, equal-mass bins from the data, or explicit non-decreasing edges
        from 0 to 1 (bins ``[e_k, e_{k+1})``, the last one closed; ``n_bins`` is then ignored).
    weights : array of the same shape, optional
        Per-sample weights, finite, ``>= 0`` and ``< 2**30``.
    eps : float
        NLL clip (default 1e-12).
    n_bootstrap, seed : int
        Poisson bootstrap replicates computed in the same pass, and their seed
        (``0 <= seed < 2**64``); see :meth:`CalibrationStats.interval`.
    bootstrap_block : int, optional
        Samples per resampling unit: consecutive samples ``[k g, (k+1) g)`` share their
        Poisson weights (``g = 1``: the classic per-sample bootstrap). Blocks of consecutive
        samples are valid for independent samples in any order, and also account for
        dependence between neighbours (tokens of one sequence). Default: 1 for up to 2**12
        samples, then the smallest power of two leaving at most 2**12 units, at most 4096
        (from 2**24 samples on, the replicates then cost less than the main statistics; a
        per-sample bootstrap costs about B times a plain pass).
    bootstrap_offset : int
        Position of the first sample in a larger stream, so that parts computed separately
        and merged draw the same weights as one pass over the whole.

    Returns
    -------
    CalibrationStats

    Raises
    ------
    ValueError
        NaN or out-of-range confidences, correctness that is not 0/1 (integers) or outside
        ``[0, 1]`` (floats), mismatched shapes, empty input, ``n_bins < 1``, bad weights;
        the message names the argument and the first offending position.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> conf = np.array([0.3, 0.6, 0.7, 0.95, 1.0])
    >>> s = logcal.calibration_stats(conf, np.array([0, 1, 0, 1, 1]), n_bins=10)
    >>> s.count.tolist()   # 0.3, 0.6, 0.7 are below 3/10, 6/10, 7/10; 1.0 joins the last bin
    [0, 0, 1, 0, 0, 1, 1, 0, 0, 2]
    >>> round(s.ece(), 6), round(s.nll(), 6)
    (0.29, 0.424553)
    """
    func = "calibration_stats"
    n_bins = _n_bins(n_bins)
    eps = _eps(eps)
    if _device.is_cuda_array(confidence):
        if int_arg(n_bootstrap, "n_bootstrap") != 0:
            raise _gpu_unsupported(func, "n_bootstrap > 0")
        name, edges, count, sums = _gpu_stats(
            confidence,
            correct,
            n_bins=n_bins,
            binning=binning,
            weights=weights,
            eps=eps,
            light=False,
            func=func,
        )
        return CalibrationStats(
            edges=edges, count=count, sums=sums, binning=name, eps=eps, weighted=False
        )
    p = _pairs(confidence, correct, weights, func)
    boot, offset = _bootstrap_args(
        n_bootstrap, seed, bootstrap_block, bootstrap_offset, p.conf.size, None
    )
    name, edges, inner = _binning_plan(binning, n_bins, p.conf)
    nb = edges.size - 1
    state = _State(nb, 0 if boot is None else boot.n)
    _run_checked(p, state, n_bins=nb, inner_edges=inner, eps=eps, boot=boot, offset=offset)
    return CalibrationStats(
        edges=edges,
        count=state.count,
        sums=state.sums,
        binning=name,
        eps=eps,
        weighted=p.weights is not None,
        bootstrap=boot,
        boot_bins=state.boot_bins if boot else None,
        boot_totals=state.boot_totals if boot else None,
    )


def _binned(
    confidence: Any, correct: Any, n_bins: Any, binning: Any, weights: Any, func: str
) -> CalibrationStats:
    """Statistics with only the binned sums (no squared error, no NLL): for the ECE family."""
    n_bins = _n_bins(n_bins)
    if _device.is_cuda_array(confidence):
        name, edges, count, sums = _gpu_stats(
            confidence,
            correct,
            n_bins=n_bins,
            binning=binning,
            weights=weights,
            eps=DEFAULT_EPS,
            light=True,
            func=func,
        )
        return CalibrationStats(edges=edges, count=count, sums=sums, binning=name, weighted=False)
    p = _pairs(confidence, correct, weights, func)
    name, edges, inner = _binning_plan(binning, n_bins, p.conf)
    state = _State(edges.size - 1)
    _run_checked(p, state, n_bins=edges.size - 1, inner_edges=inner, light=True)
    return CalibrationStats(
        edges=edges,
        count=state.count,
        sums=state.sums,
        binning=name,
        weighted=p.weights is not None,
    )


def ece(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    binning: str | Sequence[float] = "uniform",
    debias: bool = False,
    weights: Any = None,
) -> float:
    """Expected calibration error of (confidence, correct) pairs.

    ``norm="l1"`` (ECE), ``"l2"`` (RMSCE; ``debias=True`` for Kumar et al.'s debiased
    estimator) or ``"max"`` (MCE); see :meth:`CalibrationStats.ece` and
    :func:`calibration_stats` for the bins and the inputs.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> logcal.ece(np.array([0.95, 1.0]), np.array([1, 0]), n_bins=10)
    0.475
    """
    norm = _norm(norm)
    return _binned(confidence, correct, n_bins, binning, weights, "ece").ece(
        norm=norm, debias=debias
    )


def mce(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: str | Sequence[float] = "uniform",
    weights: Any = None,
) -> float:
    """Maximum calibration error: the largest ``|accuracy - confidence|`` of a non-empty bin.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> logcal.mce(np.array([0.95, 1.0]), np.array([1, 0]), n_bins=10)
    0.475
    """
    return _binned(confidence, correct, n_bins, binning, weights, "mce").mce()


def rmsce(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: str | Sequence[float] = "uniform",
    debias: bool = False,
    weights: Any = None,
) -> float:
    """Root-mean-square calibration error (``ece(norm="l2")``).

    Examples
    --------
    >>> import numpy as np, logcal
    >>> round(logcal.rmsce(np.array([0.25, 0.75]), np.array([0, 1]), n_bins=2), 6)
    0.25
    """
    return _binned(confidence, correct, n_bins, binning, weights, "rmsce").rmsce(debias=debias)


def brier_score(confidence: Any, correct: Any, *, weights: Any = None) -> float:
    """Brier score: the (weighted) mean of ``(confidence - correct)^2``, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> round(logcal.brier_score(np.array([0.9, 0.2]), np.array([1, 1])), 12)
    0.325
    """
    return calibration_stats(confidence, correct, n_bins=1, weights=weights).brier()


def nll(confidence: Any, correct: Any, *, eps: float = DEFAULT_EPS, weights: Any = None) -> float:
    """Mean negative log-likelihood ``-[y log c + (1 - y) log(1 - c)]``, nats, with ``c`` and
    ``1 - c`` each clipped to ``[eps, 1 - eps]`` (default ``eps = 1e-12``: at most 27.6 nats a
    sample, and at most ``-log(eps)`` for any ``eps``).

    Examples
    --------
    >>> import numpy as np, logcal
    >>> round(logcal.nll(np.array([0.5, 1.0]), np.array([1, 0])), 4)
    14.1621
    """
    return calibration_stats(confidence, correct, n_bins=1, eps=eps, weights=weights).nll()


def _probs_labels(probs: Any, labels: Any, func: str, check_values: bool = True) -> tuple:
    family = as_host_array(probs, "probs", func).family
    p, _ = _as_float_probs(probs, "probs", func)
    if p.ndim < 1 or p.shape[-1] == 0:
        raise ValueError(f"probs must have a non-empty last (class) axis, got shape {p.shape}")
    if p.size == 0:
        raise ValueError(f"probs is empty (shape {p.shape}): {func} needs at least one sample")
    lab = as_host_array(labels, "labels", func).data
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be an array of integers, got dtype {lab.dtype}")
    if lab.shape != p.shape[:-1]:
        raise ValueError(
            f"labels must have the leading shape of probs {p.shape[:-1]}, got shape {lab.shape}"
        )
    if check_values:
        ok = (p >= 0) & (p <= 1)
        if not ok.all():
            _bad_prob(p, int(np.argmin(ok.reshape(-1))))
        ok = (lab >= 0) & (lab < p.shape[-1])
        if not ok.all():
            _bad_label(lab, int(np.argmin(ok.reshape(-1))), p.shape[-1])
    return p, lab, family


def _bad_prob(p: np.ndarray, flat: int) -> None:
    v = float(p.reshape(-1)[flat])
    where = format_index(p.shape, flat)
    if math.isnan(v):
        raise ValueError(f"probs{where} = nan is not a probability in [0, 1]")
    raise ValueError(f"probs{where} = {v!r} is outside [0, 1]")


def _bad_label(lab: np.ndarray, flat: int, k: int) -> None:
    raise ValueError(
        f"labels{format_index(lab.shape, flat)} = {int(lab.reshape(-1)[flat])} is outside [0, {k})"
    )


def top_label(probs: Any, labels: Any) -> tuple:
    """Top-label (confidence, correct) pairs from class probabilities.

    ``confidence`` is the largest probability of each row, ``correct`` whether its class (the
    lowest index among ties) is the label. Output family follows the input (numpy or torch).
    One pass over the probabilities, which are checked on the way.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> conf, ok = logcal.top_label(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([1, 1]))
    >>> conf, ok
    (array([0.8, 0.6]), array([ True, False]))
    """
    p, lab, family = _probs_labels(probs, labels, "top_label", check_values=False)
    k = p.shape[-1]
    rows = p.reshape(-1, k)  # a view unless the leading axes cannot be merged
    # uint64 labels of 2^63 and more wrap to negative int64s, which the kernel rejects
    lab64 = np.ascontiguousarray(lab.reshape(-1)).astype(np.int64, copy=False)
    conf = np.empty(rows.shape[0], dtype=p.dtype)
    correct = np.empty(rows.shape[0], dtype=bool)
    bad_prob, bad_label = _native.cpu.top_label(
        rows, 0 if p.dtype == np.float32 else 1, lab64, conf, correct
    )
    if bad_prob >= 0:
        _bad_prob(p, bad_prob)
    if bad_label >= 0:
        _bad_label(lab, bad_label, k)
    shape = p.shape[:-1]
    return wrap(conf.reshape(shape), conf.dtype.name, family), wrap(
        correct.reshape(shape), "bool", family
    )


def classwise_ece(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    binning: str | Sequence[float] = "uniform",
) -> float:
    """Classwise ECE (Kull et al. 2019): the mean over the K classes of the one-vs-rest ECE of
    ``(probs[..., k], labels == k)``.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    >>> round(logcal.classwise_ece(probs, np.array([0, 1, 1]), n_bins=2), 6)
    0.333333
    """
    n_bins = _n_bins(n_bins)
    norm = _norm(norm)
    p, lab, _ = _probs_labels(probs, labels, "classwise_ece")
    k = p.shape[-1]
    p2 = p.reshape(-1, k)
    lab1 = lab.reshape(-1)
    total = 0.0
    for cls in range(k):
        total += _binned(p2[:, cls], lab1 == cls, n_bins, binning, None, "classwise_ece").ece(
            norm=norm
        )
    return total / k


# --- streaming --------------------------------------------------------------------------------


class CalibrationAccumulator:
    """Streaming calibration statistics: ``update`` with chunks, ``merge`` accumulators (from
    other threads, processes or machines), ``compute`` a :class:`CalibrationStats`.

    The state is the exact fixed-point sums of :class:`CalibrationStats` (a few integers per
    bin), so any chunking and any merge order give bitwise the same result as one call of
    :func:`calibration_stats` on all the data (for uniform or explicit bins; equal-mass bins
    come from a fine grid here, see :class:`CalibrationStats`).

    Parameters
    ----------
    n_bins, binning, eps
        As for :func:`calibration_stats`.
    n_bootstrap, seed, bootstrap_block
        Poisson bootstrap replicates kept alongside (not with ``binning="quantile"``).
        Resampling units are ``bootstrap_block`` consecutive samples (default 4096) of the
        stream: ``update`` places each chunk after the previous one, or at ``offset=``.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> acc = logcal.CalibrationAccumulator(n_bins=10)
    >>> acc.update(np.array([0.9, 0.3]), np.array([1, 0]))
    CalibrationAccumulator(n=2, n_bins=10, binning='uniform')
    >>> other = logcal.CalibrationAccumulator(n_bins=10).update(np.array([0.8]), np.array([0]))
    >>> acc.merge(other).compute().ece()
    0.4
    """

    def __init__(
        self,
        n_bins: int = 15,
        binning: str | Sequence[float] = "uniform",
        *,
        eps: float = DEFAULT_EPS,
        n_bootstrap: int = 0,
        seed: int = 0,
        bootstrap_block: int = DEFAULT_BOOTSTRAP_BLOCK,
    ) -> None:
        self._n_bins = _n_bins(n_bins)
        self._eps = _eps(eps)
        if isinstance(binning, str) and binning == "quantile":
            self._binning = "quantile"
            self._inner = _FINE_INNER
            self._edges = np.concatenate([[0.0], _FINE_INNER, [1.0]])
        else:
            self._binning, self._edges, self._inner = _binning_plan(binning, self._n_bins, None)
        self._boot, _ = _bootstrap_args(
            n_bootstrap, seed, bootstrap_block, 0, 0, DEFAULT_BOOTSTRAP_BLOCK
        )
        if self._boot is not None and self._binning == "quantile":
            raise ValueError(
                "n_bootstrap > 0 is not available with binning='quantile' in an accumulator "
                "(the replicates would need the fine grid); use uniform or explicit bins"
            )
        self._weighted = False
        self._position = 0
        self._state = _State(self._edges.size - 1, 0 if self._boot is None else self._boot.n)
        self._dev = None  # state of CUDA updates, kept on their device until it is read
        self._dev_edges = None
        self._dev_pairs = 0  # samples of update() among them (already counted in position)

    # --- the device part of the state -------------------------------------------------------

    def _device_state(self, like: Any, func: str) -> Any:
        from . import _cuda_ops

        if self._dev is None:
            self._dev = _cuda_ops.DeviceState(self._state.count.size, like)
            self._dev_edges = (
                None
                if self._inner is None
                else _device.from_host(np.asarray(self._inner, dtype=np.float64), like)
            )
        elif self._dev.like.device != like.device:
            raise ValueError(
                f"{func}: this accumulator holds state on cuda:{self._dev.like.device}"
                f", got data on cuda:{like.device}"
            )
        return self._dev

    def _flush_device(self) -> None:
        """Adds the device part of the state into the host state (exact; synchronises)."""
        if self._dev is None:
            return
        count, sums = self._dev.to_host()
        self._state.count += count
        self._state.sums = _add128(self._state.sums, sums)
        self._position += int(count.sum()) - self._dev_pairs
        self._dev = self._dev_edges = None
        self._dev_pairs = 0

    @property
    def n(self) -> int:
        """Samples added so far (reads any state kept on a GPU: synchronises)."""
        self._flush_device()
        return int(self._state.count.sum())

    @property
    def position(self) -> int:
        """Where the next chunk goes in the bootstrap's stream (one past the last sample)."""
        self._flush_device()
        return self._position

    def update(
        self, confidence: Any, correct: Any, *, weights: Any = None, offset: int | None = None
    ) -> CalibrationAccumulator:
        """Adds a chunk (an empty chunk is allowed and adds nothing). ``offset`` places the
        chunk in the bootstrap's stream (default: after everything added so far).

        CUDA arrays are binned on their GPU into state kept there (bitwise the state the CPU
        would build) until :meth:`compute`, :meth:`merge`, :meth:`to_dict` or :attr:`n` reads
        it; validating the chunk waits for one 8-byte read. Not with weights or bootstrap."""
        if _device.is_cuda_array(confidence):
            func = "CalibrationAccumulator.update"
            if weights is not None:
                raise _gpu_unsupported(func, "weights=")
            if self._boot is not None:
                raise _gpu_unsupported(func, "an accumulator with n_bootstrap > 0")
            _device.require_cuda(func)
            c = _device.describe(confidence)
            n = int(np.prod(c.shape))
            start = self._position if offset is None else int_arg(offset, "offset")
            _gpu_run(
                confidence,
                correct,
                self._device_state(c, func),
                self._inner,
                eps=self._eps,
                light=False,
                func=func,
            )
            self._dev_pairs += n
            self._position = max(self._position, start + n)
            return self
        p = _pairs(confidence, correct, weights, "CalibrationAccumulator.update", allow_empty=True)
        start = self._position if offset is None else int_arg(offset, "offset")
        if start < 0:
            raise ValueError(f"offset must be >= 0, got {start}")
        scratch = _State(self._state.count.size, 0 if self._boot is None else self._boot.n)
        _run_checked(
            p,
            scratch,
            n_bins=scratch.count.size,
            inner_edges=self._inner,
            eps=self._eps,
            boot=self._boot,
            offset=start,
        )
        self._add(scratch)  # only once the whole chunk is valid
        self._weighted |= p.weights is not None
        self._position = max(self._position, start + p.conf.size)
        return self

    def update_from_logits(
        self, logits: Any, targets: Any, *, temperature: float = 1.0, ignore_index: int = -100
    ) -> CalibrationAccumulator:
        """Adds the token positions of ``logits`` ``[..., V]``: confidence = the largest
        probability (``exp(max_logprob)`` of :func:`token_stats`), correct = (argmax ==
        target). Positions whose target is ``ignore_index``, and rows whose statistics are NaN
        (NaN, ``+inf`` or all ``-inf`` logits), are skipped.

        On a GPU this is one pass over the logits (the token statistics) and a small binning
        kernel, and the state stays on the device until it is read: no synchronisation except
        the range check of CUDA ``targets`` (one 8-byte read). The state is bitwise what
        :meth:`update` builds on the CPU from the same confidences, which are computed from
        the stored ``max_logprob`` by an exponential with the same bits on every device."""
        from ._token import _temperature, token_stats

        func = "CalibrationAccumulator.update_from_logits"
        if targets is None:
            raise TypeError(f"{func} needs targets (the token each position should predict)")
        temperature = _temperature(temperature)
        ignore_index = int_arg(ignore_index, "ignore_index")
        if _device.is_cuda_array(logits):
            from . import _cuda_ops

            if self._boot is not None:
                raise _gpu_unsupported(func, "an accumulator with n_bootstrap > 0")
            core = _device.require_cuda(func)
            out = _cuda_ops.token_stats(
                logits,
                targets,
                0,
                temperature,
                ignore_index,
                _targets,
                fields=("max_logprob", "argmax"),
                keep_targets=True,
            )
            lp = _device.describe(out["max_logprob"])
            n = int(np.prod(lp.shape))
            if n == 0:
                return self
            state = self._device_state(lp, func)
            t = _device.describe(out["_targets"])
            am = _device.describe(out["argmax"])
            src = dict(
                max_logprob=lp.ptr,
                lp_type=0 if lp.dtype == "float32" else 1,
                argmax=am.ptr,
                targets=t.ptr,
                ignore_index=ignore_index,
            )
            _cuda_ops.calib_launch(
                core,
                state,
                _device.stream(lp),
                n=n,
                n_bins=state.n_bins,
                edges=self._dev_edges,
                eps=self._eps,
                light=False,
                logits_source=src,
            )
            return self
        # One read of the targets: a private copy, checked by the token kernel as it reads it,
        # then compared with the argmax.
        t = np.array(as_host_array(targets, "targets", func).data)
        st = token_stats(logits, t, temperature=temperature, ignore_index=ignore_index)
        lp = np.ascontiguousarray(np.asarray(st.max_logprob).reshape(-1))
        am = np.asarray(st.argmax).reshape(-1)
        t = t.reshape(-1)
        keep = ~np.isnan(lp) & (am >= 0) & (t != ignore_index)
        conf = _native.cpu.calib_confidence_from_max_logprob(lp)
        return self.update(conf[keep], (am == t)[keep])

    def _add(self, other: _State) -> None:
        s = self._state
        s.count += other.count
        s.sums = _add128(s.sums, other.sums)
        if self._boot is not None:
            s.boot_bins = _add128(s.boot_bins, other.boot_bins)
            s.boot_totals = _add128(s.boot_totals, other.boot_totals)

    def _check_same(self, other: CalibrationAccumulator) -> None:
        if not isinstance(other, CalibrationAccumulator):
            raise TypeError(f"can only merge a CalibrationAccumulator, got {type(other).__name__}")
        if (
            self._binning != other._binning
            or self._n_bins != other._n_bins
            or not np.array_equal(self._edges, other._edges)
        ):
            raise ValueError("cannot merge accumulators with different bins")
        if self._eps != other._eps or self._boot != other._boot:
            raise ValueError("cannot merge accumulators with different eps or bootstrap settings")

    def merge(self, other: CalibrationAccumulator) -> CalibrationAccumulator:
        """Adds another accumulator's state into this one (exact); returns self."""
        self._check_same(other)
        self._flush_device()
        other._flush_device()
        self._add(other._state)
        self._weighted |= other._weighted
        self._position = max(self._position, other._position)
        return self

    def reset(self) -> None:
        self._dev = self._dev_edges = None
        self._dev_pairs = 0
        self._state = _State(self._state.count.size, 0 if self._boot is None else self._boot.n)
        self._weighted = False
        self._position = 0

    def compute(self) -> CalibrationStats:
        """The statistics of everything added so far (reads GPU state: synchronises)."""
        self._flush_device()
        s = self._state
        if self._binning != "quantile":
            return CalibrationStats(
                edges=self._edges,
                count=s.count,
                sums=s.sums,
                binning=self._binning,
                eps=self._eps,
                weighted=self._weighted,
                bootstrap=self._boot,
                boot_bins=s.boot_bins if self._boot else None,
                boot_totals=s.boot_totals if self._boot else None,
            )
        return self._compute_quantile()

    def _compute_quantile(self) -> CalibrationStats:
        s = self._state
        count = s.count
        n = int(count.sum())
        lower = self._edges[:-1]  # lower edge of each fine bin
        if n == 0:
            inner = np.empty(0)
        else:
            cum = np.cumsum(count)
            pos = np.array(
                [(j * n) // self._n_bins for j in range(1, self._n_bins)], dtype=np.int64
            )
            fine = np.searchsorted(cum, pos, side="right")
            cand = lower[fine]
            first = int(np.flatnonzero(count)[0])
            inner = np.unique(cand[cand > lower[first]])
        group = np.searchsorted(inner, lower, side="right")  # coarse bin of each fine bin
        m = inner.size + 1
        sums_int = [[0] * len(FIELDS) for _ in range(m)]
        counts = np.zeros(m, dtype=np.int64)
        nz = np.flatnonzero(count)
        fine_ints = _ints(s.sums[nz]) if nz.size else []
        for j, f in enumerate(nz.tolist()):
            g = int(group[f])
            counts[g] += count[f]
            row = sums_int[g]
            for k in range(len(FIELDS)):
                row[k] += fine_ints[j][k]
        return CalibrationStats(
            edges=np.concatenate([[0.0], inner, [1.0]]),
            count=counts,
            sums=_from_ints(sums_int),
            binning="quantile",
            eps=self._eps,
            weighted=self._weighted,
        )

    def to_dict(self) -> dict:
        """A JSON-ready dict of the exact state; :meth:`from_dict` restores it."""
        self._flush_device()
        s = self._state
        nz = np.flatnonzero(s.count).tolist()  # sparse: the fine grid is mostly empty
        d = {
            "format": "logcal.CalibrationAccumulator",
            "version": 1,
            "n_bins": self._n_bins,
            "binning": self._binning
            if isinstance(self._binning, str) and self._binning != "edges"
            else [float(e) for e in self._edges],
            "eps": self._eps,
            "weighted": self._weighted,
            "position": self._position,
            "bins": nz,
            "count": [int(s.count[b]) for b in nz],
            "sums": {f: [_ints(s.sums[b, i]) for b in nz] for i, f in enumerate(FIELDS)},
            "bootstrap": None,
        }
        if self._boot is not None:
            d["bootstrap"] = {
                "n_bootstrap": self._boot.n,
                "seed": self._boot.seed,
                "block": self._boot.block,
                "bins": {f: _ints(s.boot_bins[:, :, i]) for i, f in enumerate(BOOT_BIN_FIELDS)},
                "totals": {f: _ints(s.boot_totals[:, i]) for i, f in enumerate(BOOT_TOTAL_FIELDS)},
            }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationAccumulator:
        if d.get("format") != "logcal.CalibrationAccumulator" or d.get("version") != 1:
            raise ValueError("not a logcal.CalibrationAccumulator dict (format/version)")
        b = d.get("bootstrap")
        kwargs = (
            {}
            if b is None
            else {"n_bootstrap": b["n_bootstrap"], "seed": b["seed"], "bootstrap_block": b["block"]}
        )
        acc = cls(d["n_bins"], d["binning"], eps=d["eps"], **kwargs)
        s = acc._state
        bins = np.array(d["bins"], dtype=np.int64)
        s.count[bins] = np.array(d["count"], dtype=np.int64)
        for i, f in enumerate(FIELDS):
            if bins.size:
                s.sums[bins, i] = _from_ints(d["sums"][f]).reshape(bins.size, 2)
        if b is not None:
            n, nb = acc._boot.n, s.count.size
            for i, f in enumerate(BOOT_BIN_FIELDS):
                s.boot_bins[:, :, i] = _from_ints(b["bins"][f]).reshape(n, nb, 2)
            for i, f in enumerate(BOOT_TOTAL_FIELDS):
                s.boot_totals[:, i] = _from_ints(b["totals"][f]).reshape(n, 2)
        acc._weighted = bool(d["weighted"])
        acc._position = int(d["position"])
        return acc

    def __repr__(self) -> str:
        binning = self._binning if isinstance(self._binning, str) else "edges"
        return f"CalibrationAccumulator(n={self.n}, n_bins={self._n_bins}, binning={binning!r})"
