"""sequence_stats: against the float64 reference, edge cases, determinism, bad input."""

from __future__ import annotations

import math
import re

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import logcal
from logcal import reference

FIELDS = ("sum", "mean", "min", "count", "perplexity")
FLOATS = ["float16", "bfloat16", "float32", "float64"]


def _np_dtype(name):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def _close(got, want, dtype):
    """Float outputs: float64 input to 1e-12 relative; otherwise float32 outputs of float64
    sums, to float32 rounding. NaN where the reference has NaN; counts exact; min exact."""
    for f in FIELDS:
        g, w = np.asarray(got[f]), np.asarray(want[f])
        assert g.shape == w.shape, f
        if f == "count":
            assert g.dtype == np.int64
            np.testing.assert_array_equal(g, w)
            continue
        assert g.dtype == (np.float64 if dtype == "float64" else np.float32), f
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f)
        rtol = 1e-12 if dtype == "float64" else 2e-7
        ok = ~np.isnan(w)
        np.testing.assert_allclose(g[ok].astype(np.float64), w[ok], rtol=rtol, atol=0, err_msg=f)


token_values = st.one_of(
    st.floats(-30, 0, width=32), st.just(-np.inf), st.just(np.nan), st.just(0.0)
)


@st.composite
def flat_inputs(draw):
    lengths = draw(st.lists(st.integers(0, 40), min_size=1, max_size=12))
    n = sum(lengths)
    with_nan = draw(st.booleans())
    values = draw(
        st.lists(token_values if with_nan else st.floats(-30, 0, width=32), min_size=n, max_size=n)
    )
    dtype = draw(st.sampled_from(FLOATS))
    x = np.array(values, dtype=np.float64).astype(_np_dtype(dtype))
    return x, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), dtype


@given(flat_inputs())
def test_flat_matches_reference(case):
    x, offsets, dtype = case
    _close(logcal.sequence_stats(x, offsets), reference.sequence_stats(x, offsets), dtype)


@st.composite
def padded_inputs(draw):
    b, length = draw(st.integers(1, 6)), draw(st.integers(0, 40))
    dtype = draw(st.sampled_from(FLOATS))
    values = draw(st.lists(st.floats(-30, 0, width=32), min_size=b * length, max_size=b * length))
    mask = draw(
        st.one_of(st.none(), st.lists(st.booleans(), min_size=b * length, max_size=b * length))
    )
    x = np.array(values, dtype=np.float64).reshape(b, length)
    if mask is not None:
        mask = np.array(mask, dtype=bool).reshape(b, length)
        x[~mask] = np.nan  # masked-out positions may hold anything
    return x.astype(_np_dtype(dtype)), mask, dtype


@given(padded_inputs())
def test_padded_matches_reference(case):
    x, mask, dtype = case
    _close(logcal.sequence_stats(x, mask=mask), reference.sequence_stats(x, mask=mask), dtype)


def test_padded_equals_flat_and_leading_dims():
    rng = np.random.default_rng(1)
    x = rng.normal(-2, 1, (2, 3, 50))
    mask = rng.random(x.shape) < 0.6
    got = logcal.sequence_stats(x, mask=mask)
    assert got.sum.shape == (2, 3)
    counts = mask.reshape(6, 50).sum(1)
    flat = logcal.sequence_stats(
        x.reshape(6, 50)[mask.reshape(6, 50)], np.concatenate([[0], np.cumsum(counts)])
    )
    np.testing.assert_array_equal(got.count.reshape(-1), flat.count)
    np.testing.assert_allclose(got.sum.reshape(-1), flat.sum, rtol=1e-14)
    np.testing.assert_array_equal(got.min.reshape(-1), flat.min)


def test_empty_and_length_one_sequences():
    x = np.array([-0.5, -1.5, -2.0], dtype=np.float32)
    s = logcal.sequence_stats(x, np.array([0, 0, 1, 1, 3]))
    np.testing.assert_array_equal(s.count, [0, 1, 0, 2])
    np.testing.assert_array_equal(s.sum, np.array([0.0, -0.5, 0.0, -3.5], np.float32))
    for f in ("mean", "min", "perplexity"):
        assert np.isnan(getattr(s, f)[[0, 2]]).all(), f
    assert s.mean[1] == s.min[1] == np.float32(-0.5)
    assert s.perplexity[1] == np.float32(math.exp(0.5))
    assert s.mean[3] == np.float32(-1.75) and s.min[3] == np.float32(-2.0)


def test_nan_propagates_to_its_sequence_only():
    x = np.array([-1.0, np.nan, -2.0, -3.0])
    s = logcal.sequence_stats(x, np.array([0, 3, 4]))
    for f in ("sum", "mean", "min", "perplexity"):
        assert np.isnan(getattr(s, f)[0]), f
        assert getattr(s, f)[1] == (-3.0 if f != "perplexity" else math.exp(3.0)), f
    np.testing.assert_array_equal(s.count, [3, 1])


