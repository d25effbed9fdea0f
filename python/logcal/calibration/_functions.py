"""The public calibration functions: statistics, the ECE family, Brier score, NLL, top-label
pairs and the classwise ECE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._arrays import int_arg, wrap
from ._binning import (
    DEFAULT_EPS,
    binning_plan,
    bootstrap_args,
    eps_arg,
    n_bins_arg,
    offset_arg,
)
from ._fixed import MAX_COUNT
from ._inputs import bad_label, bad_prob, pairs, probs_labels
from ._kernel import add_pairs_checked, gpu_stats, gpu_unsupported, is_cuda, top_label_rows
from ._state import CalibrationState
from ._stats import CalibrationStats, norm_arg, preset_arg


def calibration_stats(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int | None = None,
    binning: str | Sequence[float] | None = None,
    preset: str | None = None,
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
        Number of bins, 1 to 2**17 (the bins cost memory and time whether or not samples land
        in them); default 15.
    binning : {"uniform", "quantile"} or array_like of float
        Exact uniform bins (the default), equal-mass bins from the data, or explicit
        non-decreasing edges from 0 to 1 (bins ``[e_k, e_{k+1})``, the last one closed;
        ``n_bins`` is then ignored).
    preset : str, optional
        The bins and norm of a paper's or tool's calibration error, recorded as
        ``stats.preset`` (and in :meth:`~CalibrationStats.to_dict`); the norm becomes the
        default of :meth:`~CalibrationStats.ece`. ``"helm"``: 10 equal-mass bins, L1 (HELM).
        ``"hle"``: equal-mass bins of about 100 samples (``N // 100`` bins, at least one), L2
        (Humanity's Last Exam's RMS calibration error; its reference code leaves the last bin
        out of the sum, here every bin counts). ``"lm-polygraph"``: 10 uniform bins, L1.
        ``"mapie"``: 50 uniform bins, L1 (MAPIE's ``top_label_ece``). ``"torchmetrics"``: 15
        uniform bins, L1. ``"sklearn"``: 5 uniform bins (``calibration_curve``), L1. A preset
        fixes ``n_bins`` and ``binning``: passing either with another value is an error.
    weights : array of the same shape, optional
        Per-sample weights, finite and ``< 2**30``, either 0 or at least ``2**-24`` (the
        fixed-point sums resolve ``2**-64``: at most ``2**-40`` of such a weight; scale smaller
        weights up, the statistics depend only on their ratios).
    eps : float
        NLL clip (default 1e-12).
    n_bootstrap, seed : int
        Poisson bootstrap replicates computed in the same pass (``n_bootstrap`` times the
        bins at most 2**26), and their seed (``0 <= seed < 2**64``); see
        :meth:`CalibrationStats.interval`.
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
    >>> h = logcal.calibration_stats(conf, np.array([0, 1, 0, 1, 1]), preset="helm")
    >>> h.preset, h.binning
    ('helm', 'quantile')
    """
    if preset is not None:
        n_bins, binning = _preset_bins(preset, n_bins, binning, confidence)
    stats = _statistics(
        confidence,
        correct,
        func="calibration_stats",
        light=False,
        n_bins=15 if n_bins is None else n_bins,
        binning="uniform" if binning is None else binning,
        weights=weights,
        eps=eps,
        n_bootstrap=n_bootstrap,
        seed=seed,
        bootstrap_block=bootstrap_block,
        bootstrap_offset=bootstrap_offset,
    )
    return stats if preset is None else CalibrationStats(stats._state, preset)


def _preset_bins(preset: Any, n_bins: Any, binning: Any, confidence: Any) -> tuple:
    """The n_bins and binning ``preset`` fixes, refusing explicit arguments that differ."""
    p = preset_arg(preset)
    fixed = p.n_bins
    if fixed is None:  # bins of a fixed size: their number follows the data
        fixed = p.bins_for(int(np.prod(np.shape(confidence))))
    for name, given, want in (("n_bins", n_bins, fixed), ("binning", binning, p.binning)):
        if given is not None and not (isinstance(given, type(want)) and given == want):
            raise ValueError(
                f"preset={preset!r} fixes {name}={want!r}, got {name}={given!r}: "
                f"pass one or the other"
            )
    return fixed, p.binning


