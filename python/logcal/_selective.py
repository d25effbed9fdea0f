"""Selective prediction: how well a confidence signal separates right answers from wrong ones.

The way LLM uncertainty papers score a confidence signal (Xiong et al. 2024, Lyu et al. 2025,
HELM's selective accuracy): AUROC, the risk-coverage curve and its area (AURC), and accuracy
when only the most confident answers are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _native
from ._arrays import host_only, view, wrap
from ._record import Record
from ._sequence import _first

__all__ = ["SelectiveStats", "selective"]

DEFAULT_COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class SelectiveStats(Record):
    """Selective-prediction metrics from :func:`selective`: an immutable record.

    Fields: ``auroc``, ``aurc``, ``e_aurc``, ``auarc``, ``prr``, ``auprc_errors`` and
    ``auprc_successes`` (Python floats); the risk-coverage curve ``threshold``, ``coverage``,
    ``risk`` (arrays ``[G]``, one entry per distinct confidence, most confident first);
    ``coverages`` and ``accuracy`` (arrays ``[m]``); ``n`` and ``n_correct`` (ints).
    The record is also a read-only mapping.
    """

    __slots__ = ()
    auroc: float
    aurc: float
    e_aurc: float
    auarc: float
    prr: float
    auprc_errors: float
    auprc_successes: float
    threshold: Any
    coverage: Any
    risk: Any
    coverages: Any
    accuracy: Any
    n: int
    n_correct: int
    _FIELDS = (
        "auroc",
        "aurc",
        "e_aurc",
        "auarc",
        "prr",
        "auprc_errors",
        "auprc_successes",
        "threshold",
        "coverage",
        "risk",
        "coverages",
        "accuracy",
        "n",
        "n_correct",
    )


def optimal_aurc(n: int, n_errors: int) -> float:
    """The AURC of a perfect ranking (every error less confident than every right answer):
    ``(1/n) sum_{k > n - E} (k - (n - E)) / k`` for ``E`` errors in ``n`` answers."""
    right = n - n_errors
    # sum_{k=right+1}^{n} (1 - right / k), the harmonic tail summed pairwise by numpy
    tail = np.sum(1.0 / np.arange(right + 1, n + 1, dtype=np.float64)) if n_errors else 0.0
    return float((n_errors - right * tail) / n)


def _average_precision(hits: np.ndarray, counts: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` over groups of tied scores, best first:
    ``sum_j (R_j - R_{j-1}) P_j`` with ``P_j``, ``R_j`` the precision and recall of the
    groups up to j. NaN without positives. Exact integer counts in, one float sum out."""
    cum_hits = np.cumsum(hits)
    total = cum_hits[-1]
    if total == 0:
        return float("nan")
    return float(np.sum(hits * (cum_hits / np.cumsum(counts))) / total)


def rejection_metrics(coverage: np.ndarray, risk: np.ndarray, aurc: float, n: int) -> dict:
    """E-AURC, AUARC, PRR and both AUPRCs from the risk-coverage curve and the AURC.

    The curve holds, per group of tied confidences (most confident first), the fraction of
    answers at or above it and the share of those that are wrong; as both are ratios of
    integers below 2**51 they are read back exactly as counts.
    """
    cum_n = np.rint(np.asarray(coverage, dtype=np.float64) * n)
    cum_wrong = np.rint(np.asarray(risk, dtype=np.float64) * cum_n)
    group_n = np.diff(cum_n, prepend=0.0)
    group_wrong = np.diff(cum_wrong, prepend=0.0)
    n_errors = int(cum_wrong[-1])
    error_rate = n_errors / n
    best = optimal_aurc(n, n_errors)
    # Random rejection keeps the error rate at every coverage, so its AURC is the error rate;
    # PRR is the share of the gap between random and perfect rejection that the signal closes.
    gap = error_rate - best
    return {
        "e_aurc": aurc - best,
        "auarc": 1.0 - aurc,
        "prr": (error_rate - aurc) / gap if gap > 0 else float("nan"),
        "auprc_errors": _average_precision(group_wrong[::-1], group_n[::-1]),
        "auprc_successes": _average_precision(group_n - group_wrong, group_n),
    }


