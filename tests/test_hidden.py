"""token_stats_from_hidden against token_stats on the materialised logits."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from _helpers import TOL, assert_close, assert_equal

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = ["float16", "bfloat16", "float32", "float64"]
EXACT = ("argmax", "target_rank", "topk_ids")


def np_dtype(name):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def materialised(hidden, weight, bias=None, chunk=None):
    """The logits the CPU path computes: 16-bit inputs widened to float32, then one GEMM per
    vocabulary chunk (BLAS may round a dot product differently for another shape)."""
    compute = np.float64 if hidden.dtype == np.float64 else np.float32
    h, w = hidden.astype(compute), weight.astype(compute)
    chunk = chunk or len(w)
    logits = np.concatenate([h @ w[s : s + chunk].T for s in range(0, len(w), chunk)], axis=-1)
    return logits if bias is None else logits + bias.astype(compute)


def check(hidden, weight, targets=None, *, bias=None, **kwargs):
    got = logcal.token_stats_from_hidden(hidden, weight, targets, bias=bias, **kwargs)
    chunk = kwargs.pop("vocab_chunk", None)
    want = logcal.token_stats(materialised(hidden, weight, bias, chunk), targets, **kwargs)
    assert set(got) == set(want)
    tol = TOL["float64" if hidden.dtype == np.float64 else "float32"]
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        if name in EXACT:
            assert_equal(got[name], want[name], name)
        else:
            assert_close(got[name], want[name], what=name, **tol)
    return got


def exact_inputs(rng, lead, vocab, d, dtype, *, with_bias):
    """Multiples of 1/4 with small sums: every GEMM, in any order, is exact -- and tied."""
    hidden = (rng.integers(-4, 5, (*lead, d)) / 4).astype(np_dtype(dtype))
    weight = (rng.integers(-4, 5, (vocab, d)) / 4).astype(np_dtype(dtype))
    bias = (rng.integers(-8, 9, vocab) / 4).astype(np_dtype(dtype)) if with_bias else None
    return hidden, weight, bias


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    vocab = draw(st.integers(1, 300))
    lead = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=2)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d = draw(st.integers(1, 24))
    hidden, weight, bias = exact_inputs(rng, lead, vocab, d, dtype, with_bias=draw(st.booleans()))
    targets = rng.integers(0, vocab, lead)
    targets = np.where(rng.random(lead) < 0.3, -100, targets)
    kwargs = dict(
        bias=bias,
        top_k=draw(st.sampled_from([0, 1, min(5, vocab), vocab])),
        temperature=draw(st.sampled_from([1.0, 0.5, 3.0])),
        vocab_chunk=draw(st.sampled_from([1, 7, 64, vocab, None])),
        candidate_ids=draw(st.sampled_from([None, [0], [vocab - 1, 0, vocab // 2]])),
    )
    return hidden, weight, (None if draw(st.booleans()) else targets), kwargs


@given(cases())
@settings(max_examples=80)
def test_matches_token_stats_on_the_logits(case):
    hidden, weight, targets, kwargs = case
    check(hidden, weight, targets, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("chunk", [100, 1000, 4096])
def test_real_valued_inputs(dtype, chunk):
    # Rounded dot products: the target's rank must still count its own chunk's logit once and
    # the duplicates of its weight row in other chunks (equal logits) never.
    rng = np.random.default_rng(1)
    hidden = rng.standard_normal((37, 257)).astype(dtype)
    weight = rng.standard_normal((4096, 257)).astype(dtype) * 0.3
    targets = rng.integers(0, 4096, 37)
    weight[rng.integers(0, 4096, 200)] = weight[targets[:1]]  # ties with row 0's target
    bias = rng.standard_normal(4096).astype(dtype)
    check(hidden, weight, targets, bias=bias, top_k=50, temperature=0.8, vocab_chunk=chunk)


def test_near_ties_across_chunks_are_counted_exactly():
    # Logits a few ulps apart in other chunks than the target's own.
    rng = np.random.default_rng(2)
    hidden = rng.standard_normal((8, 512)).astype(np.float32)
    base = rng.standard_normal(512).astype(np.float32)
    weight = np.repeat(base[None], 300, axis=0)
    weight += rng.integers(-1, 2, weight.shape).astype(np.float32) * 1e-7
    targets = rng.integers(0, 300, 8)
    got = check(hidden, weight, targets, vocab_chunk=16)
    assert (got.target_rank > 0).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_large_k_and_candidates(dtype):
    rng = np.random.default_rng(3)
    hidden, weight, bias = exact_inputs(rng, (3, 4), 1000, 16, dtype, with_bias=True)
    targets = rng.integers(0, 1000, (3, 4))
    targets[0, 1] = -100
    candidates = rng.integers(0, 1000, (3, 4, 5))
    got = check(
        hidden, weight, targets, bias=bias, top_k=1000, candidate_ids=candidates, vocab_chunk=97
    )
    assert np.isnan(got.target_logprob[0, 1]) and got.target_rank[0, 1] == -1


def test_rows_without_statistics_and_masked_chunks():
    rng = np.random.default_rng(4)
    hidden, weight, _ = exact_inputs(rng, (5,), 40, 6, "float32", with_bias=False)
    bias = np.zeros(40, np.float32)
    bias[:20] = -np.inf  # whole chunks hold only -inf for every row
    hidden[1, 0] = np.nan  # a NaN spoils its row
    targets = np.array([0, 25, 30, 39, 5])  # row 0 and 4: a masked target
    got = check(hidden, weight, targets, bias=bias, top_k=25, vocab_chunk=8)
    assert np.isnan(got.entropy[1]) and got.argmax[1] == -1
    assert got.target_logprob[0] == -np.inf and got.target_rank[0] == 20
    every = np.full(40, -np.inf, np.float32)
    every[3] = np.inf
    check(hidden, weight, targets, bias=every, top_k=3, vocab_chunk=8)  # +inf: all NaN
    check(hidden, weight, targets, bias=np.full(40, -np.inf, np.float32), vocab_chunk=8)


def test_one_row_and_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    hidden, weight, bias = exact_inputs(rng, (), 70, 5, "float32", with_bias=True)
    got = check(hidden, weight, np.array(3), bias=bias, top_k=4, vocab_chunk=9)
    assert got.argmax.shape == () and got.topk_ids.shape == (4,)
    h3, w3, _ = exact_inputs(rng, (2, 3), 70, 5, "bfloat16", with_bias=False)
    th = torch.from_numpy(h3.astype(np.float32)).to(torch.bfloat16)
    tw = torch.from_numpy(w3.astype(np.float32)).to(torch.bfloat16)
    result = logcal.token_stats_from_hidden(th, tw, torch.zeros(2, 3, dtype=torch.long), top_k=2)
    want = logcal.token_stats(materialised(h3, w3), np.zeros((2, 3), np.int64), top_k=2)
    assert isinstance(result.entropy, torch.Tensor) and result.entropy.dtype == torch.float32
    assert_close(result.target_logprob, want.target_logprob, **TOL["float32"])
    assert_equal(result.topk_ids, want.topk_ids)


def test_choice_confidence_takes_the_candidates():
    rng = np.random.default_rng(6)
    hidden, weight, _ = exact_inputs(rng, (4,), 50, 8, "float32", with_bias=False)
    letters = [10, 11, 12, 13]
    stats = logcal.token_stats_from_hidden(hidden, weight, candidate_ids=letters)
    got = logcal.choice_confidence(stats)
    want = logcal.choice_confidence(materialised(hidden, weight)[:, letters])
    assert_close(got.probs, want.probs, **TOL["float32"])
    assert_equal(got.pred, want.pred)


def raises(kind, message):
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


def test_bad_arguments_are_refused_by_name():
    f = logcal.token_stats_from_hidden
    h, w = np.zeros((2, 3), np.float32), np.zeros((5, 3), np.float32)
    with raises(
        ValueError,
        "weight must have shape [V, d] with V >= 1 and d = hidden.shape[-1] = 3, got shape (5, 4)",
    ):
        f(h, np.zeros((5, 4), np.float32))
    with raises(TypeError, "weight must have the dtype of hidden (float32), got float64"):
        f(h, w.astype(np.float64))
    with raises(
        TypeError,
        "hidden must be a floating-point array (float16, bfloat16, float32 or float64), got int64",
    ):
        f(np.zeros((2, 3), np.int64), w)
    with raises(ValueError, "hidden must not be empty, got shape (0, 3)"):
        f(np.zeros((0, 3), np.float32), w)
    with raises(ValueError, "bias must have shape [V] = (5,), got shape (4,)"):
        f(h, w, bias=np.zeros(4, np.float32))
    with raises(ValueError, "targets[1] = 5 is outside [0, 5) and is not ignore_index (-100)"):
        f(h, w, np.array([0, 5]))
    with raises(ValueError, "targets must have the leading shape of hidden (2,), got shape (3,)"):
        f(h, w, np.array([0, 1, 2]))
    with raises(ValueError, "candidate_ids[1] = -1 is outside [0, 5)"):
        f(h, w, candidate_ids=[0, -1])
    with raises(ValueError, "top_k = 6 is larger than the vocabulary size V = 5"):
        f(h, w, top_k=6)
    with raises(ValueError, "vocab_chunk must be >= 1, got 0"):
        f(h, w, vocab_chunk=0)
    with raises(TypeError, "vocab_chunk must be an int, got float"):
        f(h, w, vocab_chunk=2.0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_cuda_tensors_match_token_stats_on_the_device(dtype):
    torch = pytest.importorskip("torch")
    gen = torch.Generator(device="cuda").manual_seed(0)
    dt = getattr(torch, dtype)
    hidden = torch.randn(64, 256, device="cuda", generator=gen).to(dt)
    weight = (torch.randn(5000, 256, device="cuda", generator=gen) * 0.1).to(dt)
    bias = torch.randn(5000, device="cuda", generator=gen).to(dt)
    targets = torch.randint(0, 5000, (64,), device="cuda", generator=gen)
    got = logcal.token_stats_from_hidden(
        hidden, weight, targets, bias=bias, top_k=20, candidate_ids=[1, 2], vocab_chunk=1024
    )
    want = logcal.token_stats(hidden @ weight.T + bias, targets, top_k=20, candidate_ids=[1, 2])
    assert got.entropy.device == hidden.device
    for name in want:
        a, b = got[name].cpu(), want[name].cpu()
        if name in EXACT:
            # Two cuBLAS calls may round a logit differently: near-ties may order either way.
            assert (a == b).float().mean() > 0.99, name
        else:
            assert_close(a, b, what=name, rtol=1e-3, atol=1e-3)
