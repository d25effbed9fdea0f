"""recalibration: temperature scaling against scipy and the float64 reference, streaming equal
to one-shot; Platt, beta, isotonic and histogram binning against scikit-learn and the
reference; Brier decomposition; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

import logcal
from logcal import reference
from logcal.recalibration import (
    BetaCalibration,
    HistogramBinning,
    IsotonicCalibration,
    PlattScaling,
    TemperatureFit,
    TemperatureScaling,
    fit_temperature,
)


def lm_like(n=3000, v=40, true_t=1.3, scale=3.0, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, v)) * scale).astype(dtype)
    p = np.exp(z / true_t)
    p /= p.sum(1, keepdims=True)
    y = np.minimum((rng.uniform(size=(n, 1)) > p.cumsum(1)).sum(1), v - 1)
    return z, y


@pytest.mark.parametrize("true_t", [0.6, 1.3, 3.0])
def test_temperature_matches_scipy_and_reference(true_t):
    z, y = lm_like(true_t=true_t, dtype=np.float64)
    ts = fit_temperature(z, y)
    res = minimize_scalar(
        lambda t: -logcal.token_stats(z, y, temperature=t).target_logprob.mean(),
        bounds=(0.1, 10),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert ts.temperature == pytest.approx(res.x, rel=1e-6)
    assert ts.temperature == pytest.approx(reference.fit_temperature(z, y), rel=1e-6)
    assert ts.nll == pytest.approx(reference.nll_at_temperature(z, y, ts.temperature)[0], rel=1e-9)
    assert ts.n == len(y) and ts.n_passes <= 8


def test_temperature_float32_and_torch():
    torch = pytest.importorskip("torch")
    z, y = lm_like()
    t32 = fit_temperature(z, y).temperature
    t64 = reference.fit_temperature(z.astype(np.float64), y)
    assert t32 == pytest.approx(t64, rel=1e-5)
    assert fit_temperature(torch.from_numpy(z), torch.from_numpy(y)).temperature == t32


def test_temperature_honours_ignored_targets_and_mask():
    z, y = lm_like(n=2000)
    y_ign = y.copy()
    y_ign[::3] = -100
    mask = np.ones(len(y), dtype=bool)
    mask[1::5] = False
    keep = (y_ign != -100) & mask
    got = fit_temperature(z, y_ign, mask=mask)
    want = fit_temperature(z[keep], y[keep])
    assert got.temperature == want.temperature and got.n == keep.sum()
    assert got.nll == want.nll


def test_temperature_gradient_is_exact():
    z, y = lm_like(n=500, dtype=np.float64)
    fit = TemperatureFit([0.8, 1.7])
    fit.update(z, y)
    for t, g, f in zip(fit.temperatures, fit.gradient(), fit.mean_nll()):
        want_f, want_g = reference.nll_at_temperature(z, y, t)
        assert f == pytest.approx(want_f, rel=1e-12)
        assert g == pytest.approx(want_g, rel=1e-9, abs=1e-12)


def test_streaming_equals_one_shot_bit_for_bit():
    z, y = lm_like(n=1500)
    whole = TemperatureFit()
    whole.update(z, y)
    parts = [TemperatureFit() for _ in range(3)]
    for part, rows in zip(parts, np.array_split(np.arange(len(y)), 3)):
        part.update(z[rows], y[rows])
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert merged == whole
    assert merged.to_dict() == whole.to_dict()
    assert TemperatureFit.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole
    second = whole.refine()
    second.update(z, y)
    third = second.refine()
    third.update(z, y)
    assert third.solve().temperature == pytest.approx(fit_temperature(z, y).temperature, rel=1e-4)


def bench_like(rows, vocab, true_t, seed=0):
    """benchmarks/bench_recalibration.py's logits: scaled normal, targets drawn at true_t."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, vocab), dtype=np.float32) * 2.5
    p = np.exp(z / true_t)
    p /= p.sum(1, keepdims=True)
    y = np.minimum((rng.uniform(size=(rows, 1)) > p.cumsum(1)).sum(1), vocab - 1)
    return z, y


