"""smooth_ece: relplot 1.0.3's smECE to rounding (when installed), merging, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import logcal


def data(n, power, seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    return c, (rng.uniform(size=n) < c**power).astype(int)


@pytest.mark.parametrize(("n", "power", "seed"), [(5000, 2.0, 0), (300, 1.5, 1), (20000, 1.0, 2)])
def test_matches_relplot(n, power, seed):
    relplot = pytest.importorskip("relplot")
    c, y = data(n, power, seed)
    value, sigma = logcal.smooth_ece(c, y, return_sigma=True)
    want, want_sigma = relplot.smECE(c, y.astype(float), return_width=True)
    assert sigma == want_sigma
    if sigma >= 0.01:
        assert value == pytest.approx(want, rel=1e-9)
    else:
        assert value == pytest.approx(want, rel=2.5e-5 / sigma)
    assert logcal.smooth_ece(c, y, sigma=0.05) == pytest.approx(
        relplot.smECE_sigma(c, y.astype(float), 0.05), rel=1e-9
    )


def test_calibrated_is_small_and_miscalibrated_is_large():
    c, y = data(20000, 1.0, 3)
    assert logcal.smooth_ece(c, y) < 0.02
    c, y = data(20000, 3.0, 3)
    assert logcal.smooth_ece(c, y) > 0.1


def test_merge_equals_one_shot():
    c, y = data(4000, 1.5, 4)
    a, b = logcal.SmoothECE(), logcal.SmoothECE()
    a.update(c[:1500], y[:1500])
    b.update(c[1500:], y[1500:])
    assert b.merge(a).compute() == pytest.approx(logcal.smooth_ece(c, y), rel=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match=r"^confidence must not be empty$"):
        logcal.smooth_ece(np.array([]), np.array([]))
    with pytest.raises(ValueError, match=r"^confidence\[0\] = nan is not in \[0, 1\]$"):
        logcal.smooth_ece(np.array([np.nan]), np.array([1]))
    with pytest.raises(ValueError, match=r"^correct\[1\] = 0.5 is not 0 or 1$"):
        logcal.smooth_ece(np.array([0.1, 0.2]), np.array([1, 0.5]))
    with pytest.raises(ValueError, match=r"sigma must be a number in \(0, 1\], got 0"):
        logcal.smooth_ece(np.array([0.1]), np.array([1]), sigma=0)
    with pytest.raises(ValueError, match="no samples: call update first"):
        logcal.SmoothECE().compute()
