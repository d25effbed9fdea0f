"""sample_consistency: against the float64 reference, the formulas, edge cases, bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import logcal
from logcal import reference

FLOAT_FIELDS = ("agreement", "entropy", "entropy_consistency", "fsd")
INT_FIELDS = ("mode", "n_unique")


def _compare(got, want, se_tol=1e-12):
    assert set(got) == set(want)
    for f in INT_FIELDS:
        assert got[f].dtype == np.int64
        np.testing.assert_array_equal(got[f], want[f], err_msg=f)
    for f in FLOAT_FIELDS:
        assert got[f].dtype == np.float64
        np.testing.assert_array_equal(np.isnan(got[f]), np.isnan(want[f]), err_msg=f)
        np.testing.assert_allclose(got[f], want[f], rtol=1e-12, atol=1e-14, err_msg=f)
    if "semantic_entropy" in want:
        g, w = got.semantic_entropy, want.semantic_entropy
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=se_tol, atol=se_tol)


@st.composite
def consistency_inputs(draw):
    q = draw(st.integers(1, 8))
    k = draw(st.sampled_from([1, 2, 3, 5, 20, 63, 64, 65, 100]))  # both grouping paths
    hi = draw(st.integers(0, 12))
    ids = np.array(draw(st.lists(st.integers(-2, hi), min_size=q * k, max_size=q * k)))
    ids = ids.reshape(q, k) * draw(st.sampled_from([1, 1000003, 2**40]))  # large ids too
    lp = None
    if draw(st.booleans()):
        lp = np.array(
            draw(
                st.lists(
                    st.one_of(st.floats(-800, 0), st.just(-np.inf), st.just(np.nan)),
                    min_size=q * k,
                    max_size=q * k,
                )
            )
        ).reshape(q, k)
        if draw(st.booleans()):
            lp = np.where(np.isnan(lp), -1.0, lp)  # mostly without NaN
    return ids, lp


@given(consistency_inputs())
def test_matches_reference(case):
    ids, lp = case
    _compare(
        logcal.sample_consistency(ids, seq_logprobs=lp),
        reference.sample_consistency(ids, seq_logprobs=lp),
    )


def test_formulas_by_hand():
    answers = np.array([[3, 3, 1, 3, -1], [2, 5, 5, 2, 7], [4, -1, -1, -1, -1]])
    c = logcal.sample_consistency(answers)
    np.testing.assert_array_equal(c.mode, [3, 2, 4])  # 2 and 5 tie: the lowest id
    np.testing.assert_array_equal(c.n_unique, [2, 3, 1])
    np.testing.assert_allclose(c.agreement, [3 / 4, 2 / 5, 1.0], rtol=1e-15)
    np.testing.assert_allclose(c.fsd, [2 / 4, 0.0, 1.0], rtol=1e-15)
    h0 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h1 = -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2))
    np.testing.assert_allclose(c.entropy, [h0, h1, 0.0], rtol=1e-15)
    np.testing.assert_allclose(
        c.entropy_consistency, [1 - h0 / math.log(2), 1 - h1 / math.log(3), 1.0], rtol=1e-15
    )


def test_uniform_answers_have_entropy_log_n():
    c = logcal.sample_consistency(np.array([[0, 1, 2, 3, 0, 1, 2, 3]]))
    assert c.entropy[0] == pytest.approx(math.log(4), rel=1e-15)
    assert c.entropy_consistency[0] == pytest.approx(0.0, abs=1e-15)
    assert c.fsd[0] == 0.0 and c.mode[0] == 0


def test_k_equals_one_and_no_valid_sample():
    c = logcal.sample_consistency(
        np.array([[5], [-1], [0]]), seq_logprobs=np.array([[-3.0], [0.0], [-np.inf]])
    )
    np.testing.assert_array_equal(c.mode, [5, -1, 0])
    np.testing.assert_array_equal(c.n_unique, [1, 0, 1])
    for f in FLOAT_FIELDS:
        assert np.isnan(c[f][1]), f
    np.testing.assert_array_equal(c.agreement[[0, 2]], [1.0, 1.0])
    np.testing.assert_array_equal(c.entropy_consistency[[0, 2]], [1.0, 1.0])
    assert c.semantic_entropy[0] == 0.0
    assert np.isnan(c.semantic_entropy[1])  # no valid sample
    assert np.isnan(c.semantic_entropy[2])  # all mass -inf: p(c) undefined


def test_semantic_entropy():
    answers = np.array([[0, 0, 1, -1]])
    lp = np.array(
        [[math.log(0.2), math.log(0.3), math.log(0.5), np.nan]]
    )  # NaN of an invalid sample: ignored
    c = logcal.sample_consistency(answers, seq_logprobs=lp)
    assert c.semantic_entropy[0] == pytest.approx(math.log(2), rel=1e-14)
    # Shift invariance, far below exp's range: log-sum-exp keeps it finite and equal.
    c2 = logcal.sample_consistency(answers, seq_logprobs=lp - 5000.0)
    assert c2.semantic_entropy[0] == pytest.approx(math.log(2), rel=1e-12)
    nan_row = logcal.sample_consistency(np.array([[0, 1]]), seq_logprobs=np.array([[np.nan, -1.0]]))
    assert np.isnan(nan_row.semantic_entropy[0]) and nan_row.entropy[0] == pytest.approx(
        math.log(2)
    )
    f32 = logcal.sample_consistency(answers, seq_logprobs=lp.astype(np.float32))
    assert f32.semantic_entropy.dtype == np.float32


def test_both_grouping_paths_give_the_same_bits():
    # Ids below 64 take the direct-count path, others the hash table; both list the clusters by
    # id, so an order-preserving shift of the ids changes nothing but the mode.
    rng = np.random.default_rng(5)
    ids = rng.integers(-1, 40, (500, 30))
    lp = rng.normal(-20, 10, (500, 30))
    small = logcal.sample_consistency(ids, seq_logprobs=lp)
    shifted = np.where(ids >= 0, ids + 2**40, ids)
    big = logcal.sample_consistency(shifted, seq_logprobs=lp)
    np.testing.assert_array_equal(big.mode, np.where(small.mode >= 0, small.mode + 2**40, -1))
    for f in small:
        if f != "mode":
            assert small[f].tobytes() == big[f].tobytes(), f


def test_large_k_and_many_questions():
    rng = np.random.default_rng(2)
    ids = rng.integers(-1, 300, (40, 1024))
    lp = rng.normal(-50, 20, (40, 1024))
    _compare(
        logcal.sample_consistency(ids, seq_logprobs=lp),
        reference.sample_consistency(ids, seq_logprobs=lp),
        se_tol=1e-11,
    )
    ids = rng.integers(-3, 6, (20000, 20)).astype(np.int8)
    before = logcal.get_num_threads()
    try:
        logcal.set_num_threads(1)
        one = logcal.sample_consistency(ids)
        logcal.set_num_threads(3)
        three = logcal.sample_consistency(ids)
    finally:
        logcal.set_num_threads(before)
    for f in one:
        assert one[f].tobytes() == three[f].tobytes(), f
    _compare(one, reference.sample_consistency(ids))


def test_strided_and_unsigned_ids():
    ids = np.array([[1, 7, 1, 7, 7], [2, 2, 2, 9, 9]], dtype=np.uint64)
    a = logcal.sample_consistency(ids)
    b = logcal.sample_consistency(np.asfortranarray(ids.astype(np.int64))[:, ::1])
    for f in a:
        np.testing.assert_array_equal(a[f], b[f])
    np.testing.assert_array_equal(a.mode, [7, 2])


def test_torch_in_torch_out():
    c = logcal.sample_consistency(
        torch.tensor([[1, 1, 2]]), seq_logprobs=torch.tensor([[-1.0, -1.0, -2.0]])
    )
    assert isinstance(c.mode, torch.Tensor) and c.mode.tolist() == [1]
    assert c.semantic_entropy.dtype == torch.float32
    with pytest.raises(
        AttributeError,
        match=re.escape(
            "Consistency has no semantic_entropy: pass seq_logprobs= to sample_consistency"
        ),
    ):
        _ = logcal.sample_consistency(np.array([[1]])).semantic_entropy


@pytest.mark.parametrize(
    "answers, kwargs, error, message",
    [
        (
            np.array([[1.0, 2.0]]),
            {},
            TypeError,
            "answers must be an array of integer cluster ids, got dtype float64",
        ),
        (np.array([1, 2]), {}, ValueError, "answers must be 2-D [Q, K], got shape (2,)"),
        (np.zeros((3, 0), np.int64), {}, ValueError, "answers must not be empty, got shape (3, 0)"),
        (
            np.array([[1, 2]], np.uint64) * np.uint64(2**63),
            {},
            ValueError,
            "answers[0, 0] = 9223372036854775808 does not fit in int64",
        ),
        (
            np.array([[1, 2]]),
            {"seq_logprobs": np.zeros((2, 1))},
            ValueError,
            "seq_logprobs must have the shape of answers (1, 2), got shape (2, 1)",
        ),
        (
            np.array([[1, 2]]),
            {"seq_logprobs": np.zeros((1, 2), np.int64)},
            TypeError,
            "seq_logprobs must be a floating-point array (float16, bfloat16, float32 or float64), got dtype int64",
        ),
    ],
)
def test_bad_input(answers, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        logcal.sample_consistency(answers, **kwargs)