@pytest.mark.parametrize("true_t", [0.5, 1.3, 3.0])
def test_temperature_in_three_passes(true_t):
    """The issue's goal on LM-like logits: scipy's optimum within 1e-4 in <= 3 passes. scipy
    reads float64 NLLs: from float32 ones (the per-row rounding, 5e-7 on an NLL near 8) its
    search is itself off by up to 3e-4 at T = 3, where the NLL is flat."""
    z, y = bench_like(1000, 4000, true_t)
    ts = fit_temperature(z, y)
    z64 = z.astype(np.float64)
    res = minimize_scalar(
        lambda t: -logcal.token_stats(z64, y, temperature=t).target_logprob.mean(),
        bounds=(0.05, 10),
        method="bounded",
        options={"xatol": 1e-8},
    )
    assert ts.n_passes <= 3
    assert ts.temperature == pytest.approx(res.x, rel=1e-4)
    assert ts.temperature == pytest.approx(fit_temperature(z, y, rtol=1e-10).temperature, rel=1e-6)


def test_temperature_curvature_is_exact():
    z, y = lm_like(n=500, dtype=np.float64)
    fit = TemperatureFit([0.8, 1.7])
    fit.update(z, y)
    for t, h in zip(fit.temperatures, fit.curvature()):
        want = reference.token_stats(z, temperature=t, varentropy=True).varentropy.mean() * t * t
        assert h == pytest.approx(want, rel=1e-12)
        step = 1e-5  # and the derivative of the reference's gradient in beta
        g_hi = reference.nll_at_temperature(z, y, 1 / (1 / t + step))[1]
        g_lo = reference.nll_at_temperature(z, y, 1 / (1 / t - step))[1]
        assert h == pytest.approx((g_hi - g_lo) / (2 * step), rel=1e-6)


def test_temperature_fit_solves_with_the_curvature():
    """One pass per grid temperature: the cubic through the bracket's derivatives and
    curvatures lands within 3e-3 of the optimum (a secant across a sqrt(2) bracket: 3e-2)."""
    for true_t in [0.6, 1.3, 3.0]:
        z, y = lm_like(true_t=true_t)
        fit = TemperatureFit()
        fit.update(z, y)
        best = fit_temperature(z, y).temperature
        assert fit.solve().temperature == pytest.approx(best, rel=3e-3)


def test_temperature_fit_refuses_dicts_without_the_curvature():
    z, y = lm_like(n=200)
    fit = TemperatureFit([1.0, 2.0])
    fit.update(z, y)
    d = fit.to_dict()
    assert all(len(entry) == 4 for entry in d["sums"])
    old = dict(d, sums=[entry[:3] for entry in d["sums"]])
    with pytest.raises(ValueError, match="a dict with 3 was saved before TemperatureFit kept"):
        TemperatureFit.from_dict(old)


def test_temperature_scaling_apply_and_serialise():
    ts = TemperatureScaling(2.0, nll=1.5, n=10, n_passes=4)
    z = np.array([[2.0, 0.0, -1.0]])
    np.testing.assert_allclose(ts.apply(z), reference.log_softmax(z / 2.0), rtol=1e-12)
    back = TemperatureScaling.from_dict(json.loads(json.dumps(ts.to_dict())))
    assert back.to_dict() == ts.to_dict()


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(t):
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got"):
        TemperatureScaling(t)
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got"):
        TemperatureFit([1.0, t])


def test_temperature_bad_input():
    z, y = lm_like(n=50)
    with pytest.raises(ValueError, match="no rows to fit: every row is masked out"):
        fit_temperature(z, np.full(50, -100))
    bad = z.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="logits row 7 has no finite NLL"):
        fit_temperature(bad, y)
    with pytest.raises(ValueError, match=r"mask must have the leading shape of logits \(50,\)"):
        fit_temperature(z, y, mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="every target is its row's most likely token"):
        fit_temperature(z, z.argmax(1))
    # targets below the mean logit: the NLL falls towards T = inf, no minimum either
    with pytest.raises(RuntimeError, match="fit_temperature did not converge in 10 passes"):
        fit_temperature(z, z.argmin(1), max_passes=10)
    with pytest.raises(ValueError, match="no rows accumulated: call update first"):
        TemperatureFit().solve()
    narrow = TemperatureFit([5.0, 6.0])
    narrow.update(z, y)
    with pytest.raises(ValueError, match=r"outside the grid \[5.0, 6.0\]: widen temperatures"):
        narrow.solve()
    with pytest.raises(ValueError, match="same temperatures and ignore_index"):
        TemperatureFit().merge(narrow)


