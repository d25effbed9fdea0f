"""choice_confidence: against the float64 reference, conventions, bad input."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import logcal
from logcal import reference


@st.composite
def choice_inputs(draw):
    q, c = draw(st.integers(1, 12)), draw(st.integers(1, 6))
    values = draw(
        st.lists(
            st.one_of(
                st.floats(-60, 0), st.just(np.nan), st.just(-np.inf), st.sampled_from([-1.0, -2.0])
            ),
            min_size=q * c,
            max_size=q * c,
        )
    )
    ll = np.array(values).reshape(q, c)
    lengths = None
    if draw(st.booleans()):
        lengths = np.array(draw(st.lists(st.integers(1, 30), min_size=q * c, max_size=q * c)))
        lengths = lengths.reshape(q, c)
    # Labels at a present option where there is one (a question with none gets no label row).
    has = ~np.isnan(ll).all(axis=1)
    labels = None
    if draw(st.booleans()) and has.all():
        labels = np.array(
            [draw(st.sampled_from(np.flatnonzero(~np.isnan(row)).tolist())) for row in ll]
        )
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return ll.astype(dtype), lengths, labels, dtype


@given(choice_inputs())
def test_matches_reference(case):
    ll, lengths, labels, dtype = case
    got = logcal.choice_confidence(ll, lengths=lengths, labels=labels)
    want = reference.choice_confidence(ll, lengths=lengths, labels=labels)
    assert set(got) == set(want)
    tol = 1e-12 if dtype == "float64" else 1e-6
    for f in ("probs", "confidence"):
        assert got[f].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(np.isnan(got[f]), np.isnan(want[f]), err_msg=f)
        np.testing.assert_allclose(got[f], want[f], rtol=tol, atol=tol, err_msg=f)
    np.testing.assert_array_equal(got.pred, want.pred)
    if labels is not None:
        assert got.correct.dtype == np.bool_
        np.testing.assert_array_equal(got.correct, want.correct)


def test_probabilities_over_present_options():
    ll = np.array([[-1.0, np.nan, -1.0, -3.0]])
    c = logcal.choice_confidence(ll)
    e = np.exp([-1.0, -1.0, -3.0])
    np.testing.assert_allclose(
        c.probs[0], [e[0] / e.sum(), 0.0, e[1] / e.sum(), e[2] / e.sum()], rtol=1e-15
    )
    assert c.pred[0] == 0  # a tie goes to the lowest index
    assert c.confidence[0] == c.probs[0, 0]


def test_length_normalisation_is_acc_norm():
    # The longer answer is less likely in total, more likely per character.
    ll = np.array([[-6.0, -10.0]])
    lengths = np.array([[3, 10]])
    assert logcal.choice_confidence(ll).pred[0] == 0
    c = logcal.choice_confidence(ll, lengths=lengths, labels=np.array([1]))
    assert c.pred[0] == 1 and c.correct[0]
    np.testing.assert_allclose(c.probs[0], np.exp([-2.0, -1.0]) / np.exp([-2.0, -1.0]).sum())


def test_questions_without_a_usable_option():
    ll = np.array([[np.nan, np.nan], [-np.inf, -np.inf], [np.inf, -1.0], [-1.0, -np.inf]])
    c = logcal.choice_confidence(ll)
    np.testing.assert_array_equal(c.pred, [-1, -1, -1, 0])
    assert np.isnan(c.probs[:3]).all() and np.isnan(c.confidence[:3]).all()
    np.testing.assert_array_equal(c.probs[3], [1.0, 0.0])
    labelled = logcal.choice_confidence(ll[1:], labels=np.array([0, 1, 0]))
    np.testing.assert_array_equal(labelled.correct, [False, False, True])


def test_sixteen_bit_and_strided_input():
    rng = np.random.default_rng(0)
    ll = rng.normal(-5, 2, (20, 7))
    want = logcal.choice_confidence(ll.astype(np.float32))
    wide = np.zeros((20, 14), np.float32)
    wide[:, ::2] = ll
    got = logcal.choice_confidence(wide[:, ::2])
    np.testing.assert_array_equal(got.probs, want.probs)
    bf = ll.astype(ml_dtypes.bfloat16)
    got = logcal.choice_confidence(bf)
    assert got.probs.dtype == np.float32
    np.testing.assert_allclose(
        got.probs, reference.choice_confidence(bf).probs, rtol=1e-6, atol=1e-7
    )


def test_torch_in_torch_out():
    c = logcal.choice_confidence(
        torch.tensor([[-1.0, -2.0]], dtype=torch.float64), labels=torch.tensor([1])
    )
    assert isinstance(c.probs, torch.Tensor) and c.probs.dtype == torch.float64
    assert c.pred.tolist() == [0] and c.correct.tolist() == [False]
    with pytest.raises(
        AttributeError,
        match=re.escape("ChoiceConfidence has no correct: pass labels= to choice_confidence"),
    ):
        _ = logcal.choice_confidence(np.zeros((1, 2))).correct


LL = np.array([[-1.0, -2.0, np.nan], [-1.0, -2.0, -3.0]])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"labels": np.array([0, 3])}, ValueError, "labels[1] = 3 is outside [0, 3)"),
        ({"labels": np.array([-1, 0])}, ValueError, "labels[0] = -1 is outside [0, 3)"),
        (
            {"labels": np.array([2, 0])},
            ValueError,
            "labels[0] = 2 points at an absent option: choice_logprobs[0, 2] is NaN",
        ),
        (
            {"labels": np.array([0, 1, 2])},
            ValueError,
            "labels must have shape (Q,) = (2,), got shape (3,)",
        ),
        (
            {"labels": np.array([0.0, 1.0])},
            TypeError,
            "labels must be an array of integers, got dtype float64",
        ),
        (
            {"lengths": np.array([[1, 2, 0], [1, 0, 1]])},
            ValueError,
            "lengths[1, 1] = 0 must be a finite number > 0: choice_logprobs[1, 1] is a present option",
        ),
        (
            {"lengths": np.array([[1, np.nan, 1], [1, 1, 1]])},
            ValueError,
            "lengths[0, 1] = nan must be a finite number > 0: choice_logprobs[0, 1] is a present option",
        ),
        (
            {"lengths": np.array([[1.0, -2.5, 1], [1, 1, 1]])},
            ValueError,
            "lengths[0, 1] = -2.5 must be a finite number > 0: choice_logprobs[0, 1] is a present option",
        ),
        (
            {"lengths": np.ones((2, 2))},
            ValueError,
            "lengths must have the shape of choice_logprobs (2, 3), got shape (2, 2)",
        ),
        (
            {"lengths": np.ones((2, 3), bool)},
            TypeError,
            "lengths must be an array of numbers, got dtype bool",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        logcal.choice_confidence(LL, **kwargs)


def test_absent_option_may_have_any_length():
    c = logcal.choice_confidence(LL, lengths=np.array([[1, 2, 0], [1, 2, 3]]))
    assert c.probs[0, 2] == 0.0


@pytest.mark.parametrize(
    "ll, error, message",
    [
        (np.zeros(3), ValueError, "choice_logprobs must be 2-D [Q, C], got shape (3,)"),
        (np.zeros((0, 3)), ValueError, "choice_logprobs must not be empty, got shape (0, 3)"),
        (
            np.zeros((2, 3), np.int64),
            TypeError,
            "choice_logprobs must be a floating-point array (float16, bfloat16, float32 or float64), got dtype int64",
        ),
    ],
)
def test_bad_logprobs(ll, error, message):
    with pytest.raises(error, match=re.escape(message)):
        logcal.choice_confidence(ll)