def _statistics(
    confidence: Any,
    correct: Any,
    *,
    func: str,
    light: bool,
    n_bins: Any,
    binning: Any,
    weights: Any,
    eps: Any = DEFAULT_EPS,
    n_bootstrap: Any = 0,
    seed: Any = 0,
    bootstrap_block: Any = None,
    bootstrap_offset: Any = 0,
) -> CalibrationStats:
    """:func:`calibration_stats` for ``func``; ``light``: only the binned sums (no squared
    error, no NLL), for the ECE family."""
    n_bins = n_bins_arg(n_bins)
    eps = eps_arg(eps)
    if is_cuda(confidence):
        if int_arg(n_bootstrap, "n_bootstrap") != 0:
            raise gpu_unsupported(func, "n_bootstrap > 0")
        offset = offset_arg(bootstrap_offset)
        name, edges, sums = gpu_stats(
            confidence,
            correct,
            n_bins=n_bins,
            binning=binning,
            weights=weights,
            eps=eps,
            light=light,
            func=func,
        )
        boot, weighted, n = None, False, int(sums.count.sum())
    else:
        p = pairs(confidence, correct, weights, func)
        boot, offset = bootstrap_args(
            n_bootstrap, seed, bootstrap_block, bootstrap_offset, p.conf.size, streaming=False
        )
        name, edges, _ = binning_plan(binning, n_bins, p.conf)
        sums, weighted, n = None, p.weights is not None, p.conf.size
        if offset + n > MAX_COUNT:
            raise ValueError(f"bootstrap_offset + samples must be below 2**63, got {offset + n}")
    state = CalibrationState(
        binning=name,
        n_bins=edges.size - 1,
        edges=edges,
        eps=eps,
        bootstrap=boot,
        weighted=weighted,
        position=offset + n,
        ranges=((offset, offset + n),),
    )
    if sums is None:
        add_pairs_checked(
            p, state, inner_edges=state.inner_edges, eps=eps, boot=boot, offset=offset, light=light
        )
    else:
        state.add(sums)
    return CalibrationStats(state)


def _binned(
    confidence: Any, correct: Any, n_bins: Any, binning: Any, weights: Any, func: str
) -> CalibrationStats:
    """Statistics with only the binned sums (no squared error, no NLL): for the ECE family."""
    return _statistics(
        confidence, correct, func=func, light=True, n_bins=n_bins, binning=binning, weights=weights
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
    norm = norm_arg(norm)
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
    p, lab, family = probs_labels(probs, labels, "top_label", check_values=False)
    k = p.shape[-1]
    rows = p.reshape(-1, k)  # a view unless the leading axes cannot be merged
    # uint64 labels of 2^63 and more wrap to negative int64s, which the kernel rejects
    lab64 = np.ascontiguousarray(lab.reshape(-1)).astype(np.int64, copy=False)
    conf = np.empty(rows.shape[0], dtype=p.dtype)
    correct = np.empty(rows.shape[0], dtype=bool)
    first_bad_prob, first_bad_label = top_label_rows(rows, lab64, conf, correct)
    if first_bad_prob >= 0:
        bad_prob(p, first_bad_prob)
    if first_bad_label >= 0:
        bad_label(lab, first_bad_label, k)
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
    n_bins = n_bins_arg(n_bins)
    norm = norm_arg(norm)
    p, lab, _ = probs_labels(probs, labels, "classwise_ece")
    k = p.shape[-1]
    p2 = p.reshape(-1, k)
    lab1 = lab.reshape(-1)
    total = 0.0
    for cls in range(k):
        total += _binned(p2[:, cls], lab1 == cls, n_bins, binning, None, "classwise_ece").ece(
            norm=norm
        )
    return total / k
