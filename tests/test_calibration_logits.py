"""CalibrationAccumulator.update_from_logits on the CPU, and the exponential it relies on."""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from logcal import _native


def test_exp_det_is_within_one_ulp_of_numpy():
    g = np.random.default_rng(0)
    x = np.concatenate(
        [
            g.uniform(-745, 709, 200_000),
            -g.uniform(0, 30, 200_000),
            -np.ldexp(g.uniform(0, 1, 10_000), -g.integers(0, 60, 10_000)),
            [0.0, -0.0, -1e-300, -745.1, 709.7],
        ]
    )
    got = np.array([_native.cpu.calib_exp_det(float(v)) for v in x[:2000]])
    ref = np.exp(x[:2000])
    assert np.all(np.abs(got - ref) <= np.spacing(ref))
    conf = _native.cpu.calib_confidence_from_max_logprob(np.ascontiguousarray(x))
    ref = np.exp(x)
    assert np.all(np.abs(conf - ref) <= np.spacing(ref))
    assert _native.cpu.calib_exp_det(-np.inf) == 0.0
    assert np.isnan(_native.cpu.calib_exp_det(np.nan))
    assert _native.cpu.calib_exp_det(0.0) == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_from_logits_is_update_of_its_pairs(dtype):
    g = np.random.default_rng(1)
    x = (g.standard_normal((500, 50)) * 2).astype(dtype)
    x[3] = np.nan
    x[4] = -np.inf
    t = g.integers(0, 50, 500)
    t[::7] = -100
    acc = logcal.CalibrationAccumulator(n_bins=10).update_from_logits(x, t)
    st = logcal.token_stats(x)
    lp = np.ascontiguousarray(st.max_logprob)
    keep = ~np.isnan(lp) & (t != -100)
    conf = _native.cpu.calib_confidence_from_max_logprob(lp)
    ref = logcal.CalibrationAccumulator(n_bins=10).update(conf[keep], (st.argmax == t)[keep])
    assert acc.to_dict() == ref.to_dict()
    assert acc.n == int(keep.sum())
    assert acc.compute() == ref.compute()
    # the same pairs with numpy's exp land in the same bins (the confidences differ by < 1 ulp)
    approx = logcal.calibration_stats(
        np.exp(lp.astype(np.float64))[keep], (st.argmax == t)[keep], n_bins=10
    )
    np.testing.assert_array_equal(acc.compute().count, approx.count)


def test_update_from_logits_with_temperature_and_ignore_index():
    g = np.random.default_rng(2)
    x = g.standard_normal((64, 9)).astype(np.float32)
    t = g.integers(0, 9, 64)
    t[:5] = 3
    acc = logcal.CalibrationAccumulator(n_bins=5).update_from_logits(
        x, t, temperature=2.0, ignore_index=3
    )
    st = logcal.token_stats(x, temperature=2.0)
    keep = t != 3
    conf = _native.cpu.calib_confidence_from_max_logprob(np.ascontiguousarray(st.max_logprob))
    ref = logcal.CalibrationAccumulator(n_bins=5).update(conf[keep], (st.argmax == t)[keep])
    assert acc.to_dict() == ref.to_dict()
