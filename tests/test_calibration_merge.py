"""Exact, mergeable state: chunked == one-shot and every merge order == one-shot, bit for bit;
serialisation; the accumulator's equal-mass bins; the bootstrap across chunks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import logcal
from logcal.calibration import _binning as C


def _data(seed: int, n: int, soft: bool = False, dtype=np.float64):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n).astype(dtype)
    c[::5] = np.round(c[::5], 1)  # edge values too
    y = rng.uniform(size=n) if soft else rng.uniform(size=n) < c
    w = rng.uniform(0, 4, n)
    return c, y, w


def _cuts(draw, n: int) -> list:
    k = draw(st.integers(0, min(n, 12)))
    cuts = sorted(set(draw(st.lists(st.integers(0, n), min_size=k, max_size=k))))
    return [0, *cuts, n]


@given(st.data())
def test_chunked_equals_one_shot_bit_for_bit(data):
    n = data.draw(st.integers(1, 3000))
    seed = data.draw(st.integers(0, 2**31))
    soft = data.draw(st.booleans())
    weighted = data.draw(st.booleans())
    boot = data.draw(st.sampled_from([0, 7]))
    binning = data.draw(st.sampled_from(["uniform", "edges"]))
    c, y, w = _data(seed, n, soft)
    w = w if weighted else None
    bins = [0, 0.05, 0.3, 0.3, 0.75, 1.0] if binning == "edges" else "uniform"
    kw = {"n_bins": 12, "binning": bins}
    boot_kw = {"n_bootstrap": boot, "seed": 5, "bootstrap_block": 16} if boot else {}
    one = logcal.calibration_stats(c, y, weights=w, **kw, **boot_kw)
    acc = logcal.CalibrationAccumulator(**kw, **boot_kw)
    cuts = _cuts(data.draw, n)
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.update(c[a:b], y[a:b], weights=None if w is None else w[a:b])
    assert acc.n == n and acc.position == n
    assert acc.compute() == one
    assert acc.compute().to_dict() == one.to_dict()


@given(st.data())
def test_every_merge_order_equals_one_shot(data):
    n = data.draw(st.integers(1, 2000))
    c, y, w = _data(data.draw(st.integers(0, 2**31)), n, data.draw(st.booleans()))
    boot = data.draw(st.sampled_from([0, 5]))
    boot_kw = {"n_bootstrap": boot, "seed": 1, "bootstrap_block": 8} if boot else {}
    one = logcal.calibration_stats(c, y, weights=w, n_bins=9, **boot_kw)
    cuts = _cuts(data.draw, n)
    parts = [
        logcal.calibration_stats(
            c[a:b], y[a:b], weights=w[a:b], n_bins=9, bootstrap_offset=a, **boot_kw
        )
        for a, b in zip(cuts[:-1], cuts[1:])
        if b > a
    ]
    # merge in a random order, as a random tree
    while len(parts) > 1:
        i = data.draw(st.integers(0, len(parts) - 1))
        a = parts.pop(i)
        j = data.draw(st.integers(0, len(parts) - 1))
        b = parts.pop(j)
        parts.append(a.merge(b) if data.draw(st.booleans()) else b + a)
    assert parts[0] == one


def test_accumulators_merge_in_any_order():
    c, y, w = _data(3, 5000)
    shards = [(a, min(a + 700, 5000)) for a in range(0, 5000, 700)]
    accs = []
    for a, b in shards:
        acc = logcal.CalibrationAccumulator(n_bins=20, n_bootstrap=6, seed=2, bootstrap_block=50)
        acc.update(c[a:b], y[a:b], weights=w[a:b], offset=a)  # each shard at its place
        accs.append(acc)
    one = logcal.calibration_stats(
        c, y, weights=w, n_bins=20, n_bootstrap=6, seed=2, bootstrap_block=50
    )
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(len(accs))
        total = logcal.CalibrationAccumulator.from_dict(accs[order[0]].to_dict())
        for k in order[1:]:
            total.merge(accs[k])
        assert total.compute() == one
        assert total.position == 5000


def test_merge_is_associative_and_commutative():
    parts = [logcal.calibration_stats(*_data(s, 400)[:2], n_bins=7) for s in range(3)]
    a, b, c = parts
    assert (a + b) + c == a + (b + c) == (c + a) + b == b + (c + a)


def test_threads_and_chunk_sizes_do_not_change_bits():
    c, y, _w = _data(4, 400_000, dtype=np.float32)
    logcal.set_num_threads(1)
    try:
        one = logcal.calibration_stats(c, y, n_bootstrap=4, seed=3, bootstrap_block=1000)
    finally:
        logcal.set_num_threads(0)
    two = logcal.calibration_stats(c, y, n_bootstrap=4, seed=3, bootstrap_block=1000)
    acc = logcal.CalibrationAccumulator(n_bootstrap=4, seed=3, bootstrap_block=1000)
    for a in range(0, c.size, 99_991):
        acc.update(c[a : a + 99_991], y[a : a + 99_991])
    assert one == two == acc.compute()


def test_json_round_trip_is_exact():
    c, y, w = _data(5, 3000, soft=True)
    s = logcal.calibration_stats(c, y, weights=w, n_bins=11, n_bootstrap=4, seed=9)
    back = logcal.CalibrationStats.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.ece() == s.ece() and back.interval() == s.interval()
    acc = logcal.CalibrationAccumulator(15, "quantile").update(c, y)
    back = logcal.CalibrationAccumulator.from_dict(json.loads(json.dumps(acc.to_dict())))
    assert back.compute() == acc.compute()
    acc2 = logcal.CalibrationAccumulator(binning=[0, 0.5, 1]).update(c, y)
    assert logcal.CalibrationAccumulator.from_dict(acc2.to_dict()).compute() == acc2.compute()


def test_fine_grid_is_exact_and_increasing():
    e = C.FINE_INNER
    assert e.size + 1 == C.FINE_BINS == 1858
    assert np.all(np.diff(e) > 0) and e[0] == 2.0**-30 and e[-1] == 1 - 2.0**-30
    from fractions import Fraction

    for v in e[::37]:  # every edge is an exact double: 2^e (1 + j/32), or 1 minus one
        f = Fraction(float(v))
        u = f if f <= Fraction(1, 2) else 1 - f
        assert (u.denominator & (u.denominator - 1)) == 0


@given(st.data())
def test_quantile_accumulator_is_chunking_invariant(data):
    n = data.draw(st.integers(1, 3000))
    c, y, _ = _data(data.draw(st.integers(0, 2**31)), n)
    c = np.concatenate([c, np.full(n // 3, 0.999)])  # a heavy tie near 1
    y = np.concatenate([y, np.ones(n // 3, bool)])
    acc = logcal.CalibrationAccumulator(10, "quantile")
    cuts = _cuts(data.draw, c.size)
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.update(c[a:b], y[a:b])
    s = acc.compute()
    whole = logcal.CalibrationAccumulator(10, "quantile").update(c, y).compute()
    assert s == whole
    assert s.binning == "quantile" and (s.count > 0).all() and s.n == c.size
    # the coarse bins are whole fine bins: the same as explicit edges on the data
    e = logcal.calibration_stats(c, y, binning=s.edges)
    assert np.array_equal(e.count, s.count) and e.to_dict()["sums"] == s.to_dict()["sums"]
    # edges are fine-grid edges, and equal values are never split
    assert set(s.edges[1:-1]).issubset(set(C.FINE_INNER))
    k = np.searchsorted(s.edges[1:-1], c, side="right")
    for v in np.unique(c):
        assert np.unique(k[c == v]).size == 1


def test_quantile_accumulator_bins_are_near_equal_mass():
    rng = np.random.default_rng(6)
    c = 1 - rng.exponential(1e-4, 100_000).clip(0, 1)  # LLM-like: all near 1
    y = rng.uniform(size=c.size) < c
    s = logcal.CalibrationAccumulator(10, "quantile").update(c, y).compute()
    assert s.n_bins == 10
    assert s.count.min() > 0.8 * c.size / 10 and s.count.max() < 1.2 * c.size / 10


def test_bootstrap_shards_need_offsets():
    c, y, _ = _data(7, 1000)
    one = logcal.calibration_stats(c, y, n_bootstrap=10, seed=4, bootstrap_block=1)
    good = logcal.calibration_stats(
        c[:600], y[:600], n_bootstrap=10, seed=4, bootstrap_block=1
    ) + logcal.calibration_stats(
        c[600:], y[600:], n_bootstrap=10, seed=4, bootstrap_block=1, bootstrap_offset=600
    )
    assert good == one
    # both at offset 0: they would share replicate weights, so the merge is refused
    with pytest.raises(ValueError, match=re.escape("positions [0, 400) of the bootstrap's")):
        logcal.calibration_stats(
            c[:600], y[:600], n_bootstrap=10, seed=4, bootstrap_block=1
        ) + logcal.calibration_stats(c[600:], y[600:], n_bootstrap=10, seed=4, bootstrap_block=1)


def test_merge_rejects_different_layouts():
    c, y, _ = _data(8, 100)
    a = logcal.calibration_stats(c, y, n_bins=10)
    with pytest.raises(ValueError, match="different bin edges"):
        a.merge(logcal.calibration_stats(c, y, n_bins=11))
    with pytest.raises(ValueError, match=re.escape("different eps (1e-12 and 1e-06)")):
        a.merge(logcal.calibration_stats(c, y, n_bins=10, eps=1e-6))
    with pytest.raises(ValueError, match="different bootstrap settings"):
        a.merge(logcal.calibration_stats(c, y, n_bins=10, n_bootstrap=2))
    with pytest.raises(TypeError, match="can only merge CalibrationStats"):
        a.merge(3)
    acc = logcal.CalibrationAccumulator(10)
    with pytest.raises(ValueError, match="different bins"):
        acc.merge(logcal.CalibrationAccumulator(12))
    with pytest.raises(ValueError, match="not available with binning='quantile'"):
        logcal.CalibrationAccumulator(10, "quantile", n_bootstrap=5)


def test_accumulator_empty_updates_and_errors():
    acc = logcal.CalibrationAccumulator()
    acc.update(np.array([]), np.array([], bool))
    assert acc.n == 0 and np.isnan(acc.compute().ece())
    c, y, _ = _data(9, 50)
    acc.update(c, y)
    before = acc.to_dict()
    bad = c.copy()
    bad[10] = 2.0
    with pytest.raises(ValueError, match=re.escape("confidence[10] = 2.0 is outside [0, 1]")):
        acc.update(bad, y)
    assert acc.to_dict() == before  # a rejected chunk leaves the state untouched
    acc.reset()
    assert acc.n == 0
