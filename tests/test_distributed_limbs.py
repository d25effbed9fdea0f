"""The summable view of the state: limbs summed element-wise == merge, bit for bit, over random
partitions; bad limb arrays refused; the torchmetrics Metric classes on one process."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchmetrics.classification as tmc
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from logcal.calibration._fixed import FixedSums, from_ints
from logcal.calibration._state import ACCUMULATOR_FORMAT
from logcal.compat.torchmetrics import BinaryCalibrationError, MulticlassCalibrationError

SETTINGS = {
    "uniform": {"n_bins": 12},
    "edges": {"binning": [0, 0.05, 0.3, 0.3, 0.75, 1.0]},
    "quantile": {"n_bins": 7, "binning": "quantile"},
    "bootstrap": {"n_bins": 6, "n_bootstrap": 5, "seed": 3},
}


def _data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    c[::5] = np.round(c[::5], 1)
    return c, rng.uniform(size=n) < c, rng.uniform(0, 4, n)


def _parts(draw, n: int) -> list:
    k = draw(st.integers(0, 6))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k, max_size=k)))
    return list(zip([0, *cuts], [*cuts, n]))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_summed_limbs_are_the_merge_bit_for_bit(data):
    n = data.draw(st.integers(0, 2000))
    name = data.draw(st.sampled_from(sorted(SETTINGS)))
    weighted = data.draw(st.booleans()) and name != "quantile"
    c, y, w = _data(data.draw(st.integers(0, 2**31)), n)
    parts = []
    for begin, end in _parts(data.draw, n):
        acc = logcal.CalibrationAccumulator(**SETTINGS[name])
        acc.update(
            c[begin:end], y[begin:end], weights=w[begin:end] if weighted else None, offset=begin
        )
        parts.append(acc._read())
    data.draw(st.randoms()).shuffle(parts)
    merged = parts[0].copy()
    for p in parts[1:]:
        merged.merge(p, "accumulators")
    total = sum(p.to_limbs() for p in parts)
    summed = parts[0].from_limbs(
        total, ACCUMULATOR_FORMAT, position=merged.position, ranges=merged.ranges
    )
    assert summed == merged
    assert summed.to_bytes(ACCUMULATOR_FORMAT) == merged.to_bytes(ACCUMULATOR_FORMAT)
    one = logcal.CalibrationAccumulator(**SETTINGS[name])
    one.update(c, y, weights=w if weighted else None)
    assert summed.same_sums(one._read())


def test_limbs_are_32_bit_and_normalise_carries():
    s = FixedSums(2, 1)
    s.count[:] = [3, 2**62]
    s.sums[...] = from_ints([[2**128 - 1] * 8, [2**64] * 8])
    s.boot_bins[...] = from_ints(2**100)
    limbs = s.to_limbs()
    assert limbs.dtype == np.int64 and limbs.min() >= 0 and limbs.max() < 2**32
    assert FixedSums.from_limbs(limbs, 2, 1).same_sums(s)
    half = FixedSums(2, 1)
    half.count[:] = [1, 2**61]
    half.sums[...] = from_ints([[2**127 - 1] * 8, [2**63] * 8])
    both = FixedSums.from_limbs(half.to_limbs() + half.to_limbs(), 2, 1)
    assert both.count.tolist() == [2, 2**62]
    assert np.array_equal(both.sums, from_ints([[2**128 - 2] * 8, [2**64] * 8]))


def test_a_sum_past_the_capacity_raises_like_merge():
    s = FixedSums(1)
    s.count[:] = 1
    s.sums[0, 3] = from_ints(2**127)
    with pytest.raises(OverflowError, match=re.escape("the 'sq_error' sum would exceed")):
        FixedSums.from_limbs(s.to_limbs() * 2, 1)
    s.count[:] = 2**62
    s.sums[0, 3] = 0
    with pytest.raises(OverflowError, match=re.escape("the sample count of a bin would exceed")):
        FixedSums.from_limbs(s.to_limbs() * 2, 1)


def test_foreign_limbs_are_refused():
    state = logcal.CalibrationAccumulator(n_bins=4).update(np.array([0.5]), np.array([1]))._read()
    limbs = state.to_limbs()
    with pytest.raises(
        ValueError,
        match=r"limbs must be an int64 array of shape \(138,\) for these settings, got int64 of shape \(137,\)",
    ):
        state.from_limbs(limbs[:-1], ACCUMULATOR_FORMAT)
    with pytest.raises(ValueError, match=r"limbs must be an int64 array .* got float64"):
        state.from_limbs(limbs.astype(float), ACCUMULATOR_FORMAT)
    bad = limbs.copy()
    bad[5] = -1
    with pytest.raises(
        ValueError, match=re.escape("limbs must be >= 0 (a sum of to_limbs arrays)")
    ):
        state.from_limbs(bad, ACCUMULATOR_FORMAT)
    bad = limbs.copy()
    bad[0] = 0
    with pytest.raises(ValueError, match=re.escape("limbs hold 0 parts (0 weighted)")):
        state.from_limbs(bad, ACCUMULATOR_FORMAT)
    bad = limbs.copy()
    bad[2 + 4 * 2 + 2 * 32] += 1  # bin 2's weight: a sum that one sample cannot make
    with pytest.raises(
        ValueError, match=r"^limbs: a bin's weight sum, .* is not what its 1 samples add up to"
    ):
        state.from_limbs(bad, ACCUMULATOR_FORMAT)
    bad = limbs.copy()
    bad[2 + 4 * 2 + 32] = 1  # bin 1 holds no sample
    with pytest.raises(
        ValueError, match=re.escape("limbs: a bin with no samples has nonzero sums")
    ):
        state.from_limbs(bad, ACCUMULATOR_FORMAT)


# --- the Metric classes on one process ---


def _binary(seed: int, n: int, dtype):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g, dtype=dtype)
    p[::7] = torch.round(p[::7] * 10) / 10
    p[::50] = 1.0  # torchmetrics' phantom bin
    return p, (torch.rand(n, generator=g, dtype=dtype) < p).long()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_binary_metric_matches_torchmetrics(dtype, norm):
    p, y = _binary(0, 1500, dtype)
    y[::13] = -1
    mine = BinaryCalibrationError(n_bins=10, norm=norm, ignore_index=-1)
    theirs = tmc.BinaryCalibrationError(n_bins=10, norm=norm, ignore_index=-1)
    for i in range(0, 1500, 400):
        mine.update(p[i : i + 400], y[i : i + 400])
        theirs.update(p[i : i + 400], y[i : i + 400])
    a, b = mine.compute(), theirs.compute()
    assert a.dtype == b.dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert abs(float(a) - float(b)) <= tol
    # the batches do not matter: one update gives the same bits
    one = BinaryCalibrationError(n_bins=10, norm=norm, ignore_index=-1)
    one.update(p, y)
    assert torch.equal(one.limbs, mine.limbs) and torch.equal(one.compute(), a)


def test_binary_metric_detects_logits_per_update_and_keeps_the_l2_zero_quirk():
    logits = torch.tensor([-3.0, 0.5, 2.0, 4.0])
    y = torch.tensor([0, 1, 1, 0])
    mine, theirs = BinaryCalibrationError(n_bins=4), tmc.BinaryCalibrationError(n_bins=4)
    for m in (mine, theirs):
        m.update(logits, y)
        m.update(torch.tensor([0.2, 0.9]), torch.tensor([0, 1]))
    assert abs(float(mine.compute()) - float(theirs.compute())) <= 1e-7
    zero = BinaryCalibrationError(n_bins=2, norm="l2")
    zero.update(torch.tensor([1.0, 0.0]), torch.tensor([1, 0]))
    assert zero.compute().dtype == torch.int64 and int(zero.compute()) == 0


@pytest.mark.parametrize("norm", ["l1", "max"])
def test_multiclass_metric_matches_torchmetrics(norm):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(600, 5, generator=g) * 2
    t = torch.randint(0, 5, (600,), generator=g)
    mine = MulticlassCalibrationError(5, n_bins=8, norm=norm)
    theirs = tmc.MulticlassCalibrationError(5, n_bins=8, norm=norm)
    for i in range(0, 600, 250):
        mine.update(x[i : i + 250], t[i : i + 250])
        theirs.update(x[i : i + 250], t[i : i + 250])
    assert mine.compute().dtype == torch.float32
    assert abs(float(mine.compute()) - float(theirs.compute())) <= 1e-6


def test_metric_forward_reset_and_bad_input():
    p, y = _binary(2, 200, torch.float64)
    m = BinaryCalibrationError(n_bins=5)
    batch = m(p[:100], y[:100])  # forward: the batch's value, and the batch added
    m(p[100:], y[100:])
    one = BinaryCalibrationError(n_bins=5)
    one.update(p[:100], y[:100])
    assert torch.equal(batch, one.compute())
    one.update(p[100:], y[100:])
    assert torch.equal(m.compute(), one.compute())
    m.reset()
    assert int(m.limbs.abs().sum()) == 0
    with pytest.raises(
        ValueError, match="Expected argument `n_bins` to be an integer larger than 0, but got 0"
    ):
        BinaryCalibrationError(n_bins=0)
    with pytest.raises(
        ValueError,
        match="Expected argument `num_classes` to be an integer larger than 1, but got 1",
    ):
        MulticlassCalibrationError(1)
    with pytest.raises(RuntimeError, match="Detected the following values in `target`"):
        m.update(torch.tensor([0.5]), torch.tensor([2]))
    with pytest.raises(ValueError, match="confidence"):
        m.update(torch.tensor([float("nan")]), torch.tensor([1]))
