"""Calibration benchmarks: logcal against the numpy reference and the peers, in one run.

Run:  python -m pytest benchmarks/bench_calibration.py   (benchmarks/conftest.py prints the
      ratios of the medians at the end and saves them in benchmarks/results/last_run.json)

Sizes are those of the issue: calibration_stats on 2^26 (confidence, correct) pairs with 15
bins; compat functions on 10^7 pairs; the bootstrap with B = 200. CPU kernels use 2 threads.
Slow baselines run one round (after one warm-up), logcal five.
Confidences are float32 Beta(5, 2) draws (the LLM case: a float32 softmax) and correctness is
bool, P(correct) = c^1.5; the compat inputs are float64, where the 1e-12 agreement holds.
"""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from logcal import reference

N_STATS = 2**26
N_COMPAT = 10**7
N_BINS = 15
STATS = "calibration_stats 15 bins 2^26 f32"
ECE = "ece only (count, sum c, sum y) 2^26"
BOOT = "bootstrap B=200 cost, 2^26"
CURVE = "calibration_curve 1e7 f64"
TM = "binary_calibration_error 1e7 f64"


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    c = rng.beta(5, 2, N_STATS).astype(np.float32)
    y = rng.uniform(size=N_STATS) < c.astype(np.float64) ** 1.5
    return c, y


@pytest.fixture(scope="module")
def pairs64():
    rng = np.random.default_rng(1)
    c = rng.beta(5, 2, N_COMPAT)
    y = (rng.uniform(size=N_COMPAT) < c**1.5).astype(np.int64)
    return c, y


def _numpy_three_bincounts(c, y):
    """The floor of a numpy implementation: bin index and three bincounts (count, sum c,
    sum y), no exact edge rule, no squared error or NLL."""
    c64 = c.astype(np.float64)
    k = np.minimum((c64 * N_BINS).astype(np.intp), N_BINS - 1)
    return (
        np.bincount(k, minlength=N_BINS),
        np.bincount(k, weights=c64, minlength=N_BINS),
        np.bincount(k, weights=y.astype(np.float64), minlength=N_BINS),
    )


def test_stats_logcal(timed, pairs):
    s = timed(STATS, "logcal", lambda: logcal.calibration_stats(*pairs, n_bins=N_BINS))
    assert s.n == N_STATS


def test_stats_numpy_reference(timed, pairs):
    r = timed(
        STATS,
        "numpy reference (exact)",
        lambda: reference.calibration_stats(*pairs, n_bins=N_BINS),
        rounds=1,
    )
    s = logcal.calibration_stats(*pairs, n_bins=N_BINS)
    assert s.ece() == pytest.approx(r.ece(), rel=1e-9) and s.nll() == pytest.approx(
        r.nll(), rel=1e-9
    )


def test_ece_logcal(timed, pairs):
    """logcal.ece: the kernel keeps only count, sum c and sum y -- the work of the three
    bincounts below, with the exact bin rule."""
    e = timed(ECE, "logcal", lambda: logcal.ece(*pairs, n_bins=N_BINS))
    assert e == logcal.calibration_stats(*pairs, n_bins=N_BINS).ece()


def test_stats_numpy_three_bincounts(timed, pairs):
    timed(STATS, "numpy 3 bincounts (float)", lambda: _numpy_three_bincounts(*pairs), rounds=1)


def test_ece_numpy_three_bincounts(timed, pairs):
    timed(ECE, "numpy 3 bincounts (float)", lambda: _numpy_three_bincounts(*pairs), rounds=1)


def test_stats_plain_for_bootstrap(timed, pairs):
    timed(BOOT, "logcal", lambda: logcal.calibration_stats(*pairs, n_bins=N_BINS))


def test_stats_bootstrap_200(timed, pairs):
    """The ratio printed is the cost of the bootstrap: its time over a plain call's."""
    s = timed(
        BOOT,
        "with n_bootstrap=200",
        lambda: logcal.calibration_stats(*pairs, n_bins=N_BINS, n_bootstrap=200, seed=0),
        rounds=3,
    )
    assert s.n_bootstrap == 200 and s.bootstrap_block == 4096


def test_calibration_curve_logcal(timed, pairs64):
    from logcal.compat.sklearn import calibration_curve

    c, y = pairs64
    timed(CURVE, "logcal", lambda: calibration_curve(y, c, n_bins=N_BINS))


def test_calibration_curve_sklearn(timed, pairs64):
    sk = pytest.importorskip("sklearn.calibration")
    from logcal.compat.sklearn import calibration_curve

    c, y = pairs64
    theirs = timed(
        CURVE, "scikit-learn", lambda: sk.calibration_curve(y, c, n_bins=N_BINS), rounds=1
    )
    ours = calibration_curve(y, c, n_bins=N_BINS)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_binary_calibration_error_logcal(timed, pairs64):
    torch = pytest.importorskip("torch")
    from logcal.compat.torchmetrics import binary_calibration_error

    c, y = (torch.from_numpy(a) for a in pairs64)
    timed(TM, "logcal", lambda: binary_calibration_error(c, y, n_bins=N_BINS))


def test_binary_calibration_error_torchmetrics(timed, pairs64):
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    from logcal.compat.torchmetrics import binary_calibration_error

    c, y = (torch.from_numpy(a) for a in pairs64)
    theirs = timed(
        TM, "torchmetrics", lambda: tmf.binary_calibration_error(c, y, n_bins=N_BINS), rounds=1
    )
    assert torch.equal(binary_calibration_error(c, y, n_bins=N_BINS), theirs)