def _correct(correct: Any, n: int, func: str) -> np.ndarray:
    arr = host_only(view(correct, "correct"), "correct", func)
    if arr.shape != (n,):
        raise ValueError(f"correct must have the shape of confidence ({n},), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"correct must be an array of bools, integers in {{0, 1}} or floats in {{0, 1}}, "
            f"got dtype {arr.dtype}"
        )
    bad = (arr != 0) & (arr != 1)  # NaN is bad too
    if bad.any():
        i = _first(bad)
        raise ValueError(
            f"correct[{i}] = {arr[i]} is not 0 or 1: selective needs each answer to be right (1) "
            f"or wrong (0)"
        )
    return (arr != 0).view(np.uint8)


def _coverages(coverages: Any) -> np.ndarray:
    try:
        cov = np.asarray(coverages, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"coverages must be a sequence of numbers, got {coverages!r}") from exc
    if cov.ndim > 1:
        raise ValueError(f"coverages must be a number or a 1-D sequence, got shape {cov.shape}")
    cov = np.ascontiguousarray(cov.reshape(-1))
    bad = ~((cov > 0) & (cov <= 1))
    if bad.any():
        i = _first(bad)
        raise ValueError(f"coverages[{i}] = {cov[i]} is outside (0, 1]")
    return cov


