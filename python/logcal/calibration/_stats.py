"""Calibration statistics: the metrics, reliability rows and bootstrap intervals of a state."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from ._binning import units_spanned
from ._fixed import FIELDS, FIXED_ONE, ratio, to_float, to_ints
from ._state import STATS_FORMAT, CalibrationState

NORMS = ("l1", "l2", "max")
METRICS = ("ece", "mce", "rmsce", "brier", "nll")


class Preset(NamedTuple):
    """The bins and norm a paper or tool computes its calibration error with."""

    n_bins: int | None  # None: one bin per ``samples_per_bin`` samples
    binning: str
    norm: str
    samples_per_bin: int | None = None

    def bins_for(self, n: int) -> int:
        return self.n_bins if self.n_bins is not None else max(1, n // self.samples_per_bin)


# Each fixes n_bins, binning and norm, nothing else: the statistics are those of the same pass.
PRESETS = {
    # HELM (Liang et al. 2022): ECE over 10 equal-mass bins.
    "helm": Preset(10, "quantile", "l1"),
    # Humanity's Last Exam: RMS calibration error over equal-mass bins of about 100 samples.
    # Its reference code sums over all bins but the last (which it also widens to take the
    # remainder); here every sample counts, the last bin included.
    "hle": Preset(None, "quantile", "l2", samples_per_bin=100),
    # lm-polygraph's ExpectedCalibrationError: 10 uniform bins.
    "lm-polygraph": Preset(10, "uniform", "l1"),
    # MAPIE's top_label_ece: 50 uniform bins.
    "mapie": Preset(50, "uniform", "l1"),
    # torchmetrics' CalibrationError: 15 uniform bins.
    "torchmetrics": Preset(15, "uniform", "l1"),
    # scikit-learn's calibration_curve: 5 uniform bins.
    "sklearn": Preset(5, "uniform", "l1"),
}


def preset_arg(preset: Any) -> Preset:
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return PRESETS[preset]


def norm_arg(norm: Any) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of 'l1', 'l2', 'max', got {norm!r}")
    return norm


def _setting(name: str, doc: str) -> property:
    """A read-only attribute of the statistics' state."""
    return property(lambda self: getattr(self._state, name), doc=doc)


def _bootstrap_setting(name: str, doc: str) -> property:
    """A bootstrap setting of the statistics' state, None without bootstrap."""
    return property(
        lambda self: (
            None if self._state.bootstrap is None else getattr(self._state.bootstrap, name)
        ),
        doc=doc,
    )


class ReliabilityBin(NamedTuple):
    """One row of :meth:`CalibrationStats.reliability`."""

    lower: float
    upper: float
    count: int
    weight: float
    confidence: float  # mean confidence (NaN when empty)
    accuracy: float  # mean correctness (NaN when empty)
    gap: float  # accuracy - confidence


