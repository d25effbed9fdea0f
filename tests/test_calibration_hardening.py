"""Calibration state: exact or refused. The fixed-point sums never wrap, weights are never
rounded away, concurrent updates are never lost, bootstrap streams never overlap, corrupt state
is never accepted, and the bins are capped."""

from __future__ import annotations

import re

import numpy as np
import pytest

import logcal
from logcal import reference as R

CAPACITY = re.escape("would exceed the capacity of the fixed-point sums (values below 2**64)")


# --- item 1: the 128-bit sums never wrap ------------------------------------------------------


def _heaviest(n: int):
    """n samples that each add the largest NLL term: c = 1, wrong, weight 2**30 - 1."""
    return np.ones(n), np.zeros(n, dtype=bool), np.full(n, 2.0**30 - 1)


def test_accumulator_sums_stay_exact_or_raise_overflow_error_at_capacity():
    acc = logcal.CalibrationAccumulator(n_bins=1, eps=1e-300)
    c, y, w = _heaviest(10**6)
    for _ in range(24):  # 24 * 10**6 * (2**30 - 1) * 690.78 < 2**64
        acc.update(c, y, weights=w)
    exact = -np.log(1e-300)
    assert acc.compute().nll() == pytest.approx(exact, rel=1e-15)
    before = acc.to_dict()
    with pytest.raises(OverflowError, match="^the 'nll' sum " + CAPACITY + "$"):
        acc.update(c, y, weights=w)
    assert acc.to_dict() == before  # all or nothing
    other = logcal.CalibrationAccumulator(n_bins=1, eps=1e-300).update(c, y, weights=w, offset=0)
    with pytest.raises(OverflowError, match="^the 'nll' sum " + CAPACITY + "$"):
        acc.merge(other)
    assert acc.to_dict() == before


def test_one_call_past_capacity_raises_overflow_error():
    n = 26_000_000  # the sum of one call would wrap: the kernel's adds are split and checked
    with pytest.raises(OverflowError, match="^the 'nll' sum " + CAPACITY + "$"):
        logcal.calibration_stats(
            np.ones(n, np.float32),
            np.zeros(n, bool),
            n_bins=1,
            eps=1e-300,
            weights=np.full(n, 2.0**30 - 1),
        )


def test_a_call_split_below_capacity_is_bitwise_one_call():
    # the bound of 3 * 10**6 heavy samples with a bootstrap (x20) is above capacity: the call
    # is split into parts, which must add up to the sums of separate chunks, bit for bit
    c, y, w = _heaviest(3 * 10**6)
    c[::3] = 0.25
    kw = dict(n_bins=2, eps=1e-300, n_bootstrap=2, seed=3, bootstrap_block=1000)
    whole = logcal.calibration_stats(c, y, weights=w, **kw)
    a = logcal.calibration_stats(c[:1234567], y[:1234567], weights=w[:1234567], **kw)
    b = logcal.calibration_stats(
        c[1234567:], y[1234567:], weights=w[1234567:], bootstrap_offset=1234567, **kw
    )
    assert whole == a + b


# --- item 2: small weights are refused, not rounded away --------------------------------------


@pytest.mark.parametrize("w", [1e-18, 1e-19, 1e-20, 5e-324, 2.0**-25])
def test_weights_below_the_resolution_are_refused(w):
    message = (
        f"weights[0] = {w!r} is nonzero but below 2**-24, too small for the fixed-point sums; "
        "scale the weights up (the statistics depend only on their ratios)"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        logcal.calibration_stats([0.2, 0.9], [1, 0], n_bins=2, weights=[w, w])
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        logcal.CalibrationAccumulator(2).update(
            np.array([0.2, 0.9]), np.array([1, 0]), weights=[w, w]
        )


@pytest.mark.parametrize("scale", [2.0**-23, 1e-6, 1.0, 2.0**29])  # weights in [0.5, 1)
def test_metrics_do_not_depend_on_the_scale_of_the_weights(scale):
    rng = np.random.default_rng(0)
    c = rng.uniform(size=1000)
    y = rng.uniform(size=1000) < c
    w = rng.uniform(0.5, 1.0, 1000)
    w[::10] = 0.0  # zero weights are allowed: they leave a sample out
    s = logcal.calibration_stats(c, y, n_bins=5, weights=w * scale)
    r = R.calibration_stats(c, y, n_bins=5, weights=w)
    # the 2**-64 resolution is at most 2**-40 of a weight
    for metric in ("ece", "mce", "brier", "nll"):
        assert getattr(s, metric)() == pytest.approx(getattr(r, metric)(), rel=1e-11, abs=1e-14)
