"""token_stats and log_softmax against the float64 reference, on drawn and on chosen inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from _helpers import TOL, assert_close, assert_equal
from logcal import reference

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = ["float16", "bfloat16", "float32", "float64"]
FIELDS_FLOAT = [
    "logsumexp",
    "max_logprob",
    "entropy",
    "varentropy",
    "target_logprob",
    "topk_logprobs",
]
FIELDS_EXACT = ["argmax", "target_rank", "topk_ids"]


def np_dtype(name):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def out_tol(dtype):
    return TOL["float64" if dtype == "float64" else "float32"]


def make_logits(rng, shape, dtype, *, scale=3.0, mask_frac=0.0, ties=False, offset=0.0):
    """Random logits rounded to `dtype`; optionally -inf masked and with many exact ties."""
    x = rng.standard_normal(shape) * scale + offset
    if ties:
        x = np.round(x * 2) / 2  # only half-integers: ties everywhere
    if mask_frac > 0:
        x[rng.random(shape) < mask_frac] = -np.inf
    return x.astype(np_dtype(dtype))


def check_against_reference(
    logits, targets=None, top_k=0, temperature=1.0, ignore_index=-100, varentropy=False
):
    kw = dict(
        top_k=top_k, temperature=temperature, ignore_index=ignore_index, varentropy=varentropy
    )
    got = logcal.token_stats(logits, targets, **kw)
    want = reference.token_stats(logits, targets, **kw)
    assert set(got) == set(want)
    dtype = np.asarray(logits).dtype.name if not hasattr(logits, "detach") else str(logits.dtype)
    tol = TOL["float64"] if dtype.endswith("float64") else TOL["float32"]
    for name in got:
        if name in FIELDS_EXACT:
            assert_equal(got[name], want[name], name)
        else:
            assert_close(got[name], want[name], what=name, **tol)
    return got


# --- drawn inputs ------------------------------------------------------------------------------

vocab_sizes = st.one_of(
    st.integers(1, 40),
    st.integers(41, 5000),
    st.sampled_from([15, 16, 17, 31, 32, 33, 2047, 2048, 2049, 4095, 4097]),
)


@st.composite
def token_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    vocab = draw(vocab_sizes)
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.01, 1.0, 3.0, 30.0]))
    logits = make_logits(
        rng,
        (*lead, vocab),
        dtype,
        scale=scale,
        mask_frac=draw(st.sampled_from([0.0, 0.0, 0.3, 0.95])),
        ties=draw(st.booleans()),
        offset=draw(st.sampled_from([0.0, 50.0, -1000.0])),
    )
    flat = logits.reshape(-1, vocab)
    special = draw(st.sampled_from(["none", "nan", "all_masked", "pos_inf"]))
    if special != "none" and flat.shape[0] > 0:
        r = int(rng.integers(flat.shape[0]))
        col = int(rng.integers(vocab))
        if special == "nan":
            flat[r, col] = np.nan
        elif special == "all_masked":
            flat[r, :] = -np.inf
        else:
            flat[r, col] = np.inf
    targets = None
    if draw(st.booleans()):
        targets = rng.integers(0, vocab, size=lead)
        if lead and draw(st.booleans()):
            targets[rng.random(lead) < 0.3] = -100
    top_k = draw(st.one_of(st.just(0), st.integers(1, min(vocab, 25)), st.just(vocab)))
    temperature = draw(st.sampled_from([1.0, 1.0, 0.5, 2.0, 0.07]))
    return logits, targets, top_k, temperature, draw(st.booleans())


@given(token_cases())
def test_token_stats_matches_reference(case):
    logits, targets, top_k, temperature, varentropy = case
    check_against_reference(
        logits, targets, top_k=top_k, temperature=temperature, varentropy=varentropy
    )


@given(token_cases())
def test_log_softmax_matches_reference(case):
    logits, _, _, temperature, _ = case
    got = logcal.log_softmax(logits, temperature=temperature)
    dtype = logits.dtype.name
    assert got.dtype == (np.float64 if dtype == "float64" else np.float32)
    assert_close(
        got,
        reference.log_softmax(logits, temperature=temperature),
        what="log_softmax",
        **out_tol(dtype),
    )


@settings(max_examples=20)
@given(st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_each_instruction_set_level(dtype, seed):
    """Every compiled level (baseline, AVX2, AVX-512, as this CPU allows) gives the reference."""
    rng = np.random.default_rng(seed)
    logits = make_logits(rng, (3, 3001), dtype, mask_frac=0.2, ties=True)
    targets = rng.integers(0, 3001, 3)
    cpu = logcal._native.cpu
    before = cpu.isa()
    try:
        for level in ["baseline", "avx2", "avx512"]:
            try:
                cpu.set_isa(level)
            except ValueError:
                continue  # not supported by this CPU or build
            check_against_reference(logits, targets, top_k=7, temperature=0.8, varentropy=True)
            assert_close(
                logcal.log_softmax(logits),
                reference.log_softmax(logits),
                what=f"log_softmax[{level}]",
                **out_tol(dtype),
            )
    finally:
        cpu.set_isa(before)


# --- chosen inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [1, 2, 128256, 200000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_and_tiny_vocabularies(vocab, dtype):
    rng = np.random.default_rng(vocab)
    logits = make_logits(rng, (2, vocab), dtype, mask_frac=0.1)
    targets = rng.integers(0, vocab, 2)
    check_against_reference(logits, targets, top_k=min(vocab, 20))


def test_llama_vocabulary_bfloat16_batch():
    """[B, L, V] bfloat16 logits with the Llama-3 vocabulary, targets partly ignored."""
    rng = np.random.default_rng(7)
    logits = make_logits(rng, (2, 3, 128256), "bfloat16", scale=4.0)
    targets = rng.integers(0, 128256, (2, 3))
    targets[0, 1] = -100
    got = check_against_reference(logits, targets, top_k=20)
    assert got.logsumexp.shape == (2, 3) and got.topk_ids.shape == (2, 3, 20)
    assert np.isnan(got.target_logprob[0, 1]) and got.target_rank[0, 1] == -1


def test_top_k_equal_to_vocabulary_orders_everything():
    rng = np.random.default_rng(1)
    logits = make_logits(rng, (3, 1000), "float32", ties=True, mask_frac=0.5)
    got = check_against_reference(logits, top_k=1000)
    # Every id appears once per row, masked ones last, in id order among equals.
    assert all(sorted(row) == list(range(1000)) for row in got.topk_ids)


@pytest.mark.parametrize("top_k", [129, 500, 4096])
def test_large_top_k_uses_selection(top_k):
    rng = np.random.default_rng(top_k)
    logits = make_logits(rng, (4, 4096), "float32", ties=True)
    check_against_reference(logits, rng.integers(0, 4096, 4), top_k=top_k)


def test_ties_go_to_the_lower_id():
    logits = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    s = logcal.token_stats(logits, np.array([2]), top_k=4)
    assert s.argmax[0] == 1
    assert s.topk_ids.tolist() == [[1, 2, 4, 3]]
    assert s.target_rank[0] == 0  # no logit is strictly larger than the target's


def test_masked_target_and_masked_vocabulary():
    logits = np.array([[0.0, -np.inf, 0.0, -np.inf]], dtype=np.float32)
    s = logcal.token_stats(logits, np.array([1]), top_k=4)
    assert s.target_logprob[0] == -np.inf
    assert s.target_rank[0] == 2
    assert_close(s.entropy, [np.log(2)], rtol=1e-6, atol=0)
    assert s.topk_ids.tolist() == [[0, 2, 1, 3]]
    assert s.topk_logprobs[0, 2] == -np.inf


@pytest.mark.parametrize("bad", ["nan", "all_masked", "pos_inf"])
def test_rows_without_statistics_are_nan(bad):
    logits = np.zeros((3, 50), dtype=np.float32)
    logits[1] = {
        "nan": np.where(np.arange(50) == 7, np.nan, 0.0),
        "all_masked": -np.inf,
        "pos_inf": np.where(np.arange(50) == 7, np.inf, 0.0),
    }[bad]
    s = logcal.token_stats(logits, np.array([0, 0, 0]), top_k=3, varentropy=True)
    for name in FIELDS_FLOAT:
        values = np.asarray(s[name])
        assert np.isnan(values[1]).all(), name
        assert not np.isnan(values[[0, 2]]).any(), name
    for name in FIELDS_EXACT:
        assert (np.asarray(s[name])[1] == -1).all(), name
    ls = logcal.log_softmax(logits)
    assert np.isnan(ls[1]).all() and not np.isnan(ls[[0, 2]]).any()


def test_temperature_scales_the_distribution():
    rng = np.random.default_rng(3)
    x = make_logits(rng, (5, 300), "float64")
    for t in [0.25, 1.0, 3.0]:
        a = logcal.token_stats(x, top_k=5, temperature=t)
        b = logcal.token_stats(x / t, top_k=5)
        assert_close(a.logsumexp, b.logsumexp, rtol=1e-12, atol=1e-12)
        assert_close(a.entropy, b.entropy, rtol=1e-12, atol=1e-12)
        assert_equal(a.topk_ids, b.topk_ids)


# --- properties ------------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 7, 300, 5000]))
def test_log_softmax_rows_normalise(seed, vocab):
    x = make_logits(np.random.default_rng(seed), (4, vocab), "float32", scale=5.0)
    lp = logcal.log_softmax(x).astype(np.float64)
    assert_close(np.log(np.exp(lp).sum(-1)), np.zeros(4), rtol=0, atol=2e-6)


@given(st.integers(0, 2**32 - 1), st.sampled_from([-1000.0, -3.0, 0.5, 64.0, 1000.0]))
def test_shift_invariance(seed, shift):
    x = make_logits(np.random.default_rng(seed), (3, 777), "float64", scale=4.0)
    a = logcal.token_stats(x, top_k=10)
    b = logcal.token_stats(x + shift, top_k=10)
    assert_close(b.logsumexp, a.logsumexp + shift, rtol=1e-12, atol=1e-9)
    assert_close(b.entropy, a.entropy, rtol=1e-9, atol=1e-12)
    assert_close(b.topk_logprobs, a.topk_logprobs, rtol=1e-9, atol=1e-9)
    assert_equal(b.topk_ids, a.topk_ids)


@given(st.integers(0, 2**32 - 1))
def test_top_k_values_are_the_gathered_logprobs(seed):
    rng = np.random.default_rng(seed)
    x = make_logits(rng, (4, 999), "bfloat16", ties=True)
    s = logcal.token_stats(x, top_k=12)
    lp = logcal.log_softmax(x)
    gathered = np.take_along_axis(lp, s.topk_ids, -1)
    assert_close(s.topk_logprobs, gathered, rtol=1e-6, atol=1e-6)
    kth = np.sort(lp, -1)[:, -12]
    assert (s.topk_logprobs[:, -1] >= kth - 1e-6).all()
    assert (np.diff(s.topk_logprobs, axis=-1) <= 0).all()


# --- layouts, threads, determinism -------------------------------------------------------------


def test_non_contiguous_views_match_contiguous_bit_for_bit():
    rng = np.random.default_rng(11)
    base = make_logits(rng, (6, 5, 4100), "float32", mask_frac=0.1)
    views = {
        "row slice": base[::2, 1:4],
        "column step": base[:, :, ::3],
        "transposed lead": base.transpose(1, 0, 2),
        "vocab not last in memory": np.asfortranarray(base[:, 0, :]),
        "reversed vocab": base[:, :, ::-1],
    }
    for name, view in views.items():
        targets = rng.integers(0, view.shape[-1], view.shape[:-1])
        got = logcal.token_stats(view, targets, top_k=9)
        want = logcal.token_stats(np.ascontiguousarray(view), targets, top_k=9)
        for field in got:
            assert_equal(got[field], want[field], f"{name}: {field}")
        assert_equal(logcal.log_softmax(view), logcal.log_softmax(np.ascontiguousarray(view)), name)


def test_byte_swapped_input():
    x = make_logits(np.random.default_rng(5), (3, 100), "float32")
    swapped = x.astype(x.dtype.newbyteorder(">"))
    assert_equal(
        logcal.token_stats(swapped, top_k=3).topk_ids, logcal.token_stats(x, top_k=3).topk_ids
    )
    assert_equal(logcal.log_softmax(swapped), logcal.log_softmax(x))


@pytest.mark.parametrize("n_rows", [1, 3, 64])
def test_threads_agree_and_runs_repeat_bit_for_bit(n_rows):
    """Rows fewer than threads are split within the row; every count agrees with the reference."""
    rng = np.random.default_rng(n_rows)
    x = make_logits(rng, (n_rows, 100000), "float32", mask_frac=0.05)
    targets = rng.integers(0, 100000, n_rows)
    before = logcal.get_num_threads()
    try:
        results = {}
        for threads in [1, 2, 5]:
            logcal.set_num_threads(threads)
            results[threads] = check_against_reference(x, targets, top_k=20, varentropy=True)
            again = logcal.token_stats(x, targets, top_k=20, varentropy=True)
            for field in again:
                assert_equal(again[field], results[threads][field], f"rerun {field}")
            assert_equal(logcal.log_softmax(x), logcal.log_softmax(x), "rerun log_softmax")
    finally:
        logcal.set_num_threads(0)
    assert logcal.get_num_threads() == before


def test_offsets_past_two_to_the_31_elements(tmp_path):
    """Rows whose element offsets exceed 2^31 (64-bit indexing), from a sparse memory map."""
    vocab = 1000
    gap = 2**31 + 17  # elements between row starts
    mm = np.memmap(tmp_path / "sparse.bin", dtype=np.float32, mode="w+", shape=(gap + vocab,))
    rng = np.random.default_rng(0)
    mm[:vocab] = rng.standard_normal(vocab)
    mm[gap:] = rng.standard_normal(vocab)
    rows = np.lib.stride_tricks.as_strided(mm, shape=(2, vocab), strides=(gap * 4, 4))
    dense = np.array(rows)
    targets = np.array([3, 999])
    got = logcal.token_stats(rows, targets, top_k=5)
    want = logcal.token_stats(dense, targets, top_k=5)
    for field in got:
        assert_equal(got[field], want[field], field)
    assert_equal(logcal.log_softmax(rows), logcal.log_softmax(dense))
    del rows, mm


# --- dtypes and array families -------------------------------------------------------------------


def test_output_dtypes():
    x16 = np.zeros((2, 8), np.float16)
    assert logcal.token_stats(x16).logsumexp.dtype == np.float32
    assert logcal.token_stats(x16).argmax.dtype == np.int64
    assert logcal.token_stats(x16.astype(np.float64)).entropy.dtype == np.float64
    assert logcal.log_softmax(x16).dtype == np.float32
    assert logcal.log_softmax(x16.astype(ml_dtypes.bfloat16)).dtype == np.float32
    assert logcal.log_softmax(x16.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("out_dtype", DTYPES)
def test_log_softmax_output_dtype(out_dtype):
    x = make_logits(np.random.default_rng(2), (4, 3000), "float32")
    got = logcal.log_softmax(x, dtype=out_dtype)
    assert got.dtype == np_dtype(out_dtype)
    want = reference.log_softmax(x)
    # Rounding to the output format is the only extra error: half an ulp, relative.
    rtol = {"float16": 2**-11, "bfloat16": 2**-8, "float32": 1e-5, "float64": 1e-5}[out_dtype]
    assert_close(got, want, rtol=rtol, atol=1e-6)


def test_log_softmax_out_argument_and_in_place():
    x = make_logits(np.random.default_rng(4), (3, 500), "float32")
    want = logcal.log_softmax(x)
    out = np.empty((3, 500), np.float32)
    assert logcal.log_softmax(x, out=out) is out
    assert_equal(out, want)
    strided = np.empty((3, 1000), np.float32)[:, ::2]
    logcal.log_softmax(x, out=strided)
    assert_equal(strided, want)
    logcal.log_softmax(x, out=x)
    assert_equal(x, want)


def test_torch_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = make_logits(rng, (2, 3, 700), "float32")
    targets = rng.integers(0, 700, (2, 3))
    for dtype in [torch.float32, torch.bfloat16, torch.float16, torch.float64]:
        t = torch.from_numpy(x).to(dtype)
        got = logcal.token_stats(t, torch.from_numpy(targets), top_k=4)
        assert isinstance(got.logsumexp, torch.Tensor) and isinstance(got.topk_ids, torch.Tensor)
        assert got.topk_ids.dtype == torch.int64
        expect_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        assert got.entropy.dtype == expect_dtype
        want = reference.token_stats(t, targets, top_k=4)
        for name in got:
            if name in FIELDS_EXACT:
                assert_equal(got[name], want[name], name)
            else:
                assert_close(got[name], want[name], what=name, **out_tol(str(dtype)[6:]))
        ls = logcal.log_softmax(t)
        assert isinstance(ls, torch.Tensor) and ls.dtype == expect_dtype
    t = torch.from_numpy(x).to(torch.bfloat16)
    out = logcal.log_softmax(t, dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    # A tensor that requires grad and a non-contiguous one are read without copies or errors.
    g = torch.from_numpy(x).requires_grad_(True)
    assert_equal(logcal.token_stats(g).argmax, logcal.token_stats(x).argmax)
    assert_equal(
        logcal.token_stats(t.transpose(0, 1)).argmax,
        logcal.token_stats(t.transpose(0, 1).contiguous()).argmax,
    )


def test_plain_lists_and_buffer_protocol():
    s = logcal.token_stats([[0.0, 1.0], [2.0, 1.0]], [1, 0])
    assert s.argmax.tolist() == [1, 0] and s.target_rank.tolist() == [0, 0]
    import array

    buf = array.array("d", [0.0, 0.0, 1.0])
    assert logcal.token_stats(buf).argmax == 2


def test_token_stats_record():
    s = logcal.token_stats(np.zeros((2, 4), np.float32))
    assert set(s) == {"logsumexp", "max_logprob", "argmax", "entropy"}
    with pytest.raises(AttributeError, match="pass targets= to token_stats"):
        _ = s.target_logprob
    with pytest.raises(AttributeError, match="pass top_k > 0 to token_stats"):
        _ = s.topk_ids
    with pytest.raises(AttributeError, match="pass varentropy=True to token_stats"):
        _ = s.varentropy
    with pytest.raises(AttributeError, match="immutable"):
        s.entropy = None
    assert "entropy: float32[2]" in repr(s)


def _child_token_stats(x, queue):
    queue.put(logcal.token_stats(x, top_k=3).topk_ids.tolist())


def test_works_in_a_forked_child_after_the_parent_used_its_threads():
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x = make_logits(np.random.default_rng(8), (64, 20000), "float32")
    want = logcal.token_stats(x, top_k=3).topk_ids.tolist()  # the parent's pool is running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_token_stats, args=(x, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and got == want


def test_concurrent_calls_from_python_threads():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(12)
    inputs = [make_logits(rng, (16, 30000), "float32") for _ in range(6)]
    want = [logcal.token_stats(x, top_k=4) for x in inputs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda x: logcal.token_stats(x, top_k=4), inputs * 3))
    for i, g in enumerate(got):
        for field in g:
            assert_equal(g[field], want[i % 6][field], field)


# --- candidate_ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared", [True, False])
def test_candidate_logprobs_match_reference(dtype, shared):
    rng = np.random.default_rng(7)
    logits = make_logits(rng, (3, 4, 50), dtype, mask_frac=0.2, offset=200.0)
    logits[0, 0] = np.nan  # a row without statistics: NaN candidates
    ids = np.array([3, 0, 49]) if shared else rng.integers(0, 50, (3, 4, 2))
    got = logcal.token_stats(logits, candidate_ids=ids, temperature=0.7)
    want = reference.token_stats(logits, candidate_ids=ids, temperature=0.7)
    assert_close(got.candidate_logprobs, want.candidate_logprobs, **out_tol(dtype))
    assert np.isnan(got.candidate_logprobs[0, 0]).all()


def test_candidate_ids_are_checked_by_name():
    logits = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"^candidate_ids\[1, 0\] = 5 is outside \[0, 5\)$"):
        logcal.token_stats(logits, candidate_ids=np.array([[0], [5]]))
    with pytest.raises(TypeError, match=r"^candidate_ids must be an array of integers, got dtype"):
        logcal.token_stats(logits, candidate_ids=np.array([0.5]))
    with pytest.raises(ValueError, match=r"^candidate_ids must have shape \[C\] or the leading"):
        logcal.token_stats(logits, candidate_ids=np.zeros((3, 1), np.int64))


def test_candidates_in_torch_and_choice_confidence():
    torch = pytest.importorskip("torch")
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    stats = logcal.token_stats(logits, candidate_ids=[0, 2])
    assert isinstance(stats.candidate_logprobs, torch.Tensor)
    choice = logcal.choice_confidence(stats)
    assert_close(choice.probs, [[0.857142857, 0.142857143], [0.25, 0.75]], rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"^choice_logprobs is a TokenStats without candidate"):
        logcal.choice_confidence(logcal.token_stats(logits))


def test_log_softmax_of_logits_whose_difference_overflows_float32():
    """3e38 - (-3e38) overflows float32, but divided by T = 10 the log-probability is finite:
    it must come out as -6e37 (as token_stats' target_logprob does), at every ISA level."""
    x = np.full((3, 1000), -3e38, np.float32)
    x[:, 5] = 3e38
    x[1, 7] = -np.inf  # a masked token stays -inf
    want = logcal.reference.log_softmax(x, temperature=10)
    cpu = logcal._native.cpu
    before = cpu.isa()
    try:
        for level in ("baseline", "avx2", "avx512"):
            try:
                cpu.set_isa(level)
            except ValueError:
                continue
            got = logcal.log_softmax(x, temperature=10)
            assert_close(got, want, **TOL["float32"], what=level)
            assert got[1, 7] == -np.inf
    finally:
        cpu.set_isa(before)
    t = logcal.token_stats(x, np.full(3, 0), temperature=10)
    assert_close(t.target_logprob, want[:, 0], **TOL["float32"], what="target_logprob")


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_large_top_k_orders_signed_zeros_masks_and_ties_like_small_k(dtype):
    """The selection path (k > 128) ranks by value, then the lower id: -0.0 and +0.0 tie, -inf
    (masked) entries come last, exactly as the streaming path for small k does."""
    x = np.zeros((2, 300), np.float32)
    x[0, ::3] = -0.0
    x[0, 1::7] = 1.5
    x[0, 200:] = -np.inf
    x[1] = np.round(np.random.default_rng(0).standard_normal(300))  # many ties
    logits = x.astype(np.float64) if dtype == "float64" else x
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        logits = x.astype(ml_dtypes.bfloat16)
    big = logcal.token_stats(logits, top_k=250)
    want = logcal.reference.token_stats(logits, top_k=250)
    assert_equal(big.topk_ids, want.topk_ids, what="ids")
    small = logcal.token_stats(logits, top_k=100)
    assert_equal(big.topk_ids[:, :100], small.topk_ids, what="k=250 vs k=100")


# --- varentropy ----------------------------------------------------------------------------------


def _varentropy_rows(vocab, dtype):
    """Rows that stress the varentropy: LM-like, peaked, flat, near-flat, one logit just above
    a flat row (variance 1e-11 against a mean surprisal of 1e-3: the uncentred form
    qsum / sum - (tsum / sum)^2 would keep no digit), masked, one-hot, large offsets and huge
    logits."""
    rng = np.random.default_rng(vocab)
    rows = [
        rng.standard_normal(vocab) * 2.5,
        rng.standard_normal(vocab) * 12.0,
        np.zeros(vocab),
        rng.standard_normal(vocab) * 1e-3,
        np.where(np.arange(vocab) == vocab // 3, 1e-3, 0.0),
        np.where(rng.random(vocab) < 0.7, -np.inf, rng.standard_normal(vocab) * 3),
        np.where(np.arange(vocab) == 1, 4.0, -np.inf),
        rng.standard_normal(vocab) * 2 + 5000.0,
        rng.standard_normal(vocab) * (1e4 if dtype == "float16" else 1e30),
    ]
    return np.stack(rows).astype(np_dtype(dtype))


@pytest.mark.parametrize("vocab", [3, 2049, 32000])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [1.0, 0.3, 4.0])
def test_varentropy_keeps_its_relative_accuracy_however_small(vocab, dtype, temperature):
    """On every row kind, at every instruction-set level: 2e-6 relative for 16/32-bit logits
    (1e-11 for float64), down to values of 1e-11; an absolute floor only at zero, for the
    reference's own rounding there, (1e-16 ln V)^2."""
    x = _varentropy_rows(vocab, dtype)
    want = reference.token_stats(x, temperature=temperature, varentropy=True)
    rtol, atol = (1e-11, 1e-28) if dtype == "float64" else (2e-6, 1e-28)
    cpu = logcal._native.cpu
    before = cpu.isa()
    try:
        for level in ["baseline", "avx2", "avx512"]:
            try:
                cpu.set_isa(level)
            except ValueError:
                continue
            got = logcal.token_stats(x, temperature=temperature, varentropy=True)
            assert got.varentropy.dtype == got.entropy.dtype
            assert_close(
                got.varentropy, want.varentropy, rtol=rtol, atol=atol, what=f"varentropy[{level}]"
            )
    finally:
        cpu.set_isa(before)


def test_varentropy_changes_no_other_field_and_is_nan_where_entropy_is():
    rng = np.random.default_rng(5)
    x = make_logits(rng, (6, 5000), "float32", mask_frac=0.2)
    x[1, 7], x[2, :], x[3, 9] = np.nan, -np.inf, np.inf
    targets = rng.integers(0, 5000, 6)
    plain = logcal.token_stats(x, targets, top_k=5)
    with_v = logcal.token_stats(x, targets, top_k=5, varentropy=True)
    assert set(with_v) == {*plain, "varentropy"}
    for field in plain:  # the same bits: the varentropy has sums of its own
        np.testing.assert_array_equal(with_v[field], plain[field], err_msg=field)
    assert_equal(np.isnan(with_v.varentropy), np.isnan(plain.entropy), "NaN rows")
    assert np.isnan(with_v.varentropy[1:4]).all()


def test_varentropy_is_the_curvature_of_the_nll_in_inverse_temperature():
    """Var_p[ln p] / beta^2 = d^2 lse(beta z) / d beta^2: against a central difference."""
    rng = np.random.default_rng(6)
    z = rng.standard_normal((4, 300)) * 2.0
    beta, h = 0.8, 1e-4
    lse = [
        reference.token_stats(z, temperature=1 / b).logsumexp for b in (beta - h, beta, beta + h)
    ]
    second = (lse[0] - 2 * lse[1] + lse[2]) / h**2
    got = logcal.token_stats(z, temperature=1 / beta, varentropy=True).varentropy / beta**2
    np.testing.assert_allclose(got, second, rtol=1e-5)


def test_varentropy_in_torch_and_must_be_a_bool():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 50)
    s = logcal.token_stats(x, varentropy=True)
    assert isinstance(s.varentropy, torch.Tensor) and s.varentropy.dtype == torch.float32
    want = reference.token_stats(x.numpy(), varentropy=True).varentropy
    assert_close(s.varentropy, want, **TOL["float32"])
    with pytest.raises(TypeError, match="varentropy must be a bool, got int"):
        logcal.token_stats(x, varentropy=1)