class BrierDecomposition(NamedTuple):
    """Murphy's decomposition of the Brier score over bins, from
    :meth:`CalibrationStats.brier_decomposition`:
    ``brier = reliability - resolution + uncertainty + within_bin``."""

    brier: float
    reliability: float  # sum_b w_b (conf_b - acc_b)^2
    resolution: float  # sum_b w_b (acc_b - acc)^2
    uncertainty: float  # mean (y - acc)^2 = acc (1 - acc) for 0/1 correctness
    within_bin: float  # the within-bin variance of c minus twice its covariance with y


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
    ``w y``, ``w (c - y)^2``, ``w c y``, ``w y^2``, ``w nll`` and ``w c (1 - c)(1 - 2c)^2``
    (``w`` the weight, 1 without weights; ``y`` the correctness; ``sum w c^2`` is derived,
    see :meth:`fixed_sums`). Each
    sample's term is a pure function of its bits (products in IEEE double arithmetic, then
    truncated), and integer sums do not depend on
    their order: the statistics, and every metric computed from them, are bitwise identical
    for any chunking, merge order and number of threads. Error bound: per sample at most one
    double rounding (relative 2**-53) plus 2**-64 absolute; confidences and 0/1 correctness
    are exact up to the 2**-64 truncation. For 10**12 samples the mean confidence of a bin is
    off by less than 1.2e-16 relative plus 5.4e-20 (weights, nonzero, are at least 2**-24, so
    that is at most 2**-40 of a sample's weight). Capacity: values below 2**64 (1.8e19) per sum,
    e.g. 10**12 samples with weight x value up to 1.8e7 each; an add or merge that would pass
    it raises OverflowError.

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

    __slots__ = ("_cache", "_preset", "_state")

    def __init__(self, state: CalibrationState, preset: str | None = None) -> None:
        self._state = state.copy(frozen=True)
        self._cache: dict = {}
        if preset is not None:
            preset_arg(preset)
        self._preset = preset

    @property
    def preset(self) -> str | None:
        """The named convention of :func:`calibration_stats` (``preset=``) these statistics
        follow, or None; it sets the default ``norm`` of :meth:`ece`."""
        return self._preset

    # -- fields --

    edges = _setting("edges", "Bin edges ``[n_bins + 1]`` (float64).")
    binning = _setting(
        "binning", """``"uniform"``, ``"quantile"`` or ``"edges"`` (given by the caller)."""
    )
    count = _setting("count", "Samples per bin (int64).")
    eps = _setting("eps", "The NLL clip: outcome probabilities are taken in ``[eps, 1 - eps]``.")
    weighted = _setting(
        "weighted", "Whether per-sample weights were given (to any part, for merged statistics)."
    )
    seed = _bootstrap_setting("seed", "The bootstrap's seed (None without bootstrap).")
    bootstrap_block = _bootstrap_setting(
        "block",
        "Samples per bootstrap unit (1: the classic per-sample bootstrap; None: units that grow "
        "along the stream, the default of :class:`CalibrationAccumulator`).",
    )

    @property
    def n_bins(self) -> int:
        return int(self._state.count.shape[0])

    @property
    def n(self) -> int:
        """Total number of samples."""
        return int(self._state.count.sum())

    @property
    def n_bootstrap(self) -> int:
        return 0 if self._state.bootstrap is None else self._state.bootstrap.n

    def fixed_sums(self, field: str) -> list:
        """The exact sums of ``field`` per bin, as integers in units of 2**-64.

        ``field`` is one of ``"weight"`` (sum w), ``"conf"`` (sum w c), ``"correct"``
        (sum w y), ``"sq_error"`` (sum w (c - y)^2), ``"conf_correct"`` (sum w c y),
        ``"correct_sq"`` (sum w y^2), ``"nll"`` (sum w nll), ``"spiegelhalter_var"``
        (sum w c (1 - c)(1 - 2c)^2, see :meth:`spiegelhalter`), or the derived ``"conf_sq"``
        = sq_error + 2 conf_correct - correct_sq (sum w c^2 up to the per-sample roundings).
        """
        if field == "conf_sq":
            sq, cy, yy = (self.fixed_sums(f) for f in ("sq_error", "conf_correct", "correct_sq"))
            return [a + 2 * b - c for a, b, c in zip(sq, cy, yy)]
        if field not in FIELDS:
            raise ValueError(f"field must be one of {(*FIELDS, 'conf_sq')}, got {field!r}")
        key = ("ints", field)
        if key not in self._cache:
            self._cache[key] = to_ints(self._state.sums[:, FIELDS.index(field)])
        return self._cache[key]

    def _float_field(self, field: str) -> np.ndarray:
        return np.array([ratio(v, FIXED_ONE) for v in self.fixed_sums(field)], dtype=np.float64)

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
        return np.array([ratio(v, d) for v, d in zip(self.fixed_sums(field), w)])

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean confidence per bin (NaN for an empty bin)."""
        return self._mean("conf")

    @property
    def accuracy(self) -> np.ndarray:
        """Mean correctness per bin (NaN for an empty bin)."""
        return self._mean("correct")

    # -- metrics --

    def ece(self, norm: str | None = None, debias: bool = False) -> float:
        """Expected calibration error over the bins.

        ``norm`` defaults to the preset's (``"l2"`` for ``"hle"``), else ``"l1"``.
        ``norm="l1"``: ``sum_b w_b |acc_b - conf_b|`` (``w_b`` = bin weight / total);
        ``"l2"``: ``sqrt(sum_b w_b (acc_b - conf_b)^2)`` (RMSCE); ``"max"``:
        ``max_b |acc_b - conf_b|`` over non-empty bins (MCE). ``debias=True`` (``"l2"`` only)
        is the debiased estimator of Kumar, Liang & Ma (2019), "Verified uncertainty
        calibration": ``sqrt(max(0, sum_b w_b [(acc_b - conf_b)^2 - acc_b (1 - acc_b) /
        (n_b - 1)]))`` with bins of fewer than two samples contributing 0, as in their
        reference code (torchmetrics' private variant keeps those bins' plug-in term).
        """
        if norm is None:
            norm = "l1" if self._preset is None else PRESETS[self._preset].norm
        norm = norm_arg(norm)
        if debias and norm != "l2":
            raise ValueError("debias=True is defined for norm='l2' (Kumar et al. 2019) only")
        if debias and self._state.weighted:
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
        for y, c, w, n in zip(Y, C, W, self._state.count.tolist()):
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
        return ratio(sum(self.fixed_sums("sq_error")), sum(self.fixed_sums("weight")))

    def nll(self) -> float:
        """Mean negative log-likelihood ``-[y log c + (1 - y) log(1 - c)]`` with ``c`` and
        ``1 - c`` each clipped to ``[eps, 1 - eps]``."""
        return ratio(sum(self.fixed_sums("nll")), sum(self.fixed_sums("weight")))

    def brier_decomposition(self) -> BrierDecomposition:
        """Murphy's (1973) decomposition of the Brier score over these bins.

        With bin weights ``w_b`` (fractions of the total), bin means ``conf_b``, ``acc_b`` and
        the overall accuracy ``acc``: ``reliability = sum_b w_b (conf_b - acc_b)^2``,
        ``resolution = sum_b w_b (acc_b - acc)^2``, ``uncertainty = mean (y - acc)^2`` and
        ``within_bin = mean_b [var_b(c) - 2 cov_b(c, y)]`` (Stephenson et al. 2008: the part
        binning hides, zero when every bin holds one confidence). Every term is computed in
        rational arithmetic from the exact sums, so ``brier = reliability - resolution +
        uncertainty + within_bin`` holds exactly before each term is rounded once.

        Examples
        --------
        >>> import numpy as np, logcal
        >>> s = logcal.calibration_stats(np.array([0.9, 0.8, 0.3, 0.95]), np.array([1, 0, 0, 1]),
        ...                              n_bins=2)
        >>> d = s.brier_decomposition()
        >>> round(d.reliability - d.resolution + d.uncertainty + d.within_bin, 12) == round(
        ...     d.brier, 12)
        True
        """
        W, C, Y = (self.fixed_sums(f) for f in ("weight", "conf", "correct"))
        CC, CY, YY = (self.fixed_sums(f) for f in ("conf_sq", "conf_correct", "correct_sq"))
        total = sum(W)
        if total == 0:
            nan = float("nan")
            return BrierDecomposition(nan, nan, nan, nan, nan)
        one = FIXED_ONE  # the sums are in units of 2**-64; products of two carry 2**-128
        acc = Fraction(sum(Y), total)
        rel = res = within = Fraction(0)
        for w, c, y, cc, cy in zip(W, C, Y, CC, CY):
            if w == 0:
                continue
            rel += Fraction((c - y) ** 2, w)
            res += w * (Fraction(y, w) - acc) ** 2
            within += Fraction(cc * w - c * c, w * one) - 2 * Fraction(cy * w - c * y, w * one)
        unc = Fraction(sum(YY), one) - total * acc**2 / one
        brier = Fraction(sum(self.fixed_sums("sq_error")), total)
        return BrierDecomposition(
            float(brier),
            float(rel / total),
            float(res / total),
            float(unc * one / total),
            float(within * one / total),
        )

    def spiegelhalter(self) -> tuple[float, float]:
        """Spiegelhalter's (1986) test of calibration from the exact sums: ``(z, p_value)``.

        ``z = sum w (y - c)(1 - 2c) / sqrt(sum w c (1 - c)(1 - 2c)^2)`` over all samples
        (``w`` the weights, 1 without), standard normal when the confidences are calibrated; the
        p-value is two-sided. The numerator is an exact integer combination of the sums
        (``y - c - 2 c y + 2 c^2``, with ``sum w c^2`` derived as in :meth:`fixed_sums`), the
        denominator the sum ``"spiegelhalter_var"``; so ``z`` is the same bits for any split,
        order and merge of the data, as every metric here. Each sample's terms carry one
        double rounding (relative 2**-53) and the 2**-64 truncation of the fixed point: ``z``
        agrees with :func:`logcal.spiegelhalter` to about 1e-12 unless nearly all the variance
        comes from confidences within 2**-30 of 0, 1/2 or 1, whose variance terms are below
        the 2**-64 resolution. NaN for statistics of no samples.

        Examples
        --------
        >>> import numpy as np, logcal
        >>> c, y = np.array([0.9, 0.8, 0.3, 0.6]), np.array([1, 1, 0, 0])
        >>> z, p = logcal.calibration_stats(c, y, n_bins=2).spiegelhalter()
        >>> round(z, 4), round(p, 4)
        (-0.5025, 0.6153)
        """
        W, C, Y, SQ, CY, YY, V = (
            sum(self.fixed_sums(f))
            for f in (
                "weight",
                "conf",
                "correct",
                "sq_error",
                "conf_correct",
                "correct_sq",
                "spiegelhalter_var",
            )
        )
        if W == 0:
            return float("nan"), float("nan")
        if V == 0:
            raise ValueError(
                "Spiegelhalter's z is undefined: every confidence is 0, 1/2 or 1 (zero variance)"
            )
        # sum w (y - c)(1 - 2c) = Y - C - 2 CY + 2 sum w c^2, sum w c^2 = SQ + 2 CY - YY;
        # in units of 2**-64, so z = num / sqrt(V 2**64).
        num = Y - C + 2 * SQ + 2 * CY - 2 * YY
        z = float(Fraction(num, FIXED_ONE)) / math.sqrt(float(Fraction(V, FIXED_ONE)))
        return z, math.erfc(abs(z) / math.sqrt(2))

    def metric(self, name: str, **kwargs: Any) -> float:
        """A metric by name: ``"ece"``, ``"mce"``, ``"rmsce"``, ``"brier"`` or ``"nll"``."""
        if name not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {name!r}")
        return getattr(self, name)(**kwargs)

    def reliability(self) -> list:
        """Per-bin rows (:class:`ReliabilityBin`), ready to print or plot."""
        conf, acc, weight = self.mean_confidence, self.accuracy, self.weight
        return [
            ReliabilityBin(
                float(self._state.edges[b]),
                float(self._state.edges[b + 1]),
                int(self._state.count[b]),
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
        if self._state.bootstrap is None:
            raise ValueError("these statistics have no bootstrap: pass n_bootstrap > 0")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if metric == "mce":
            metric, kwargs = "ece", {"norm": "max"}
        elif metric == "rmsce":
            metric, kwargs = "ece", {"norm": "l2", **kwargs}
        bins = to_float(self._state.boot_bins)  # [B, n, 3]
        tot = to_float(self._state.boot_totals)  # [B, 2]: sq_error, nll
        W, C, Y = bins[..., 0], bins[..., 1], bins[..., 2]
        total = W.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if metric == "brier":
                return tot[:, 0] / total
            if metric == "nll":
                return tot[:, 1] / total
            norm = norm_arg(kwargs.get("norm", "l1"))
            debias = bool(kwargs.get("debias", False))
            if debias and (norm != "l2" or self._state.weighted):
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
        block = self._state.bootstrap.block
        units = units_spanned(self._state.ranges, block)
        if units < 100:
            of = f" of {block} samples" if block is not None else ""
            warnings.warn(
                f"the bootstrap resampled only about {units} units{of}; "
                "its interval is unreliable (pass a smaller bootstrap_block)",
                stacklevel=2,
            )
        lo, hi = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def intervals(self, level: float = 0.95) -> dict:
        """``{metric: (lower, upper)}`` for ece, mce, rmsce, brier and nll."""
        return {m: self.interval(m, level) for m in METRICS}

    # -- merging and serialisation --

    def merge(self, other: CalibrationStats) -> CalibrationStats:
        """The statistics of both datasets (exact: associative and commutative, bit for bit).

        Both must have the same bins, ``eps`` and bootstrap settings. For the bootstrap to
        stay valid the two parts must use different resampling units (``bootstrap_offset``).
        """
        if not isinstance(other, CalibrationStats):
            raise TypeError(f"can only merge CalibrationStats, got {type(other).__name__}")
        state = self._state.copy()
        state.merge(other._state, "statistics")
        return CalibrationStats(state, self._preset if self._preset == other._preset else None)

    __add__ = merge

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalibrationStats):
            return NotImplemented
        return self._state == other._state

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict:
        """A JSON-ready dict of the exact state (Python ints for the fixed-point sums), the
        encoding of :meth:`CalibrationAccumulator.to_dict`, with ``"preset"`` when there is
        one; :meth:`from_dict` restores it."""
        d = self._state.to_dict(STATS_FORMAT)
        if self._preset is not None:
            d["preset"] = self._preset
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationStats:
        """Inverse of :meth:`to_dict`."""
        state = CalibrationState.from_dict(d, STATS_FORMAT)
        return cls(state, d.get("preset"))

    def to_bytes(self) -> bytes:
        """The exact state as versioned, checksummed bytes; :meth:`from_bytes` restores it.

        Examples
        --------
        >>> import numpy as np, logcal
        >>> s = logcal.calibration_stats(np.array([0.9, 0.3]), np.array([1, 0]), n_bins=4)
        >>> logcal.CalibrationStats.from_bytes(s.to_bytes()) == s
        True
        """
        return self._state.to_bytes(STATS_FORMAT)

    @classmethod
    def from_bytes(cls, data: bytes) -> CalibrationStats:
        """Inverse of :meth:`to_bytes`; corrupt, truncated or foreign bytes raise ValueError."""
        return cls(CalibrationState.from_bytes(data, STATS_FORMAT))

    def __repr__(self) -> str:
        n = self.n
        ece_s = f"{self.ece():.6g}" if n else "nan"
        boot = f", n_bootstrap={self.n_bootstrap}" if self._state.bootstrap is not None else ""
        if self._preset is not None:
            boot += f", preset={self._preset!r}"
        return (
            f"CalibrationStats(n={n}, n_bins={self.n_bins}, binning={self._state.binning!r}, "
            f"ece={ece_s}{boot})"
        )