def selective(
    confidence: Any, correct: Any, *, coverages: Sequence[float] = DEFAULT_COVERAGES
) -> SelectiveStats:
    """AUROC, risk-coverage curve, AURC and accuracy at given coverages of a confidence signal.

    Parameters
    ----------
    confidence : float array ``[N]``
        Any score where higher means more confident (a probability, a sequence log-probability,
        a negative entropy...); only its order matters. float32 or float64 (16-bit floats are
        upcast); ``±inf`` allowed, NaN is an error.
    correct : array ``[N]``
        Whether each answer is right: bools, integers in {0, 1} or floats in {0, 1}.
    coverages : sequence of floats in (0, 1]
        Fractions of the most confident answers at which to report accuracy.

    Returns
    -------
    SelectiveStats
        - ``auroc``: probability that a right answer is more confident than a wrong one, ties
          counting one half (the Mann-Whitney statistic; equals scikit-learn's
          ``roc_auc_score(correct, confidence)``). NaN when all answers are right or all wrong.
        - ``threshold``, ``coverage``, ``risk``: the risk-coverage curve, one point per distinct
          confidence t, most confident first: the fraction of answers with confidence >= t, and
          the fraction of those that are wrong. Tied answers enter together.
        - ``aurc``: area under the risk-coverage curve, as Geifman & El-Yaniv (2017) define it:
          the mean over k = 1..N of the risk of the k most confident answers. Where confidences
          tie, the k most confident are not defined, so the risk is averaged over every order of
          the tied answers (the expected errors grow linearly through a tied group). Multiply by
          1000 for the "AURC x 1000" of Xiong et al.
        - ``coverages`` and ``accuracy``: accuracy among the ``c * N`` most confident answers
          for each coverage c, with the same averaging over ties (and the answer at the boundary
          counted fractionally when ``c * N`` is not whole), so it is continuous in c.
        - ``e_aurc``: excess AURC (Geifman, Uziel & El-Yaniv 2019, "Bias-reduced uncertainty
          estimation for deep neural classifiers", after the AURC of Geifman & El-Yaniv 2017):
          ``aurc`` minus the AURC of a perfect ranking of the same answers (all errors least
          confident), ``(1/N) sum_{k > N - E} (k - N + E) / k`` for ``E`` errors; the paper's
          closed form ``r + (1 - r) ln(1 - r)`` (``r = E / N``) is its limit for large ``N``.
        - ``auarc``: area under the accuracy-rejection curve, the mean over k of the accuracy
          of the k most confident answers, ties averaged as for ``aurc``: ``1 - aurc``.
        - ``prr``: prediction rejection ratio as lm-polygraph computes it (Malinin et al.
          2021; Fadeeva et al. 2023): ``(auarc - auarc_random) / (auarc_oracle -
          auarc_random)`` with the oracle's perfect ranking and random rejection, whose
          expected accuracy is the overall accuracy at every coverage; 1 for a perfect signal,
          0 for chance. lm-polygraph breaks ties by position, here they are averaged. NaN when
          all answers are right or all wrong.
        - ``auprc_errors`` and ``auprc_successes``: average precision, as scikit-learn's
          ``average_precision_score`` (``sum_j (R_j - R_{j-1}) P_j`` over distinct scores),
          of detecting the wrong answers by low confidence
          (``average_precision_score(1 - correct, -confidence)``) and the right answers by
          high confidence (``average_precision_score(correct, confidence)``). NaN when there
          is nothing to detect.
        - ``n`` and ``n_correct``.

        These five come from the risk-coverage curve, whose points are read back as exact
        counts (exact below 2**51 answers).

        ``auroc`` and ``aurc`` are Python floats; the arrays are float64 (``threshold`` has the
        dtype of ``confidence``), numpy, or torch for torch ``confidence``.

    Notes
    -----
    The C++ core sorts integer keys of the confidences with a parallel radix sort (linear time)
    and counts with exact integers; results are the same run to run.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> conf = np.array([0.9, 0.8, 0.8, 0.6, 0.3])
    >>> right = np.array([1, 1, 0, 1, 0])
    >>> s = logcal.selective(conf, right, coverages=[0.2, 1.0])
    >>> s.auroc
    0.75
    >>> s.coverage, s.risk
    (array([0.2, 0.6, 0.8, 1. ]), array([0.        , 0.33333333, 0.25      , 0.4       ]))
    >>> s.accuracy
    array([1. , 0.6])
    """
    func = "selective"
    host = view(confidence, "confidence")
    conf = host_only(host, "confidence", func)
    if host.dtype == "bfloat16":
        conf = (conf.astype(np.uint32) << 16).view(np.float32)
    elif host.dtype == "float16":
        conf = conf.astype(np.float32)
    elif host.dtype not in ("float32", "float64"):
        raise TypeError(f"confidence must be a floating-point array, got dtype {host.dtype}")
    if conf.ndim != 1:
        raise ValueError(f"confidence must be 1-D [N], got shape {conf.shape}")
    n = conf.shape[0]
    if n == 0:
        raise ValueError("confidence must not be empty")
    nan = np.isnan(conf)
    if nan.any():
        raise ValueError(f"confidence[{_first(nan)}] is NaN")
    corr = _correct(correct, n, func)
    cov = _coverages(coverages)

    th_dtype = "float64" if conf.dtype == np.float64 else "float32"
    threshold = np.empty(n, dtype=th_dtype)
    coverage = np.empty(n, dtype=np.float64)
    risk = np.empty(n, dtype=np.float64)
    accuracy = np.empty(cov.size, dtype=np.float64)
    auroc, aurc, n_groups = _native.cpu.selective(
        confidence=view(conf, "confidence"),
        correct=view(corr, "correct"),
        coverages=view(cov, "coverages"),
        threshold=view(threshold, "threshold"),
        coverage=view(coverage, "coverage"),
        risk=view(risk, "risk"),
        accuracy=view(accuracy, "accuracy"),
    )

    def trim(a: np.ndarray) -> np.ndarray:
        # A copy when there are far fewer groups than answers, so the rest of the buffer is freed.
        return a[:n_groups].copy() if n_groups < n // 2 else a[:n_groups]

    fam = host.family
    return SelectiveStats(
        auroc=float(auroc),
        aurc=float(aurc),
        **rejection_metrics(coverage[:n_groups], risk[:n_groups], float(aurc), n),
        threshold=wrap(trim(threshold), th_dtype, fam),
        coverage=wrap(trim(coverage), "float64", fam),
        risk=wrap(trim(risk), "float64", fam),
        coverages=wrap(cov.copy(), "float64", fam),
        accuracy=wrap(accuracy, "float64", fam),
        n=int(n),
        n_correct=int(np.count_nonzero(corr)),
    )