# --- on confidences ---------------------------------------------------------------------------


def confidences(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.beta(5, 2, n)
    y = (rng.uniform(size=n) < c**1.5).astype(int)
    return c, y


def test_platt_matches_sklearn_and_reference():
    c, y = confidences()
    p = PlattScaling().fit(c, y)
    x = np.log(c) - np.log1p(-c)
    lr = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(x[:, None], y)
    assert p.coef_ == pytest.approx(lr.coef_[0, 0], abs=1e-6)
    assert p.intercept_ == pytest.approx(lr.intercept_[0], abs=1e-6)
    a, b = reference.platt_scaling(c, y)
    assert (p.coef_, p.intercept_) == pytest.approx((a, b), rel=1e-10)
    np.testing.assert_allclose(
        p.transform(c[:100]), lr.predict_proba(x[:100, None])[:, 1], atol=1e-7
    )


def test_platt_on_many_samples_starts_from_subsamples():
    # 400,000 samples: Newton runs on every 256th and every 16th sample first, then on all
    c, y = confidences(n=400_000, seed=7)
    c[::3] = c[::3].round(3)  # ties
    c[:5] = [0.0, 1.0, 0.0, 1e-300, 1.0]  # clipped to [1e-12, 1 - 1e-12]
    p = PlattScaling().fit(c, y)
    a, b = reference.platt_scaling(c, y)
    assert (p.coef_, p.intercept_) == pytest.approx((a, b), rel=1e-9, abs=1e-9)
    x = np.log(np.clip(c, 1e-12, 1 - 1e-12)) - np.log1p(-np.clip(c, 1e-12, 1 - 1e-12))
    lr = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(x[:, None], y)
    assert p.coef_ == pytest.approx(lr.coef_[0, 0], abs=1e-6)
    assert p.intercept_ == pytest.approx(lr.intercept_[0], abs=1e-6)


def test_platt_passes_over_all_the_data(monkeypatch):
    from logcal.recalibration import _confidence

    strides = []
    terms = _confidence._platt_terms

    def counted(c, y, stride=1):
        evaluate = terms(c, y, stride)
        return lambda w: (strides.append(stride), evaluate(w))[1]

    monkeypatch.setattr(_confidence, "_platt_terms", counted)
    c, y = confidences(n=1_000_000, seed=8)
    PlattScaling().fit(c, y)
    assert strides.count(1) <= 3 and set(strides) == {1, 16}  # every 256th: too few


def test_platt_reads_float32_confidences_as_they_are():
    c, y = confidences(n=200_000, seed=9)
    c32 = c.astype(np.float32)
    p32, p64 = PlattScaling().fit(c32, y), PlattScaling().fit(c32.astype(np.float64), y)
    assert (p32.coef_, p32.intercept_) == (p64.coef_, p64.intercept_)  # the same values


def test_platt_subsamples_of_one_outcome_are_skipped():
    # every 16th sample (so every 256th) is right: the subsamples hold one outcome only
    c, y = confidences(n=2**17, seed=10)
    y[::16] = 1
    p = PlattScaling().fit(c, y)
    a, b = reference.platt_scaling(c, y)
    assert (p.coef_, p.intercept_) == pytest.approx((a, b), rel=1e-9, abs=1e-9)


def test_platt_sums_of_a_stride_are_those_of_the_subsample():
    from logcal import _native
    from logcal._arrays import view

    def sums(c, y, stride=1):
        return _native.cpu.platt_sums(
            confidence=view(c, "c"), correct=view(y, "y"), a=1.3, b=-0.4, stride=stride
        )

    c, y = confidences(n=100_003, seed=11)
    y = y.astype(np.uint8)
    for stride in (1, 7, 16):
        sub = np.ascontiguousarray(c[::stride]), np.ascontiguousarray(y[::stride])
        assert sums(c, y, stride) == sums(*sub)
    z = np.log(np.clip(c, 1e-12, 1 - 1e-12) / (1 - np.clip(c, 1e-12, 1 - 1e-12)))
    t = 1.3 * z - 0.4
    p = 1 / (1 + np.exp(-t))
    loss, (ga, gb), ((haa, hab), _) = sums(c, y)
    assert loss == pytest.approx(np.sum(np.logaddexp(0, t) - y * t), rel=1e-12)
    assert (ga, gb) == pytest.approx((np.sum((p - y) * z), np.sum(p - y)), rel=1e-10)
    assert (haa, hab) == pytest.approx(
        (np.sum(p * (1 - p) * z * z), np.sum(p * (1 - p) * z)), rel=1e-12
    )
    with pytest.raises(ValueError, match="stride: must be >= 1"):
        sums(c, y, 0)


def test_beta_calibration_is_logistic_on_log_features():
    c, y = confidences(seed=1)
    b = BetaCalibration().fit(c, y)
    X = np.column_stack([np.log(c), -np.log1p(-c)])
    lr = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(X, y)
    assert (b.a_, b.b_, b.m_) == pytest.approx((*lr.coef_[0], lr.intercept_[0]), abs=1e-5)
    back = BetaCalibration.from_dict(json.loads(json.dumps(b.to_dict())))
    np.testing.assert_array_equal(back.transform(c), b.transform(c))


@given(
    st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]), min_size=2, max_size=40),
    st.data(),
)
def test_isotonic_matches_sklearn_with_ties(cs, data):
    c = np.array(cs)
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=c.size, max_size=c.size)))
    if y.min() == y.max():
        return
    iso = IsotonicCalibration().fit(c, y)
    ir = IsotonicRegression(out_of_bounds="clip").fit(c, y)
    q = np.linspace(0, 1, 23)
    np.testing.assert_allclose(iso.transform(q), ir.predict(q), rtol=0, atol=1e-12)


