"""calibration_stats and the ECE family against the float64 reference, the exact bin rule,
the fixed-point core, the bootstrap, and the bad-input messages."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import logcal
from logcal import reference as R
from logcal._native import cpu

RTOL = 1e-12  # float64 reference vs exact fixed-point sums: both within ~1e-15 of the truth


# --- strategies -------------------------------------------------------------------------------


@st.composite
def confidences(draw, n_bins: int | None = None, min_size: int = 1, max_size: int = 300):
    """Probabilities with plenty of edge values: k/n, their float neighbours, 0 and 1."""
    n = draw(st.integers(min_size, max_size))
    nb = n_bins or draw(st.integers(1, 40))
    kind = st.sampled_from(["uniform", "edge", "below", "above", "end", "tiny"])
    out = []
    for _ in range(n):
        k = draw(kind)
        j = draw(st.integers(0, nb))
        e = j / nb
        if k == "uniform":
            out.append(draw(st.floats(0.0, 1.0)))
        elif k == "edge":
            out.append(e)
        elif k == "below":
            out.append(max(0.0, float(np.nextafter(e, 0.0))))
        elif k == "above":
            out.append(min(1.0, float(np.nextafter(e, 1.0))))
        elif k == "end":
            out.append(draw(st.sampled_from([0.0, 1.0, float(np.nextafter(1.0, 0.0)), 5e-324])))
        else:
            out.append(draw(st.floats(0.0, 1e-6)))
    return np.array(out, dtype=np.float64), nb


def _assert_matches_reference(s, r, wmax=1.0):
    np.testing.assert_array_equal(s.count, r.count)
    np.testing.assert_array_equal(s.edges, r.edges)
    # the documented bound: per sample one double rounding (2^-53 relative) plus 2^-64 absolute
    atol = (s.n + 1) * wmax * 2.0**-64
    for ours, ref in (
        (s.weight, r.weight),
        (s.sum_confidence, r.sum_confidence),
        (s.sum_correct, r.sum_correct),
    ):
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=atol)
    for norm in ("l1", "l2", "max"):
        assert s.ece(norm) == pytest.approx(r.ece(norm), rel=1e-9, abs=1e-14)
    assert s.brier() == pytest.approx(r.brier(), rel=1e-9, abs=1e-14)
    assert s.nll() == pytest.approx(r.nll(), rel=1e-12, abs=1e-14)


# --- the exact bin rule -----------------------------------------------------------------------


def _exact_bin(c: float, n: int) -> int:
    return min(math.floor(Fraction(c) * n), n - 1)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 15, 16, 20, 33, 100, 1000, 12345])
def test_uniform_bin_on_and_beside_every_edge(n):
    values = []
    for k in range(n + 1):
        e = k / n
        values += [e, float(np.nextafter(e, 0.0)), float(np.nextafter(e, 1.0))]
    values = [min(max(v, 0.0), 1.0) for v in values]
    expected = [_exact_bin(v, n) for v in values]
    assert [cpu.calib_uniform_bin(v, n) for v in values] == expected
    np.testing.assert_array_equal(R.uniform_bin_index(values, n), expected)
    # the kernel: one sample per value, float64 and float32 (the float32 value itself)
    s = logcal.calibration_stats(np.array(values), np.zeros(len(values), bool), n_bins=n)
    np.testing.assert_array_equal(s.count, np.bincount(expected, minlength=n))
    v32 = np.array(values, dtype=np.float32)
    s32 = logcal.calibration_stats(v32, np.zeros(len(values), bool), n_bins=n)
    exp32 = [_exact_bin(float(v), n) for v in v32]
    np.testing.assert_array_equal(s32.count, np.bincount(exp32, minlength=n))


def test_documented_examples_of_the_bin_rule():
    # the double nearest 0.3 is below 3/10: bin 2 of 10, although 0.3 * 10 == 3.0
    assert 0.3 * 10 == 3.0 and cpu.calib_uniform_bin(0.3, 10) == 2
    assert cpu.calib_uniform_bin(0.6, 10) == 5 and cpu.calib_uniform_bin(0.7, 10) == 6
    assert cpu.calib_uniform_bin(0.5, 10) == 5 and cpu.calib_uniform_bin(1.0, 10) == 9
    assert cpu.calib_uniform_bin(0.0, 10) == 0 and cpu.calib_uniform_bin(1.0, 1) == 0
    # float32 0.3 is above 3/10: bin 3 (decided on the stored value)
    assert _exact_bin(float(np.float32(0.3)), 10) == 3
    s = logcal.calibration_stats(np.array([0.3], np.float32), np.array([1]), n_bins=10)
    assert s.count.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50), st.integers(1, 2**20))
def test_uniform_bin_is_floor_of_the_real_product(values, n):
    for v in values:
        assert cpu.calib_uniform_bin(v, n) == _exact_bin(v, n)


# --- the fixed-point core ---------------------------------------------------------------------


@given(
    st.one_of(
        st.floats(0.0, 1.0),
        st.floats(0.0, 2.0**40),
        st.sampled_from(
            [0.0, 5e-324, 2.0**-1022, 2.0**-64, 2.0**-65, 1.0, float(np.nextafter(1.0, 0)), 2.0**40]
        ),
    )
)
def test_to_fixed_is_floor_of_v_times_2_64(v):
    lo, hi = cpu.calib_to_fixed(v)
    assert (hi << 64) | lo == math.floor(Fraction(v) * 2**64)


def test_log_det_is_within_one_ulp_of_the_true_log():
    rng = np.random.default_rng(5)
    xs = np.concatenate(
        [
            rng.uniform(0, 1, 3000),
            10.0 ** rng.uniform(-300, 0, 3000),
            1 - 10.0 ** rng.uniform(-16, -1, 2000),
            [1e-12, 1 - 1e-12, 0.5, 1.0],
        ]
    )
    for x in xs:
        ours = cpu.calib_log_det(float(x))
        exact = math.log(x)  # glibc: correctly rounded to within 1 ulp
        assert abs(ours - exact) <= 2 * math.ulp(exact) or ours == exact


def test_vector_log_equals_the_scalar_one_bit_for_bit():
    """The kernels' vector logarithm (in the NLL of one sample) against calib_log_det, the
    scalar copy the CUDA kernels use: for NLL >= 2^-11 the fixed-point term is exact, so the
    mean NLL of one sample is exactly -log_det(c)."""
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(1e-6, 0.999, 300), 10.0 ** rng.uniform(-300, -1, 200)])
    for x in xs:
        assert logcal.nll(np.array([x]), np.array([True]), eps=1e-300) == -cpu.calib_log_det(x)
        soft = logcal.nll(np.array([x]), np.array([0.25]), eps=1e-300)
        expected = -(0.25 * cpu.calib_log_det(x) + 0.75 * cpu.calib_log_det(1 - x))
        assert soft == pytest.approx(expected, rel=1e-15)


def test_bootstrap_weights_match_the_reference_and_are_poisson():
    units = np.arange(0, 5000, 7)
    ref = R.bootstrap_weights(123, units, 6)
    ours = np.array([[cpu.calib_bootstrap_weight(123, int(u), r) for r in range(6)] for u in units])
    np.testing.assert_array_equal(ours, ref)
    w = R.bootstrap_weights(9, np.arange(200_000), 1)[:, 0]
    assert abs(w.mean() - 1) < 0.01 and abs(w.var() - 1) < 0.02
    assert abs((w == 0).mean() - math.exp(-1)) < 0.005


# --- against the reference --------------------------------------------------------------------


@given(confidences(), st.data())
def test_calibration_stats_matches_reference(cn, data):
    c, nb = cn
    kind = data.draw(st.sampled_from(["bool", "int", "float01", "soft"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    y = rng.uniform(size=c.size) < c
    y = {
        "bool": y,
        "int": y.astype(np.int64),
        "float01": y.astype(np.float32),
        "soft": rng.uniform(size=c.size),
    }[kind]
    weights = rng.uniform(0, 3, c.size) if data.draw(st.booleans()) else None
    binning = data.draw(st.sampled_from(["uniform", "quantile"]))
    s = logcal.calibration_stats(c, y, n_bins=nb, binning=binning, weights=weights)
    r = R.calibration_stats(c, y, n_bins=nb, binning=binning, weights=weights)
    _assert_matches_reference(s, r, wmax=3.0)
    if weights is None:
        assert s.rmsce(debias=True) == pytest.approx(r.rmsce(debias=True), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_widths_bin_the_stored_value(dtype):
    rng = np.random.default_rng(1)
    c = rng.uniform(size=2000).astype(dtype)
    c[::3] = np.round(c[::3], 1)  # on the tenths, as stored in this width
    y = rng.uniform(size=2000) < c
    s = logcal.calibration_stats(c, y, n_bins=10)
    r = R.calibration_stats(c.astype(np.float64), y, n_bins=10)
    _assert_matches_reference(s, r)


def test_ece_is_the_correctly_rounded_rational():
    rng = np.random.default_rng(3)
    c = rng.uniform(0.01, 1, 500)  # >= 2^-11: stored exactly in the fixed point
    y = rng.uniform(size=500) < c
    s = logcal.calibration_stats(c, y, n_bins=15)
    k = R.uniform_bin_index(c, 15)
    num = sum(
        abs(sum(Fraction(int(y[i])) - Fraction(float(c[i])) for i in np.flatnonzero(k == b)))
        for b in range(15)
    )
    assert s.ece() == float(num / 500)
    gaps = [
        abs(sum(Fraction(int(y[i])) - Fraction(float(c[i])) for i in idx)) / len(idx)
        for idx in (np.flatnonzero(k == b) for b in range(15))
        if len(idx)
    ]
    assert s.mce() == float(max(gaps))
    # the Brier score carries one rounding of (c - y)^2 per sample (documented): 2^-52 relative
    assert s.brier() == pytest.approx(
        float(sum((Fraction(float(a)) - int(b)) ** 2 for a, b in zip(c, y)) / 500), rel=1e-15
    )


def test_peer_report_cases():
    # B8 (torchmetrics #3510): 1.0 joins the last bin here
    s = logcal.calibration_stats(np.array([0.95, 1.0]), np.array([1, 0]), n_bins=10)
    assert s.ece() == pytest.approx(0.475) and s.mce() == pytest.approx(0.475)
    assert s.count[-1] == 2
    # B3: one sample
    s = logcal.calibration_stats(np.array([0.7]), np.array([1]), n_bins=15)
    assert s.ece() == pytest.approx(0.3) and s.rmsce() == pytest.approx(0.3)
    assert s.rmsce(debias=True) == 0.0  # Kumar: a bin of one sample contributes 0
    # B2 with n_bins = 1: one bin, |mean conf - mean acc|
    c = np.array([0.0, 0.0, 1.0, 1.0, 0.1, 0.2, 0.3, 0.5, 0.5, 0.6, 0.7, 0.9, 1.0])
    y = np.array([0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1])
    assert logcal.ece(c, y, n_bins=1) == pytest.approx(0.092308, abs=1e-6)


def test_edge_cases():
    # all right, all wrong, n_bins = 1, empty bins
    c = np.array([0.2, 0.4, 0.9])
    assert logcal.ece(c, np.ones(3, bool), n_bins=1) == pytest.approx(1 - 0.5)
    assert logcal.ece(c, np.zeros(3, bool), n_bins=1) == pytest.approx(0.5)
    s = logcal.calibration_stats(c, np.ones(3, bool), n_bins=10)
    assert s.count.tolist() == [0, 0, 1, 0, 1, 0, 0, 0, 0, 1]
    assert np.isnan(s.mean_confidence[0]) and np.isnan(s.accuracy[0])
    assert s.ece() == pytest.approx((0.8 + 0.6 + 0.1) / 3)
    # 0 and 1: perfect and certain
    s = logcal.calibration_stats(np.array([0.0, 1.0]), np.array([0, 1]))
    assert s.ece() == 0.0 and s.brier() == 0.0 and s.mce() == 0.0
    assert s.nll() == pytest.approx(-math.log(1 - 1e-12))
    # certain and wrong: NLL is capped by eps
    assert logcal.nll(np.array([0.0]), np.array([1])) == pytest.approx(-math.log(1e-12))
    assert logcal.nll(np.array([0.0]), np.array([1]), eps=1e-3) == pytest.approx(-math.log(1e-3))


def test_equal_mass_bins_keep_ties_together():
    rng = np.random.default_rng(0)
    c = np.round(rng.beta(5, 2, 1000), 1)  # B9: every value on a tenth, heavy ties
    y = rng.uniform(size=1000) < c
    s = logcal.calibration_stats(c, y, n_bins=10, binning="quantile")
    assert s.binning == "quantile" and s.n_bins < 10 and (s.count > 0).all()
    k = np.searchsorted(s.edges[1:-1], c, side="right")
    for v in np.unique(c):
        assert np.unique(k[c == v]).size == 1  # a value never straddles an edge
    np.testing.assert_array_equal(s.edges, R.quantile_edges(c, 10))
    r = R.calibration_stats(c, y, n_bins=10, binning="quantile")
    _assert_matches_reference(s, r)
    # all equal: one bin
    s = logcal.calibration_stats(np.full(50, 0.7), np.ones(50, bool), n_bins=15, binning="quantile")
    assert s.n_bins == 1 and s.count.tolist() == [50]
    # distinct values: equal counts
    s = logcal.calibration_stats(
        np.linspace(0.01, 0.99, 100), np.ones(100, bool), n_bins=4, binning="quantile"
    )
    assert s.count.tolist() == [25, 25, 25, 25]


def test_explicit_edges():
    c = np.array([0.0, 0.25, 0.5, 0.74, 0.75, 1.0])
    s = logcal.calibration_stats(c, np.ones(6, bool), binning=[0, 0.25, 0.75, 1])
    assert s.binning == "edges" and s.count.tolist() == [1, 3, 2]


@given(st.integers(2, 3000), st.integers(0, 2**32 - 1))
def test_many_explicit_edges_match_searchsorted(n_edges, seed):
    """Irregular edges (no uniform hint), searched several samples in lockstep: bins
    [e_j, e_j+1) as numpy.searchsorted(side="right") gives, samples on edges included."""
    rng = np.random.default_rng(seed)
    inner = np.unique(rng.uniform(size=n_edges) ** 3)
    edges = np.concatenate([[0.0], inner, [1.0]])
    c = np.concatenate([rng.uniform(size=500) ** 3, rng.choice(edges, 200)])
    y = rng.uniform(size=c.size) < c
    s = logcal.calibration_stats(c, y, binning=edges)
    k = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, edges.size - 2)
    np.testing.assert_array_equal(s.count, np.bincount(k, minlength=edges.size - 1))


def test_weights():
    c = np.array([0.2, 0.9, 0.6])
    y = np.array([0, 1, 1])
    w = np.array([1.0, 2.0, 0.5])
    rep = np.repeat(np.arange(3), [2, 4, 1])  # integer weights x2 == repetition
    s = logcal.calibration_stats(c, y, weights=w * 2, n_bins=5)
    t = logcal.calibration_stats(c[rep], y[rep], n_bins=5)
    for norm in ("l1", "l2", "max"):
        assert s.ece(norm) == t.ece(norm)
    assert s.brier() == t.brier() and s.nll() == t.nll()
    assert s.weighted and not t.weighted
    # unit weights are the unweighted statistics, bit for bit
    u = logcal.calibration_stats(c, y, weights=np.ones(3), n_bins=5)
    v = logcal.calibration_stats(c, y, n_bins=5)
    assert u.to_dict()["sums"] == v.to_dict()["sums"]
    with pytest.raises(ValueError, match="debias=True is not defined for weighted"):
        s.rmsce(debias=True)


def test_soft_labels_equal_binary_when_zero_or_one():
    rng = np.random.default_rng(2)
    c = rng.uniform(size=3000)
    y = rng.uniform(size=3000) < c
    a = logcal.calibration_stats(c, y)
    b = logcal.calibration_stats(c, y.astype(np.float64))
    y2 = y.astype(np.float64)
    y2[0] = 0.5  # one soft label: the whole chunk takes the soft path
    b2 = logcal.calibration_stats(c[1:], y2[1:])
    a2 = logcal.calibration_stats(c[1:], y[1:])
    assert a == b and a2 == b2


@pytest.mark.parametrize("light", [False, True])
def test_binary_cells_fold_before_a_word_fills(light):
    """The 0/1 fast path packs each term's low bits and the count into shared 64-bit words
    and folds them into the 128-bit sums every few thousand samples. Drive the terms to their
    bounds in a few cells for many fold periods -- c = 0 and y = 1 with eps = 1e-300 (NLL
    690.8), c = 1 - 2^-53 (the low 16 bits of T(c) nearly all set), c = 1 and wrong -- and
    compare with the weighted path, which adds 128-bit terms directly: equal bit for bit.
    Without the folds both variants fail (checked)."""
    n = 3 * 2**16
    c = np.zeros(n)
    c[n // 2 :] = 1.0
    c[::2] = np.nextafter(1.0, 0.0)
    y = c < 0.5
    ones = np.ones(n)
    logcal.set_num_threads(1)
    try:
        if light:  # ECE alone: count and T(c)'s low bits share a word; fill one cell's four
            # copies past 2^16 samples each (the rest random, so that the ECE is not 1)
            rng = np.random.default_rng(3)
            c = rng.uniform(size=2**19)
            c[: 3 * 2**17] = np.nextafter(1.0, 0.0)
            y = rng.uniform(size=c.size) < c
            y[: 3 * 2**17] = True
            ones = np.ones(c.size)
            fast, exact = logcal.ece(c, y), logcal.ece(c, y, weights=ones)
            assert fast == exact and 0 < fast < 1
            return
        fast = logcal.calibration_stats(c, y, eps=1e-300)
        exact = logcal.calibration_stats(c, y, eps=1e-300, weights=ones)
    finally:
        logcal.set_num_threads(0)
    assert fast.to_dict()["sums"] == exact.to_dict()["sums"]
    # c = 1 and wrong costs -log(eps), although 1 - eps rounds to 1
    p_outcome = np.maximum(np.where(y, c, 1.0 - c), 1e-300)
    assert fast.nll() == pytest.approx(-np.mean(np.log(p_outcome)), rel=1e-14)
    assert exact.nll() == pytest.approx(R.calibration_stats(c, y, eps=1e-300).nll(), rel=RTOL)


@given(
    confidences(max_size=3000),
    st.sampled_from(["bool", "int32", "int64", "float64"]),
    st.sampled_from([np.float32, np.float64]),
    st.integers(1, 300),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_binary_path_equals_the_128_bit_path(cn, y_kind, c_dtype, n_bins, strided, seed):
    """The 0/1 path (inputs read in place or from the scratch, few or many bins, tails of
    tiles and vectors) against the weighted path, which adds 128-bit terms: the same bits."""
    c = cn[0].astype(c_dtype)
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=c.size) < c).astype(y_kind)
    if strided:  # every other element of a wider array: the scratch path
        c2, y2 = np.repeat(c, 2), np.repeat(y, 2)
        c, y = c2[::2], y2[::2]
    ones = np.ones(c.size)
    fast = logcal.calibration_stats(c, y, n_bins=n_bins)
    exact = logcal.calibration_stats(c, y, n_bins=n_bins, weights=ones)
    assert fast.to_dict()["sums"] == exact.to_dict()["sums"]
    np.testing.assert_array_equal(fast.count, exact.count)
    assert logcal.ece(c, y, n_bins=n_bins) == logcal.ece(c, y, n_bins=n_bins, weights=ones)


@pytest.mark.parametrize("n_bins", [65, 1000, 100_000])
def test_many_bins_fold_cells_one_by_one(n_bins):
    """Past 64 bins the 0/1 path folds a cell when it fills and visits only touched cells:
    the same bits as the weighted path, which keeps 128-bit sums, with one cell far past a
    fill and the rest spread out. The full cell's value has its low 16 fixed-point bits
    nearly all set, so that its low-part field would overflow without the folds."""
    rng = np.random.default_rng(n_bins)
    c = np.concatenate([np.full(5 * 2**14, np.nextafter(0.75, 0)), rng.uniform(size=40_000)])
    rng.shuffle(c)
    y = rng.uniform(size=c.size) < c
    y[c == np.nextafter(0.75, 0)] = True  # one cell: 5 * 2^14 * (2^16 - 2^10) > 2^32
    ones = np.ones(c.size)
    logcal.set_num_threads(1)
    try:
        fast = logcal.calibration_stats(c, y, n_bins=n_bins)
        exact = logcal.calibration_stats(c, y, n_bins=n_bins, weights=ones)
        assert logcal.ece(c, y, n_bins=n_bins) == logcal.ece(c, y, n_bins=n_bins, weights=ones)
        boot = logcal.calibration_stats(
            c, y, n_bins=n_bins, n_bootstrap=5, seed=1, bootstrap_block=16
        )
    finally:
        logcal.set_num_threads(0)
    assert fast.to_dict()["sums"] == exact.to_dict()["sums"]
    np.testing.assert_array_equal(fast.count, exact.count)
    _assert_matches_reference(fast, R.calibration_stats(c, y, n_bins=n_bins))
    r = R.calibration_stats(c, y, n_bins=n_bins, n_bootstrap=5, seed=1, bootstrap_block=16)
    for m in ("ece", "brier", "nll"):
        np.testing.assert_allclose(boot.bootstrap(m), r.bootstrap(m), rtol=1e-9)


@given(
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from(["c", "f", "reversed", "every-other-class"]),
    st.integers(0, 2**32 - 1),
)
def test_top_label_matches_numpy(n, k, dtype, layout, seed):
    """One pass per row (lowest class among ties, values checked on the way) against numpy's
    argmax, for any layout of the probabilities."""
    rng = np.random.default_rng(seed)
    kk = 2 * k if layout == "every-other-class" else k
    p = np.round(rng.dirichlet(np.ones(kk), size=n), 1).astype(dtype)  # rounding makes ties
    p = {"c": p, "f": np.asfortranarray(p), "reversed": p[::-1, ::-1]}.get(layout, p[:, ::2])
    lab = rng.integers(0, k, n)
    conf, ok = logcal.top_label(p, lab)
    arg = np.argmax(p, axis=-1)
    np.testing.assert_array_equal(conf, p[np.arange(n), arg])
    np.testing.assert_array_equal(ok, arg == lab)
    assert conf.dtype == dtype and ok.dtype == bool


def test_top_label_and_classwise_ece():
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    labels = np.array([1, 1, 0])
    conf, ok = logcal.top_label(probs, labels)
    np.testing.assert_array_equal(conf, [0.5, 0.4, 0.8])
    np.testing.assert_array_equal(ok, [True, False, False])  # tie -> lowest index (0)
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(6), 400)
    lab = rng.integers(0, 6, 400)
    assert logcal.classwise_ece(p, lab, n_bins=10) == pytest.approx(
        R.classwise_ece(p, lab, n_bins=10), rel=1e-12
    )
    torch = pytest.importorskip("torch")
    conf_t, ok_t = logcal.top_label(torch.from_numpy(probs), torch.from_numpy(labels))
    assert isinstance(conf_t, torch.Tensor) and ok_t.dtype == torch.bool


def test_input_families_dtypes_and_strides():
    torch = pytest.importorskip("torch")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(6)
    c = rng.uniform(size=(40, 30))
    y = rng.uniform(size=(40, 30)) < c
    base = logcal.calibration_stats(c, y)
    assert logcal.calibration_stats(torch.from_numpy(c), torch.from_numpy(y)) == base
    assert logcal.calibration_stats(c.tolist(), y.tolist()) == base
    # strided, transposed and reversed views give the same statistics
    big = np.zeros((40, 60))
    big[:, ::2] = c
    assert logcal.calibration_stats(big[:, ::2], y) == base
    assert logcal.calibration_stats(c.T, y.T) == base
    assert logcal.calibration_stats(c.reshape(-1)[::-1], y.reshape(-1)[::-1]) == base
    # 16-bit floats are upcast to float32
    h = c.astype(np.float16)
    assert logcal.calibration_stats(h, y) == logcal.calibration_stats(h.astype(np.float32), y)
    b = c.astype(ml_dtypes.bfloat16)
    assert logcal.calibration_stats(b, y) == logcal.calibration_stats(b.astype(np.float32), y)
    assert logcal.calibration_stats(torch.from_numpy(c).bfloat16(), y) == logcal.calibration_stats(
        b.astype(np.float32), y
    )
    # correctness as int8, uint16, int32
    for dt in (np.int8, np.uint16, np.int32, np.uint8):
        assert logcal.calibration_stats(c, y.astype(dt)) == base


def test_same_bits_at_every_isa_level_and_thread_count(isa):
    rng = np.random.default_rng(7)
    c = rng.uniform(size=300_001).astype(np.float32)
    c[::11] = np.round(c[::11], 1)
    y = rng.uniform(size=c.size) < c
    soft = rng.uniform(size=c.size)
    w = rng.uniform(0, 2, c.size)
    got = []
    for threads in (1, 2, 3):
        logcal.set_num_threads(threads)
        try:
            got.append(
                (
                    logcal.calibration_stats(c, y, n_bootstrap=8, seed=2).to_dict(),
                    logcal.calibration_stats(c, soft, weights=w).to_dict(),
                )
            )
        finally:
            logcal.set_num_threads(0)
    assert got[0] == got[1] == got[2]
    expected = _EXPECTED.setdefault("isa", got[0])  # the first level run fixes the bits
    assert got[0] == expected


_EXPECTED: dict = {}


# --- the bootstrap ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:the bootstrap resampled only")
@pytest.mark.parametrize("kind", ["binary", "soft", "weighted"])
@pytest.mark.parametrize("block", [1, 5, 64])
def test_bootstrap_replicates_match_reference(block, kind):
    rng = np.random.default_rng(8)
    c = rng.uniform(size=1500)
    y = rng.uniform(size=1500) < c
    kw = {"n_bins": 10, "n_bootstrap": 30, "seed": 11, "bootstrap_block": block}
    if kind == "soft":
        y = np.where(rng.uniform(size=y.size) < 0.1, 0.5, y.astype(np.float64))
    elif kind == "weighted":
        kw["weights"] = rng.uniform(0, 2, y.size)
    s = logcal.calibration_stats(c, y, bootstrap_offset=3, **kw)
    r = R.calibration_stats(c, y, bootstrap_offset=3, **kw)
    for m in ("ece", "mce", "rmsce", "brier", "nll"):
        np.testing.assert_allclose(s.bootstrap(m), r.bootstrap(m), rtol=1e-9, atol=1e-14)
    lo, hi = s.interval("ece", 0.9)
    vals = s.bootstrap("ece")
    assert lo == pytest.approx(np.quantile(vals, 0.05)) and hi == pytest.approx(
        np.quantile(vals, 0.95)
    )
    assert set(s.intervals()) == {"ece", "mce", "rmsce", "brier", "nll"}


def test_bootstrap_interval_covers_and_default_block():
    rng = np.random.default_rng(9)
    c = rng.uniform(0.5, 1, 20000)
    y = rng.uniform(size=20000) < c**1.3
    s = logcal.calibration_stats(c, y, n_bootstrap=100, seed=0)
    assert s.bootstrap_block == 8  # 20000 samples: units of 8 leave <= 2**12 units
    lo, hi = s.interval("brier")
    assert lo < s.brier() < hi
    assert logcal.calibration_stats(c[:4096], y[:4096], n_bootstrap=2).bootstrap_block == 1
    assert logcal.calibration_stats(c[:4097], y[:4097], n_bootstrap=2).bootstrap_block == 2
    with pytest.raises(ValueError, match="no bootstrap"):
        logcal.calibration_stats(c, y).interval()
    few = logcal.calibration_stats(c, y, n_bootstrap=20, bootstrap_block=4096)  # 5 units
    with pytest.warns(UserWarning, match="resampled only about 5 units of 4096 samples"):
        few.interval()


# --- bad input --------------------------------------------------------------------------------


def _raises(exc, msg, fn, *args, **kwargs):
    with pytest.raises(exc, match="^" + re.escape(msg) + "$"):
        fn(*args, **kwargs)


def test_bad_confidence_values_name_the_position():
    y = np.ones(5, bool)
    c = np.array([0.1, 0.2, np.nan, 0.4, 0.5])
    _raises(
        ValueError,
        "confidence[2] = nan is not a probability in [0, 1]",
        logcal.calibration_stats,
        c,
        y,
    )
    c = np.array([0.1, 0.2, 0.3, 1.5, -0.1])
    _raises(ValueError, "confidence[3] = 1.5 is outside [0, 1]", logcal.ece, c, y)
    c = np.array([0.1, -0.0001, 0.3, 1.5, -0.1])
    _raises(ValueError, "confidence[1] = -0.0001 is outside [0, 1]", logcal.nll, c, y)
    c2 = np.full((3, 4), 0.5, np.float32)
    c2[1, 2] = np.float32(1.0000001)
    _raises(
        ValueError,
        "confidence[1, 2] = 1.0000001192092896 is outside [0, 1]",
        logcal.calibration_stats,
        c2,
        np.ones((3, 4), bool),
    )
    # far into a large array, past the first tile and thread
    big = np.full(300_000, 0.5)
    big[250_001] = np.inf
    _raises(
        ValueError,
        "confidence[250001] = inf is outside [0, 1]",
        logcal.calibration_stats,
        big,
        np.zeros(300_000, bool),
    )


def test_bad_correctness_values_name_the_position():
    c = np.full(4, 0.5)
    _raises(
        ValueError,
        "correct[2] = 2 is not 0 or 1 (correct must be bool, integers 0 or 1, or floats in [0, 1])",
        logcal.calibration_stats,
        c,
        np.array([0, 1, 2, 1]),
    )
    _raises(
        ValueError,
        "correct[1] = -1 is not 0 or 1 (correct must be bool, integers 0 or 1, or "
        "floats in [0, 1])",
        logcal.calibration_stats,
        c,
        np.array([0, -1, 1, 1], np.int8),
    )
    _raises(
        ValueError,
        "correct[3] = 1.5 is outside [0, 1]",
        logcal.brier_score,
        c,
        np.array([0, 1, 0.5, 1.5]),
    )
    _raises(
        ValueError,
        "correct[0] = nan is not in [0, 1]",
        logcal.calibration_stats,
        c,
        np.array([np.nan, 1, 0.5, 1.0], np.float32),
    )


def test_bad_shapes_sizes_and_arguments():
    c, y = np.full(4, 0.5), np.ones(4, bool)
    _raises(
        ValueError,
        "correct must have the same shape as confidence (4,), got shape (3,)",
        logcal.calibration_stats,
        c,
        y[:3],
    )
    _raises(
        ValueError,
        "confidence is empty (shape (0,)): calibration_stats needs at least one sample",
        logcal.calibration_stats,
        c[:0],
        y[:0],
    )
    _raises(ValueError, "n_bins must be >= 1, got 0", logcal.calibration_stats, c, y, n_bins=0)
    _raises(ValueError, "n_bins must be >= 1, got -3", logcal.ece, c, y, n_bins=-3)
    _raises(TypeError, "n_bins must be an int, got float", logcal.ece, c, y, n_bins=2.0)
    _raises(TypeError, "n_bins must be an int, got bool", logcal.ece, c, y, n_bins=True)
    _raises(
        ValueError, "norm must be one of 'l1', 'l2', 'max', got 'l3'", logcal.ece, c, y, norm="l3"
    )
    _raises(
        ValueError,
        "debias=True is defined for norm='l2' (Kumar et al. 2019) only",
        logcal.ece,
        c,
        y,
        debias=True,
    )
    _raises(ValueError, "eps must be in [1e-300, 0.5), got 0.5", logcal.nll, c, y, eps=0.5)
    _raises(
        ValueError,
        "binning must be 'uniform', 'quantile' or an array of edges, got 'log'",
        logcal.calibration_stats,
        c,
        y,
        binning="log",
    )
    _raises(
        ValueError,
        "bin edges must start at 0 and end at 1, got 0.1 ... 1.0",
        logcal.calibration_stats,
        c,
        y,
        binning=[0.1, 1.0],
    )
    _raises(
        ValueError,
        "bin edges must be non-decreasing, got edges[1] = 0.6 > edges[2] = 0.5",
        logcal.calibration_stats,
        c,
        y,
        binning=[0, 0.6, 0.5, 1],
    )
    _raises(
        TypeError,
        "confidence must be an array of floating-point probabilities (float16, "
        "bfloat16, float32 or float64), got dtype int64",
        logcal.calibration_stats,
        np.array([0, 1]),
        np.array([0, 1]),
    )
    _raises(
        ValueError,
        "n_bootstrap must be >= 0, got -1",
        logcal.calibration_stats,
        c,
        y,
        n_bootstrap=-1,
    )
    _raises(
        ValueError,
        "bootstrap_block must be >= 1, got 0",
        logcal.calibration_stats,
        c,
        y,
        n_bootstrap=3,
        bootstrap_block=0,
    )


def test_bad_weights():
    c, y = np.full(3, 0.5), np.ones(3, bool)
    _raises(
        ValueError,
        "weights[1] = -1.0 is negative",
        logcal.calibration_stats,
        c,
        y,
        weights=[1.0, -1.0, 1.0],
    )
    _raises(
        ValueError,
        "weights[2] = nan is not finite",
        logcal.calibration_stats,
        c,
        y,
        weights=[1.0, 1.0, np.nan],
    )
    _raises(
        ValueError,
        "weights[0] = 2000000000.0 is not below 2**30 (the range of the fixed-point sums)",
        logcal.calibration_stats,
        c,
        y,
        weights=[2e9, 1.0, 1.0],
    )
    _raises(
        ValueError,
        "weights must have the shape of confidence (3,), got shape (2,)",
        logcal.calibration_stats,
        c,
        y,
        weights=[1.0, 1.0],
    )


def test_bad_labels_and_probs():
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    _raises(ValueError, "labels[2] = 2 is outside [0, 2)", logcal.top_label, p, np.array([0, 1, 2]))
    _raises(
        ValueError,
        "labels[0] = -1 is outside [0, 2)",
        logcal.classwise_ece,
        p,
        np.array([-1, 1, 0]),
    )
    p2 = p.copy()
    p2[1, 1] = np.nan
    _raises(
        ValueError,
        "probs[1, 1] = nan is not a probability in [0, 1]",
        logcal.top_label,
        p2,
        np.array([0, 1, 1]),
    )
    # the first bad probability in row-major order wins, past a thread's first row too
    big = np.full((300_000, 3), 1 / 3)
    big[250_000, 2] = 1.5
    big[260_000, 0] = -1.0
    lab = np.zeros(300_000, np.int64)
    lab[10] = 3
    _raises(ValueError, "probs[250000, 2] = 1.5 is outside [0, 1]", logcal.top_label, big, lab)
    _raises(ValueError, "labels[10] = 3 is outside [0, 3)", logcal.top_label, big[:100], lab[:100])
    huge = np.array([0, 2**64 - 1, 1], np.uint64)
    _raises(
        ValueError, "labels[1] = 18446744073709551615 is outside [0, 2)", logcal.top_label, p, huge
    )
    _raises(
        ValueError,
        "labels must have the leading shape of probs (3,), got shape (2,)",
        logcal.top_label,
        p,
        np.array([0, 1]),
    )
    _raises(
        TypeError,
        "labels must be an array of integers, got dtype float64",
        logcal.top_label,
        p,
        np.array([0.0, 1.0, 1.0]),
    )


def test_metric_functions_equal_the_statistics_bit_for_bit():
    # ece / mce / rmsce / classwise_ece skip the squared error and NLL in the kernel: same bits
    rng = np.random.default_rng(10)
    c = rng.uniform(size=5000)
    c[::7] = np.round(c[::7], 1)
    for y in (rng.uniform(size=5000) < c, rng.uniform(size=5000)):
        for binning in ("uniform", "quantile", [0, 0.1, 0.5, 0.9, 1]):
            s = logcal.calibration_stats(c, y, n_bins=13, binning=binning)
            assert logcal.ece(c, y, n_bins=13, binning=binning) == s.ece()
            assert logcal.mce(c, y, n_bins=13, binning=binning) == s.mce()
            assert logcal.rmsce(c, y, n_bins=13, binning=binning) == s.rmsce()
    assert logcal.rmsce(c, y > 0.5, debias=True) == logcal.calibration_stats(c, y > 0.5).rmsce(True)


def test_reliability_rows_and_derived_sums():
    rng = np.random.default_rng(11)
    c = rng.uniform(size=2000)
    y = rng.uniform(size=2000)  # soft labels: every field is non-trivial
    s = logcal.calibration_stats(c, y, n_bins=8)
    r = R.calibration_stats(c, y, n_bins=8)
    rows = s.reliability()
    assert [(b.lower, b.upper) for b in rows] == list(zip(s.edges[:-1], s.edges[1:]))
    assert [b.count for b in rows] == s.count.tolist()
    np.testing.assert_allclose([b.gap for b in rows], r.accuracy - r.mean_confidence, rtol=1e-12)
    for field, ref in (
        ("sq_error", r.sum_sq_error),
        ("conf_correct", r.sum_conf_correct),
        ("correct_sq", r.sum_correct_sq),
        ("nll", r.sum_nll),
        ("conf_sq", np.bincount(R.uniform_bin_index(c, 8), weights=c * c)),
    ):
        np.testing.assert_allclose([v / 2**64 for v in s.fixed_sums(field)], ref, rtol=1e-12)
    with pytest.raises(ValueError, match="field must be one of"):
        s.fixed_sums("bogus")