def test_nan_in_long_vectorised_block():
    # The vectorised blocks detect NaN through the sum: a NaN is told apart from inf + (-inf).
    x = np.full(1000, -1.0, np.float32)
    x[777] = np.nan
    s = logcal.sequence_stats(x, np.array([0, 500, 1000]))
    assert np.isnan(s.min[1]) and s.min[0] == -1.0
    y = np.full(1000, -1.0, np.float32)
    y[3], y[900] = -np.inf, np.inf  # not log-probabilities, but the sum is NaN without a NaN
    s = logcal.sequence_stats(y, np.array([0, 1000]))
    assert np.isnan(s.sum[0]) and s.min[0] == -np.inf


def test_minus_inf_is_a_valid_logprob():
    s = logcal.sequence_stats(np.array([[-1.0, -np.inf]]))
    assert s.sum[0] == -np.inf and s.min[0] == -np.inf and s.perplexity[0] == np.inf


def test_mask_none_counts_everything():
    x = np.array([[-1.0, -2.0], [-3.0, -4.0]])
    a, b = logcal.sequence_stats(x), logcal.sequence_stats(x, mask=np.ones((2, 2), bool))
    for f in FIELDS:
        np.testing.assert_array_equal(a[f], b[f])


def _bits(a):
    return np.asarray(a).view(np.uint8).tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bitwise_same_for_any_thread_count_and_layout(dtype):
    rng = np.random.default_rng(7)
    # Long sequences (split across threads block by block) among many short ones.
    lengths = np.concatenate([rng.integers(0, 300, 3000), [400_001, 70_000, 65_536, 65_535]])
    rng.shuffle(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    x = (rng.normal(-3, 2, offsets[-1]) * 1e3).astype(dtype)
    before = logcal.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 4, 7):
            logcal.set_num_threads(n)
            results.append(logcal.sequence_stats(x, offsets))
            results.append(logcal.sequence_stats(x, offsets))
    finally:
        logcal.set_num_threads(before)
    for r in results[1:]:
        for f in FIELDS:
            assert _bits(r[f]) == _bits(results[0][f]), f
    # A strided view adds in the same order as a contiguous copy.
    wide = np.zeros(2 * x.size, dtype=dtype)
    wide[::2] = x
    strided = logcal.sequence_stats(wide[::2], offsets)
    for f in FIELDS:
        assert _bits(strided[f]) == _bits(results[0][f]), f
    # Padded rows, strided or not, give the bits of the same tokens in the flat layout.
    rows = x[: 4 * 100_000].reshape(4, 100_000)
    padded = logcal.sequence_stats(rows)
    flat = logcal.sequence_stats(rows.reshape(-1), np.arange(5) * 100_000)
    cols = logcal.sequence_stats(np.asfortranarray(rows))
    for f in FIELDS:
        assert _bits(padded[f]) == _bits(flat[f]) == _bits(cols[f]), f
    # With a mask: the vectorised contiguous path and the strided one add the same way, and
    # masked-out garbage (NaN here) never counts.
    mask = rng.random(rows.shape) < 0.7
    garbage = np.where(mask, rows, np.nan).astype(dtype)
    masked = logcal.sequence_stats(garbage, mask=mask)
    masked_cols = logcal.sequence_stats(np.asfortranarray(garbage), mask=np.asfortranarray(mask))
    assert not np.isnan(masked.sum).any()
    for f in FIELDS:
        assert _bits(masked[f]) == _bits(masked_cols[f]), f
    np.testing.assert_array_equal(masked.count, mask.sum(axis=1))


@pytest.mark.parametrize("name", FLOATS)
def test_bitwise_same_at_every_instruction_set_level(name):
    # The vectorised block kernels of each level (16-bit floats widened to float32 first), and
    # the generic loop strided input takes, put token i in lane i % 8 and combine the lanes
    # alike: the same bits everywhere.
    dtype = _np_dtype(name)
    rng = np.random.default_rng(9)
    lengths = np.concatenate([rng.integers(0, 40, 200), [8192, 8193, 20_000, 70_001]])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    x = (rng.normal(-3, 2, offsets[-1]) * 1e3).astype(dtype)
    x[rng.random(x.size) < 1e-3] = -np.inf
    x[rng.random(x.size) < 1e-3] = -1e-7  # a float16 subnormal
    rows = x[: 40 * 1001].reshape(40, 1001)
    mask = rng.random(rows.shape) < 0.6
    garbage = np.where(mask, rows, np.nan).astype(dtype)
    wide = np.zeros(2 * x.size, dtype=dtype)
    wide[::2] = x

    def run():
        return [logcal.sequence_stats(x, offsets), logcal.sequence_stats(garbage, mask=mask)]

    cpu = logcal._native.cpu
    before = cpu.isa()
    levels = ["baseline", "avx2", "avx512"]
    results = {}
    try:
        for level in levels[: levels.index(cpu.best_isa()) + 1]:
            cpu.set_isa(level)
            results[level] = run()
    finally:
        cpu.set_isa(before)
    generic = [
        logcal.sequence_stats(wide[::2], offsets),
        logcal.sequence_stats(np.asfortranarray(garbage), mask=np.asfortranarray(mask)),
    ]
    for level, got in results.items():
        for g, want in zip(got, generic):
            for f in FIELDS:
                assert _bits(g[f]) == _bits(want[f]), (level, f)


