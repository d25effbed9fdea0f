"""CalibrationStats.spiegelhalter(): Spiegelhalter's z from the exact binned state, against
logcal.spiegelhalter and the float64 reference; weights and soft labels against the
definition; bit-identical under any split and merge, and through every encoding."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from logcal import reference
from logcal.calibration._fixed import FIELDS, SPIEGELHALTER_VAR, to_ints

UNDEFINED = "Spiegelhalter's z is undefined: every confidence is 0, 1/2 or 1 (zero variance)"


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.beta(4, 2, n)
    y = (rng.uniform(size=n) < c**1.3).astype(np.int64)
    return c, y


def by_definition(c, y, w=None):
    """z and p of the weighted definition, each sum correctly rounded (math.fsum)."""
    c, y = np.asarray(c, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.ones_like(c) if w is None else np.asarray(w, dtype=np.float64)
    num = math.fsum(w * (y - c) * (1 - 2 * c))
    var = math.fsum(w * c * (1 - c) * (1 - 2 * c) ** 2)
    z = num / math.sqrt(var)
    return z, math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "bins", [{"n_bins": 15}, {"n_bins": 7, "binning": "quantile"}, {"n_bins": 1}]
)
def test_against_spiegelhalter_and_reference(seed, bins):
    c, y = data(20_000, seed)
    z, p = logcal.calibration_stats(c, y, **bins).spiegelhalter()
    assert (z, p) == pytest.approx(logcal.spiegelhalter(c, y), rel=1e-12)
    assert (z, p) == pytest.approx(reference.spiegelhalter(c, y), rel=1e-10)


def test_float32_confidences_and_bool_correctness():
    c, y = data(5000, 3)
    c32 = c.astype(np.float32)
    z, p = logcal.calibration_stats(c32, y.astype(bool)).spiegelhalter()
    assert (z, p) == pytest.approx(logcal.spiegelhalter(c32, y), rel=1e-12)


def test_a_miscalibrated_model_is_detected():
    c, y = data(20_000, 4)
    z, p = logcal.calibration_stats(np.clip(c + 0.1, 0, 1), y).spiegelhalter()
    assert abs(z) > 10 and p < 1e-20  # overconfident: fewer right than the confidences claim
    calibrated = np.random.default_rng(5).uniform(size=c.size) < c
    z, p = logcal.calibration_stats(c, calibrated).spiegelhalter()
    assert abs(z) < 4 and p > 1e-4


def test_weights_and_soft_labels_follow_the_definition():
    c, y = data(10_000, 6)
    w = np.random.default_rng(7).uniform(0.1, 5.0, c.size)
    got = logcal.calibration_stats(c, y, weights=w).spiegelhalter()
    assert got == pytest.approx(by_definition(c, y, w), rel=1e-11)
    soft = np.clip(y + np.random.default_rng(8).normal(0, 0.2, c.size), 0, 1)
    assert logcal.calibration_stats(c, soft).spiegelhalter() == pytest.approx(
        by_definition(c, soft), rel=1e-11
    )
    # integer weights count samples: the same as repeating them
    k = np.random.default_rng(9).integers(1, 4, c.size)
    repeated = logcal.calibration_stats(np.repeat(c, k), np.repeat(y, k)).spiegelhalter()
    assert logcal.calibration_stats(c, y, weights=k.astype(float)).spiegelhalter() == (
        pytest.approx(repeated, rel=1e-12)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_merges_of_random_splits_are_bit_identical(seed):
    rng = np.random.default_rng(seed)
    c, y = data(30_000, seed + 10)
    w = rng.uniform(0.5, 2.0, c.size)
    for weights in (None, w):
        one = logcal.calibration_stats(c, y, n_bins=10, weights=weights)
        cuts = np.sort(rng.choice(np.arange(1, c.size), size=6, replace=False))
        parts = [
            logcal.calibration_stats(
                c[a:b], y[a:b], n_bins=10, weights=None if weights is None else weights[a:b]
            )
            for a, b in zip([0, *cuts], [*cuts, c.size])
        ]
        order = rng.permutation(len(parts))
        merged = parts[order[0]]
        for i in order[1:]:
            merged = merged.merge(parts[i])
        for field in FIELDS:
            assert merged.fixed_sums(field) == one.fixed_sums(field)
        assert merged.spiegelhalter() == one.spiegelhalter()  # the same bits
        acc = logcal.CalibrationAccumulator(n_bins=10)
        for a, b in zip([0, *cuts], [*cuts, c.size]):
            acc.update(c[a:b], y[a:b], weights=None if weights is None else weights[a:b])
        assert acc.compute().spiegelhalter() == one.spiegelhalter()


def test_encodings_keep_the_sum():
    c, y = data(3000, 11)
    s = logcal.calibration_stats(c, y, n_bins=8)
    assert "spiegelhalter_var" in s.to_dict()["sums"]
    for back in (
        logcal.CalibrationStats.from_dict(json.loads(json.dumps(s.to_dict()))),
        logcal.CalibrationStats.from_bytes(s.to_bytes()),
    ):
        assert back == s and back.spiegelhalter() == s.spiegelhalter()
    acc = logcal.CalibrationAccumulator(n_bins=8).update(c, y)
    state = acc._read()
    back = state.from_limbs(state.to_limbs() + state.to_limbs(), "logcal.CalibrationAccumulator")
    twice = [2 * v for v in to_ints(state.sums[:, SPIEGELHALTER_VAR])]
    assert to_ints(back.sums[:, SPIEGELHALTER_VAR]) == twice


def test_old_versions_are_refused_naming_the_version():
    s = logcal.calibration_stats(*data(100, 12), n_bins=4)
    d = s.to_dict()
    sums = {k: v for k, v in d["sums"].items() if k != "spiegelhalter_var"}
    old = {**d, "version": 3, "sums": sums}
    with pytest.raises(
        ValueError,
        match="^"
        + re.escape(
            "not a logcal.CalibrationStats dict of a version this logcal reads: version 3 is "
            "not supported (this logcal reads version 4)"
        )
        + "$",
    ):
        logcal.CalibrationStats.from_dict(old)


def test_undefined_when_every_confidence_is_0_half_or_1():
    c = np.array([0.0, 0.5, 1.0, 0.5, 1.0])
    y = np.array([0, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="^" + re.escape(UNDEFINED) + "$"):
        logcal.spiegelhalter(c, y)
    with pytest.raises(ValueError, match="^" + re.escape(UNDEFINED) + "$"):
        logcal.calibration_stats(c, y).spiegelhalter()
    with pytest.raises(ValueError, match="^" + re.escape(UNDEFINED) + "$"):
        logcal.calibration_stats(c, y, weights=np.full(5, 2.0)).spiegelhalter()


def test_no_samples_give_nan():
    z, p = logcal.CalibrationAccumulator(n_bins=5).compute().spiegelhalter()
    assert math.isnan(z) and math.isnan(p)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, 0.5, 1.0, 1e-300, 1 - 2**-53, 0.25, 2**-40]),
            st.floats(0.0, 1.0, allow_nan=False),
        ),
        min_size=1,
        max_size=60,
    ),
    st.data(),
)
def test_odd_inputs(cs, draw):
    c = np.array(cs)
    y = np.array(draw.draw(st.lists(st.integers(0, 1), min_size=c.size, max_size=c.size)))
    stats = logcal.calibration_stats(c, y, n_bins=3)
    var = c * (1 - c) * (1 - 2 * c) ** 2
    if not var.any():
        with pytest.raises(ValueError, match="^" + re.escape(UNDEFINED) + "$"):
            stats.spiegelhalter()
        return
    if var.sum() < 1e-10:  # below the resolution of the fixed point: nothing to compare
        return
    z, p = stats.spiegelhalter()
    assert (z, p) == pytest.approx(logcal.spiegelhalter(c, y), rel=1e-9, abs=1e-12)