def test_isotonic_large_against_sklearn_and_reference():
    c, y = confidences(n=50000, seed=2)
    c = c.astype(np.float32).astype(np.float64)  # ties
    iso = IsotonicCalibration().fit(c, y)
    ir = IsotonicRegression(out_of_bounds="clip").fit(c, y)
    np.testing.assert_allclose(iso.transform(c), ir.predict(c), rtol=0, atol=1e-12)
    np.testing.assert_allclose(iso.x_thresholds_, ir.X_thresholds_, rtol=0, atol=0)
    order = np.argsort(c, kind="stable")
    want = reference.isotonic_regression(y[order], np.ones(c.size))
    np.testing.assert_allclose(iso.transform(c[order]), want, rtol=0, atol=1e-12)
    back = IsotonicCalibration.from_dict(json.loads(json.dumps(iso.to_dict())))
    np.testing.assert_array_equal(back.transform(c), iso.transform(c))


def test_compiled_fits_do_not_depend_on_threads():
    c, y = confidences(n=300_000, seed=4)  # several radix pieces and Platt blocks per thread
    c[::5] = c[::5].round(2)  # ties
    c[1] = -0.0  # the equal of 0.0
    c[2] = 0.0
    before = logcal.get_num_threads()
    fits = []
    try:
        for threads in (1, 4):
            logcal.set_num_threads(threads)
            fits.append((IsotonicCalibration().fit(c, y), PlattScaling().fit(c, y)))
    finally:
        logcal.set_num_threads(before)
    (iso1, platt1), (iso4, platt4) = fits
    np.testing.assert_array_equal(iso1.x_thresholds_, iso4.x_thresholds_)
    np.testing.assert_array_equal(iso1.y_thresholds_, iso4.y_thresholds_)
    assert (platt1.coef_, platt1.intercept_) == (platt4.coef_, platt4.intercept_)
    ir = IsotonicRegression(out_of_bounds="clip").fit(c, y)
    np.testing.assert_allclose(iso1.transform(c), ir.predict(c), rtol=0, atol=1e-12)
    assert np.count_nonzero(iso1.x_thresholds_ == 0.0) <= 1