def test_long_sequence_sum_is_accurate():
    rng = np.random.default_rng(3)
    x = rng.normal(-1, 5, 1_000_003).astype(np.float32)
    s = logcal.sequence_stats(
        x,
        np.array([0, x.size]),
    )
    exact = math.fsum(x.astype(np.float64))
    assert abs(float(s.sum[0]) - exact) <= 1e-6 * abs(exact)
    s64 = logcal.sequence_stats(x.astype(np.float64), np.array([0, x.size]))
    assert abs(float(s64.sum[0]) - exact) <= 1e-12 * abs(exact)


def test_torch_in_torch_out():
    x = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, -1.0]], dtype=torch.bfloat16)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    s = logcal.sequence_stats(x, mask=mask)
    assert isinstance(s.sum, torch.Tensor) and s.sum.dtype == torch.float32
    assert s.count.dtype == torch.int64
    assert s.sum.tolist() == [-3.0, -0.5]
    flat = logcal.sequence_stats(
        torch.tensor([-1.0, -2.0], dtype=torch.float64), torch.tensor([0, 1, 2])
    )
    assert flat.mean.dtype == torch.float64 and flat.mean.tolist() == [-1.0, -2.0]


def test_record_is_immutable_mapping():
    s = logcal.sequence_stats(np.array([[-1.0]]))
    assert set(s) == set(FIELDS) and len(s) == 5
    with pytest.raises(AttributeError, match="immutable"):
        s.sum = 1
    with pytest.raises(AttributeError, match="has no field 'entropy'"):
        _ = s.entropy
    assert "sum: float64[1]" in repr(s)


# --- bad input --------------------------------------------------------------------------------

X = np.zeros(10, np.float32)


@pytest.mark.parametrize(
    "offsets, message",
    [
        (
            [0, 4, 3, 10],
            "offsets must be non-decreasing: offsets[2] = 3 is less than offsets[1] = 4",
        ),
        (
            [0, 4, 8],
            "offsets[2] = 8 must equal the number of tokens (10): the last offset ends the last sequence",
        ),
        ([0, 4, 12], "offsets[2] = 12 is outside [0, 10]: token_logprobs has 10 tokens"),
        ([0, -1, 10], "offsets[1] = -1 is outside [0, 10]: token_logprobs has 10 tokens"),
        (
            [2, 4, 10],
            "offsets[0] = 2 must be 0: sequence s is token_logprobs[offsets[s]:offsets[s+1]], and every token belongs to a sequence",
        ),
        ([0], "offsets must have at least 2 entries (S+1 for S >= 1 sequences), got 1"),
        ([[0, 10]], "offsets must be 1-D [S+1], got shape (1, 2)"),
        (
            np.array([0, 4, 2**64 - 1], dtype=np.uint64),
            "offsets[2] = 18446744073709551615 is outside [0, 10]: token_logprobs has 10 tokens",
        ),
    ],
)
def test_bad_offsets(offsets, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        logcal.sequence_stats(X, np.asarray(offsets))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: logcal.sequence_stats(X, np.array([0.0, 10.0])),
            TypeError,
            "offsets must be an array of integers, got dtype float64",
        ),
        (
            lambda: logcal.sequence_stats(np.zeros(10, np.int32), np.array([0, 10])),
            TypeError,
            "token_logprobs must be a floating-point array (float16, bfloat16, float32 or float64), got dtype int32",
        ),
        (
            lambda: logcal.sequence_stats(X),
            ValueError,
            "token_logprobs of shape (10,) needs offsets: pass offsets [S+1] for the flat layout, or a padded [B, L] array (with mask)",
        ),
        (
            lambda: logcal.sequence_stats(X.reshape(2, 5), np.array([0, 10])),
            ValueError,
            "token_logprobs must be flat [T] when offsets are given, got shape (2, 5)",
        ),
        (
            lambda: logcal.sequence_stats(X, np.array([0, 10]), mask=np.ones(10, bool)),
            ValueError,
            "mask is for the padded [B, L] layout; with offsets every token of token_logprobs is counted",
        ),
        (
            lambda: logcal.sequence_stats(X.reshape(2, 5), mask=np.ones((5, 2), bool)),
            ValueError,
            "mask must have the shape of token_logprobs (2, 5), got shape (5, 2)",
        ),
        (
            lambda: logcal.sequence_stats(X.reshape(2, 5), mask=np.ones((2, 5))),
            TypeError,
            "mask must be a boolean array, got dtype float64",
        ),
        (
            lambda: logcal.sequence_stats(np.zeros((0, 5))),
            ValueError,
            "token_logprobs must hold at least one sequence, got shape (0, 5)",
        ),
        (
            lambda: logcal.sequence_stats(["a", "b"], [0, 2]),
            TypeError,
            "token_logprobs must be a numeric array, got an array of dtype <U1",
        ),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
