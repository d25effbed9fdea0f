"""selective: AUROC against scikit-learn, the curve and AURC against the reference and their
definitions, the tie conventions, bad input."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

import logcal
from logcal import reference


@st.composite
def selective_inputs(draw):
    n = draw(st.integers(1, 60))
    few = draw(st.booleans())  # few distinct values: many ties
    conf_values = (
        st.sampled_from([0.0, -0.0, 0.25, 0.5, 0.75, 1.0])
        if few
        else st.floats(-1e6, 1e6, allow_subnormal=True)
    )
    conf = np.array(
        draw(
            st.lists(
                st.one_of(conf_values, st.just(np.inf), st.just(-np.inf))
                if draw(st.booleans())
                else conf_values,
                min_size=n,
                max_size=n,
            )
        )
    )
    correct = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    coverages = draw(st.lists(st.floats(0, 1, exclude_min=True), min_size=0, max_size=5))
    return conf.astype(dtype), correct, coverages


@given(selective_inputs())
def test_matches_reference_and_sklearn(case):
    conf, correct, coverages = case
    got = logcal.selective(conf, correct, coverages=coverages)
    want = reference.selective(conf, correct, coverages=coverages)
    if 0 < correct.sum() < correct.size:
        if np.isfinite(conf).all():  # scikit-learn refuses infinities
            assert got.auroc == pytest.approx(roc_auc_score(correct, conf), rel=1e-12, abs=1e-15)
        assert got.auroc == pytest.approx(want.auroc, rel=1e-12, abs=1e-15)
    else:
        assert math.isnan(got.auroc) and math.isnan(want.auroc)
    assert got.aurc == pytest.approx(want.aurc, rel=1e-12, abs=1e-15)
    assert got.threshold.dtype == conf.dtype
    np.testing.assert_array_equal(got.threshold, want.threshold)
    np.testing.assert_allclose(got.coverage, want.coverage, rtol=1e-15)
    np.testing.assert_allclose(got.risk, want.risk, rtol=1e-15)
    np.testing.assert_allclose(got.accuracy, want.accuracy, rtol=1e-12, atol=1e-15)
    assert got.n == conf.size and got.n_correct == int(correct.sum())
    for field in ("e_aurc", "auarc", "prr", "auprc_errors", "auprc_successes"):
        if math.isnan(want[field]):
            assert math.isnan(got[field]), field
        else:
            assert got[field] == pytest.approx(want[field], rel=1e-12, abs=1e-14), field
    if 0 < correct.sum() < correct.size and np.isfinite(conf).all():
        ap_right = average_precision_score(correct, conf)
        ap_wrong = average_precision_score(~correct, -conf)
        assert got.auprc_successes == pytest.approx(ap_right, rel=1e-12)
        assert got.auprc_errors == pytest.approx(ap_wrong, rel=1e-12)


def _aurc_no_ties(correct_in_order):
    errors = np.cumsum(~np.asarray(correct_in_order, bool))
    return float(np.mean(errors / np.arange(1, len(errors) + 1)))


def test_aurc_without_ties_is_the_mean_selective_risk():
    rng = np.random.default_rng(0)
    conf = rng.permutation(1000) / 1000.0
    correct = rng.random(1000) < conf
    s = logcal.selective(conf, correct)
    assert s.aurc == pytest.approx(_aurc_no_ties(correct[np.argsort(-conf)]), rel=1e-13)
    assert s.threshold.size == 1000


def test_aurc_with_ties_averages_over_orders_of_the_tied():
    # Brute force: every order of the tied answers, each equally likely.
    conf = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.2, 0.2])
    correct = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    groups = [np.flatnonzero(conf == v) for v in (0.9, 0.5, 0.2)]
    values = []
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        values.append(_aurc_no_ties(correct[np.concatenate(orders)]))
    assert logcal.selective(conf, correct).aurc == pytest.approx(np.mean(values), rel=1e-14)


def test_curve_and_accuracy_by_hand():
    conf = np.array([0.9, 0.8, 0.8, 0.6, 0.3])
    correct = np.array([1, 1, 0, 1, 0])
    s = logcal.selective(conf, correct, coverages=[0.2, 0.3, 0.6, 1.0])
    np.testing.assert_array_equal(s.threshold, [0.9, 0.8, 0.6, 0.3])
    np.testing.assert_allclose(s.coverage, [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(s.risk, [0.0, 1 / 3, 1 / 4, 2 / 5])
    # 0.3 * 5 = 1.5: the first answer, and half of one answer from the tied pair (1 right of 2).
    np.testing.assert_allclose(s.accuracy, [1.0, (1 + 0.5 * 0.5) / 1.5, 2 / 3, 3 / 5])
    # U = pairs (right, wrong) ordered right, ties one half: (0.9 > all 2 wrong) + (0.8 right:
    # tie with 0.8 wrong + above 0.3) + (0.6 > 0.3) = 2 + 1.5 + 1 = 4.5 of 6 pairs.
    assert s.auroc == 0.75


def test_all_right_or_all_wrong():
    conf = np.array([0.1, 0.5, 0.9])
    right = logcal.selective(conf, np.ones(3, bool))
    wrong = logcal.selective(conf, np.zeros(3, int))
    assert math.isnan(right.auroc) and math.isnan(wrong.auroc)
    assert right.aurc == 0.0 and wrong.aurc == 1.0
    np.testing.assert_array_equal(right.accuracy, np.ones(10))
    np.testing.assert_array_equal(wrong.risk, [1.0, 1.0, 1.0])
    assert math.isnan(right.prr) and math.isnan(wrong.prr)
    assert right.e_aurc == 0.0 and wrong.e_aurc == 0.0
    assert right.auarc == 1.0 and wrong.auarc == 0.0
    assert math.isnan(right.auprc_errors) and right.auprc_successes == 1.0
    assert wrong.auprc_errors == 1.0 and math.isnan(wrong.auprc_successes)


def _lm_polygraph_prr(confidence, correct):
    """lm-polygraph's PredictionRejectionArea (max_rejection=1) and its PRR, transcribed:
    the mean quality of the kept answers over rejection rates, of the signal, of the oracle
    (the quality itself as the signal) and of random rejection (the mean quality)."""

    def area(uncertainty, quality):
        kept = quality[np.argsort(uncertainty, kind="stable")]
        return float(np.mean(np.cumsum(kept) / np.arange(1, kept.size + 1)))

    quality = np.asarray(correct, np.float64)
    signal, oracle = area(-confidence, quality), area(-quality, quality)
    return signal, (signal - quality.mean()) / (oracle - quality.mean())


def test_rejection_metrics_by_definition():
    rng = np.random.default_rng(5)
    conf = rng.permutation(500) / 500.0  # no ties: every convention agrees
    correct = rng.random(500) < conf
    s = logcal.selective(conf, correct)
    auarc, prr = _lm_polygraph_prr(conf, correct)
    assert s.auarc == pytest.approx(auarc, rel=1e-13)
    assert s.prr == pytest.approx(prr, rel=1e-12)
    errors_last = np.sort(~correct)  # the perfect ranking: right answers first
    assert s.e_aurc == pytest.approx(s.aurc - _aurc_no_ties(~errors_last), rel=1e-12)
    r = 1 - correct.mean()  # Geifman et al.'s closed form, the large-N limit
    assert s.aurc - s.e_aurc == pytest.approx(r + (1 - r) * np.log(1 - r), rel=1e-2)
    assert s.auprc_successes == pytest.approx(average_precision_score(correct, conf), rel=1e-13)
    assert s.auprc_errors == pytest.approx(average_precision_score(~correct, -conf), rel=1e-13)


def test_rejection_metrics_of_perfect_and_reversed_signals():
    correct = np.array([1, 1, 1, 0, 0], bool)
    perfect = logcal.selective(np.array([5.0, 4, 3, 2, 1]), correct)
    assert perfect.e_aurc == pytest.approx(0.0, abs=1e-16)
    assert perfect.prr == pytest.approx(1.0, rel=1e-15)
    assert perfect.auprc_errors == 1.0 and perfect.auprc_successes == 1.0
    blind = logcal.selective(np.zeros(5), correct)  # one tie: random rejection exactly
    assert blind.prr == pytest.approx(0.0, abs=1e-15)
    assert blind.auprc_successes == 0.6 and blind.auprc_errors == pytest.approx(0.4)


def test_signed_zeros_tie_and_infinities_order():
    s = logcal.selective(np.array([0.0, -0.0, np.inf, -np.inf]), np.array([1, 0, 1, 0]))
    np.testing.assert_array_equal(s.threshold, [np.inf, 0.0, -np.inf])
    # Right {0, inf} against wrong {-0, -inf}: 0 ties -0 (one half), the other three pairs win.
    assert s.auroc == 3.5 / 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_input_against_sklearn_and_across_threads(dtype):
    rng = np.random.default_rng(11)
    n = 400_000  # several radix pieces per thread
    conf = (rng.random(n) if dtype == "float64" else rng.normal(0, 3, n)).astype(dtype)
    conf[::7] = conf[::7].round(1)  # ties
    correct = rng.random(n) < 1 / (1 + np.exp(-conf.astype(np.float64)))
    before = logcal.get_num_threads()
    try:
        logcal.set_num_threads(1)
        one = logcal.selective(conf, correct)
        logcal.set_num_threads(4)
        four = logcal.selective(conf, correct)
    finally:
        logcal.set_num_threads(before)
    assert one.auroc == pytest.approx(roc_auc_score(correct, conf), rel=1e-12)
    for f in one:
        a, b = one[f], four[f]
        assert (np.asarray(a).tobytes() == np.asarray(b).tobytes()) or a == b, f
    want = reference.selective(conf, correct)
    assert one.aurc == pytest.approx(want.aurc, rel=1e-11)
    np.testing.assert_array_equal(one.threshold, want.threshold)
    np.testing.assert_allclose(one.risk, want.risk, rtol=1e-14)
    assert one.auprc_successes == pytest.approx(average_precision_score(correct, conf), rel=1e-11)
    assert one.auprc_errors == pytest.approx(average_precision_score(~correct, -conf), rel=1e-11)
    assert one.prr == pytest.approx(want.prr, rel=1e-10)
    assert one.e_aurc == pytest.approx(want.e_aurc, rel=1e-10)


def test_input_kinds():
    conf = np.array([0.2, 0.9, 0.4, 0.7])
    base = logcal.selective(conf, np.array([False, True, False, True]))
    for correct in (
        np.array([0, 1, 0, 1], np.int8),
        np.array([0.0, 1.0, 0.0, 1.0]),
        np.array([0, 1, 0, 1], np.uint64),
    ):
        assert logcal.selective(conf, correct).auroc == base.auroc == 1.0
    strided = logcal.selective(np.repeat(conf, 2)[::2], np.repeat([0, 1, 0, 1], 3)[::3])
    assert strided.aurc == base.aurc
    half = logcal.selective(conf.astype(np.float16), [0, 1, 0, 1])
    assert half.threshold.dtype == np.float32
    t = logcal.selective(torch.tensor(conf), torch.tensor([0, 1, 0, 1]))
    assert isinstance(t.risk, torch.Tensor) and t.auroc == 1.0 and isinstance(t.auroc, float)


@pytest.mark.parametrize(
    "conf, correct, kwargs, error, message",
    [
        ([0.5, np.nan], [1, 0], {}, ValueError, "confidence[1] is NaN"),
        (
            [0.5, 0.2],
            [1, 0.5],
            {},
            ValueError,
            "correct[1] = 0.5 is not 0 or 1: selective needs each answer to be right (1) or wrong (0)",
        ),
        (
            [0.5, 0.2],
            [2, 0],
            {},
            ValueError,
            "correct[0] = 2 is not 0 or 1: selective needs each answer to be right (1) or wrong (0)",
        ),
        (
            [0.5, 0.2],
            [1, np.nan],
            {},
            ValueError,
            "correct[1] = nan is not 0 or 1: selective needs each answer to be right (1) or wrong (0)",
        ),
        (
            [0.5, 0.2],
            [1, 0, 1],
            {},
            ValueError,
            "correct must have the shape of confidence (2,), got shape (3,)",
        ),
        (
            [0.5, 0.2],
            ["a", "b"],
            {},
            TypeError,
            "correct must be a numeric array, got an array of dtype <U1",
        ),
        (
            [0.5, 0.2],
            [1, 0],
            {"coverages": [0.5, 0.0]},
            ValueError,
            "coverages[1] = 0.0 is outside (0, 1]",
        ),
        (
            [0.5, 0.2],
            [1, 0],
            {"coverages": [1.5]},
            ValueError,
            "coverages[0] = 1.5 is outside (0, 1]",
        ),
        (
            [0.5, 0.2],
            [1, 0],
            {"coverages": [[0.5]]},
            ValueError,
            "coverages must be a number or a 1-D sequence, got shape (1, 1)",
        ),
        ([], [], {}, ValueError, "confidence must not be empty"),
        ([[0.5]], [[1]], {}, ValueError, "confidence must be 1-D [N], got shape (1, 1)"),
        (
            np.array([1, 2]),
            [1, 0],
            {},
            TypeError,
            "confidence must be a floating-point array, got dtype int64",
        ),
        (
            np.array([0.5, 0.2]),
            np.array([1 + 0j, 0]),
            {},
            TypeError,
            "correct must be an array of bools, integers in {0, 1} or floats in {0, 1}, got dtype complex128",
        ),
    ],
)
def test_bad_input(conf, correct, kwargs, error, message):
    conf = conf if isinstance(conf, np.ndarray) else np.array(conf, dtype=np.float64)
    with pytest.raises(error, match=re.escape(message)):
        logcal.selective(conf, np.array(correct), **kwargs)


def test_accuracy_at_a_subnormal_coverage_is_the_first_groups_share():
    # The two most confident answers tie (one right, one wrong): any coverage inside that group,
    # however small, has accuracy 1/2; computing it as right / x lost it for x = 5e-324 * N.
    import logcal
    from logcal import reference

    c = np.array([0.5, 0.5, 0.25])
    y = np.array([True, False, True])
    for impl in (logcal.selective, reference.selective):
        got = impl(c, y, coverages=[5e-324, 1e-300, 0.5]).accuracy
        np.testing.assert_array_equal(np.asarray(got), [0.5, 0.5, 0.5])