def test_histogram_binning_maps_to_bin_accuracy():
    c, y = confidences(n=5000, seed=3)
    h = HistogramBinning(n_bins=10).fit(c, y)
    bins = reference.uniform_bin_index(c, 10)
    want = np.array([y[bins == b].mean() for b in range(10) if (bins == b).any()])
    np.testing.assert_allclose(h.accuracy_[~np.isnan(h.accuracy_)], want, rtol=1e-15)
    np.testing.assert_allclose(h.transform(c), h.accuracy_[bins], rtol=0)
    # the exact bin rule: the double nearest 0.3 is below 3/10, so it is in bin 2
    assert h.bin_index(np.array([0.3]))[0] == 2
    stats = logcal.calibration_stats(c, y, n_bins=10)
    np.testing.assert_array_equal(HistogramBinning.from_stats(stats).transform(c), h.transform(c))
    back = HistogramBinning.from_dict(json.loads(json.dumps(h.to_dict())))
    np.testing.assert_array_equal(back.transform(c), h.transform(c))
    q = HistogramBinning(n_bins=4, binning="quantile").fit(c, y)
    assert q.transform(c).shape == c.shape


def test_netcal_histogram_binning():
    netcal = pytest.importorskip("netcal.binning")
    c, y = confidences(n=5000, seed=4)
    ours = HistogramBinning(n_bins=10).fit(c, y).transform(c)
    theirs = netcal.HistogramBinning(bins=10).fit(c, y).transform(c)
    assert np.mean(np.abs(ours - theirs)) < 1e-2


ESTIMATORS = [PlattScaling, BetaCalibration, IsotonicCalibration]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_confidence_bad_input(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=f"correct holds only 1s: {name} needs both outcomes"):
        cls().fit(np.array([0.2, 0.8]), np.array([1, 1]))
    with pytest.raises(ValueError, match=r"^confidence must not be empty$"):
        cls().fit(np.array([]), np.array([]))
    with pytest.raises(ValueError, match=r"^confidence\[1\] = nan is not in \[0, 1\]$"):
        cls().fit(np.array([0.2, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^correct\[0\] = 2 is not 0 or 1$"):
        cls().fit(np.array([0.2, 0.4]), np.array([2, 1]))
    with pytest.raises(ValueError, match=f"this {name} is not fitted yet: call fit first"):
        cls().transform(np.array([0.5]))


@pytest.mark.parametrize("cls", [PlattScaling, BetaCalibration])
def test_constant_confidences_are_refused(cls):
    with pytest.raises(ValueError, match=r"confidence is constant \(0.7\): .* two distinct values"):
        cls().fit(np.full(4, 0.7), np.array([0, 1, 1, 0]))


def test_separable_outcomes_are_refused():
    with pytest.raises(ValueError, match="PlattScaling: the fit did not converge"):
        PlattScaling().fit(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))


# --- Brier decomposition ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_brier_decomposition_against_reference(seed):
    c, y = confidences(n=3000, seed=seed)
    d = logcal.calibration_stats(c, y, n_bins=10).brier_decomposition()
    want = reference.brier_decomposition(c, y, 10)
    assert tuple(d) == pytest.approx(want, rel=1e-10, abs=1e-15)
    total = d.reliability - d.resolution + d.uncertainty + d.within_bin
    assert total == pytest.approx(d.brier, rel=1e-14)


def test_spiegelhalter_against_reference():
    c, y = confidences(n=3000, seed=5)
    assert logcal.spiegelhalter(c, y) == pytest.approx(reference.spiegelhalter(c, y), rel=1e-12)
    with pytest.raises(ValueError, match="Spiegelhalter's z is undefined"):
        logcal.spiegelhalter(np.array([0.5, 1.0]), np.array([0, 1]))
