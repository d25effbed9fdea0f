"""Calibration benchmarks: logcal against the numpy reference and the peers, in one run.

Run:  python -m pytest benchmarks/bench_calibration.py -s -p no:cacheprovider
      (not --benchmark-only, which would skip the last test, the one printing the ratios;
      add --benchmark-json=out.json to keep the numbers)

Sizes are those of the issue: calibration_stats on 2^26 (confidence, correct) pairs with 15
bins; compat functions on 10^7 pairs; the bootstrap with B = 200. CPU kernels use 2 threads.
Slow baselines run one round, logcal three; the last test prints the ratios of the medians.
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
_TIMES: dict = {}


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    logcal.set_num_threads(2)
    yield
    logcal.set_num_threads(0)


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


def _run(benchmark, key, fn, rounds):
    result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    _TIMES[key] = benchmark.stats.stats.median
    return result


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


@pytest.mark.benchmark(group="calibration_stats 2^26")
def test_stats_logcal(benchmark, pairs):
    s = _run(benchmark, "stats", lambda: logcal.calibration_stats(*pairs, n_bins=N_BINS), 5)
    assert s.n == N_STATS


@pytest.mark.benchmark(group="calibration_stats 2^26")
def test_stats_numpy_reference(benchmark, pairs):
    r = _run(benchmark, "stats_ref", lambda: reference.calibration_stats(*pairs, n_bins=N_BINS), 1)
    s = logcal.calibration_stats(*pairs, n_bins=N_BINS)
    assert s.ece() == pytest.approx(r.ece(), rel=1e-9) and s.nll() == pytest.approx(
        r.nll(), rel=1e-9
    )


@pytest.mark.benchmark(group="calibration_stats 2^26")
def test_ece_logcal(benchmark, pairs):
    """logcal.ece: the kernel keeps only count, sum c and sum y -- the work of the three
    bincounts below, with the exact bin rule."""
    e = _run(benchmark, "ece", lambda: logcal.ece(*pairs, n_bins=N_BINS), 5)
    assert e == logcal.calibration_stats(*pairs, n_bins=N_BINS).ece()


@pytest.mark.benchmark(group="calibration_stats 2^26")
def test_stats_numpy_three_bincounts(benchmark, pairs):
    _run(benchmark, "stats_3bc", lambda: _numpy_three_bincounts(*pairs), 1)


@pytest.mark.benchmark(group="calibration_stats 2^26")
def test_stats_bootstrap_200(benchmark, pairs):
    s = _run(
        benchmark,
        "stats_boot",
        lambda: logcal.calibration_stats(*pairs, n_bins=N_BINS, n_bootstrap=200, seed=0),
        3,
    )
    assert s.n_bootstrap == 200 and s.bootstrap_block == 4096


@pytest.mark.benchmark(group="calibration_curve 1e7")
def test_calibration_curve_logcal(benchmark, pairs64):
    from logcal.compat.sklearn import calibration_curve

    c, y = pairs64
    _run(benchmark, "curve", lambda: calibration_curve(y, c, n_bins=N_BINS), 5)


@pytest.mark.benchmark(group="calibration_curve 1e7")
def test_calibration_curve_sklearn(benchmark, pairs64):
    sk = pytest.importorskip("sklearn.calibration")
    from logcal.compat.sklearn import calibration_curve

    c, y = pairs64
    theirs = _run(benchmark, "curve_sk", lambda: sk.calibration_curve(y, c, n_bins=N_BINS), 1)
    ours = calibration_curve(y, c, n_bins=N_BINS)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.benchmark(group="binary_calibration_error 1e7")
def test_binary_calibration_error_logcal(benchmark, pairs64):
    torch = pytest.importorskip("torch")
    from logcal.compat.torchmetrics import binary_calibration_error

    c, y = (torch.from_numpy(a) for a in pairs64)
    _run(benchmark, "tm", lambda: binary_calibration_error(c, y, n_bins=N_BINS), 5)


@pytest.mark.benchmark(group="binary_calibration_error 1e7")
def test_binary_calibration_error_torchmetrics(benchmark, pairs64):
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    from logcal.compat.torchmetrics import binary_calibration_error

    torch.set_num_threads(2)
    c, y = (torch.from_numpy(a) for a in pairs64)
    theirs = _run(
        benchmark, "tm_peer", lambda: tmf.binary_calibration_error(c, y, n_bins=N_BINS), 1
    )
    assert torch.equal(binary_calibration_error(c, y, n_bins=N_BINS), theirs)


def test_print_ratios():
    """Ratios of the medians above (one run; printed with -s, and in the captured output)."""
    t = _TIMES
    lines = []

    def ratio(name, slow, fast, target, kind="x faster"):
        if slow in t and fast in t:
            lines.append(f"{name}: {t[slow] / t[fast]:.1f} {kind} (target {target})")

    ratio("calibration_stats vs numpy reference", "stats_ref", "stats", ">= 25")
    ratio("calibration_stats vs numpy 3 bincounts", "stats_3bc", "stats", "(floor, info)")
    ratio("ece (count, sum c, sum y) vs numpy 3 bincounts", "stats_3bc", "ece", "(same work)")
    ratio("calibration_curve vs scikit-learn", "curve_sk", "curve", ">= 20")
    ratio("binary_calibration_error vs torchmetrics", "tm_peer", "tm", ">= 10")
    if "stats_boot" in t and "stats" in t:
        lines.append(f"bootstrap B=200 / plain: {t['stats_boot'] / t['stats']:.2f}x (target <= 3)")
    for k, v in sorted(t.items()):
        lines.append(f"  median {k}: {v * 1e3:.1f} ms")
    print("\n" + "\n".join(lines))
