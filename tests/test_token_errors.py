"""Every bad input to the token functions: the exception type and its exact message."""

from __future__ import annotations

import re

import numpy as np
import pytest

import logcal

X = np.zeros((2, 3, 5), np.float32)


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


@pytest.mark.parametrize("func", [logcal.token_stats, logcal.log_softmax])
def test_bad_logits(func):
    with raises(
        TypeError,
        "logits must be a floating-point array (float16, bfloat16, float32 or float64), got int64",
    ):
        func(np.zeros((2, 3), np.int64))
    with raises(
        TypeError,
        "logits must be a floating-point array (float16, bfloat16, float32 or float64), got bool",
    ):
        func(np.zeros((2, 3), bool))
    with raises(TypeError, "logits must be a numeric array, got an array of dtype <U1"):
        func(np.array([["a", "b"]]))
    with raises(TypeError, "logits must be a numeric array, got an array of dtype object"):
        func(np.array([None, 1.0], dtype=object))
    with raises(
        ValueError, "logits must have at least one dimension (the vocabulary axis), got a 0-d array"
    ):
        func(np.float32(1.0))
    with raises(
        ValueError, "logits must have a non-empty last (vocabulary) axis, got shape (4, 0)"
    ):
        func(np.zeros((4, 0), np.float32))
    with raises(ValueError, "logits must not be empty, got shape (0, 5)"):
        func(np.zeros((0, 5), np.float32))
    for t in [0.0, -1.0, float("inf"), float("nan")]:
        with raises(ValueError, f"temperature must be a finite number > 0, got {t!r}"):
            func(X, temperature=t)
    with raises(TypeError, "temperature must be a real number, got str"):
        func(X, temperature="1")
    with raises(TypeError, "temperature must be a real number, got bool"):
        func(X, temperature=True)


def test_bad_targets():
    with raises(ValueError, "targets[1, 2] = 5 is outside [0, 5) and is not ignore_index (-100)"):
        logcal.token_stats(X, np.array([[0, 1, 2], [3, 4, 5]]))
    with raises(ValueError, "targets[0, 0] = -1 is outside [0, 5) and is not ignore_index (-100)"):
        logcal.token_stats(X, np.array([[-1, 1, 2], [3, 4, 0]]))
    with raises(ValueError, "targets[0, 1] = -100 is outside [0, 5) and is not ignore_index (-1)"):
        logcal.token_stats(X, np.array([[-1, -100, 2], [3, 4, 0]]), ignore_index=-1)
    with raises(
        ValueError, "targets[17] = 128300 is outside [0, 128256) and is not ignore_index (-100)"
    ):
        t = np.zeros(20, np.int64)
        t[17] = 128300
        logcal.token_stats(np.zeros((20, 128256), np.float16), t)
    with raises(
        ValueError,
        "targets[0, 0] = 18446744073709551615 is outside [0, 5) and is not ignore_index (-100)",
    ):
        logcal.token_stats(X, np.full((2, 3), 2**64 - 1, np.uint64))
    with raises(ValueError, "targets must have the leading shape of logits (2, 3), got shape (6,)"):
        logcal.token_stats(X, np.zeros(6, np.int64))
    with raises(
        ValueError, "targets must have the leading shape of logits (2, 3), got shape (2, 4)"
    ):
        logcal.token_stats(X, np.zeros((2, 4), np.int64))
    with raises(TypeError, "targets must be an array of integers, got dtype float64"):
        logcal.token_stats(X, np.zeros((2, 3)))
    with raises(TypeError, "targets must be an array of integers, got dtype bool"):
        logcal.token_stats(X, np.zeros((2, 3), bool))
    with raises(TypeError, "ignore_index must be an int, got float"):
        logcal.token_stats(X, np.zeros((2, 3), np.int64), ignore_index=-100.0)


def test_bad_top_k():
    with raises(ValueError, "top_k = 6 is larger than the vocabulary size V = 5"):
        logcal.token_stats(X, top_k=6)
    with raises(ValueError, "top_k must be >= 0, got -1"):
        logcal.token_stats(X, top_k=-1)
    with raises(TypeError, "top_k must be an int, got float"):
        logcal.token_stats(X, top_k=2.0)
    with raises(TypeError, "top_k must be an int, got bool"):
        logcal.token_stats(X, top_k=True)


def test_bad_log_softmax_dtype_and_out():
    with raises(TypeError, "dtype must be one of float16, bfloat16, float32, float64, got int32"):
        logcal.log_softmax(X, dtype=np.int32)
    with raises(
        TypeError, "dtype must be one of float16, bfloat16, float32, float64, got complex64"
    ):
        logcal.log_softmax(X, dtype="complex64")
    with raises(ValueError, "out must have the shape of logits (2, 3, 5), got (2, 3, 4)"):
        logcal.log_softmax(X, out=np.empty((2, 3, 4), np.float32))
    with raises(TypeError, "out must have dtype float32, got float64"):
        logcal.log_softmax(X, out=np.empty((2, 3, 5), np.float64))
    with raises(TypeError, "out must have dtype float16, got float32"):
        logcal.log_softmax(X, dtype="float16", out=np.empty((2, 3, 5), np.float32))
    ro = np.empty((2, 3, 5), np.float32)
    ro.flags.writeable = False
    with raises(ValueError, "out must be writeable"):
        logcal.log_softmax(X, out=ro)
    y = np.zeros((2, 3, 10), np.float32)
    with raises(ValueError, "out overlaps logits in a different layout; pass a separate array"):
        logcal.log_softmax(y[..., :5], out=y[..., 5:])
    before = X.copy()
    with pytest.raises(TypeError):
        logcal.log_softmax(X, out=np.empty((2, 3, 5), np.int64))
    np.testing.assert_array_equal(X, before)  # nothing was written


def test_not_an_array():
    with raises(
        TypeError,
        "logits must be an array (numpy, torch, or anything with __array__, __dlpack__ or the buffer protocol), got object",
    ):
        logcal.token_stats(object())
    with raises(
        TypeError,
        "targets must be an array (numpy, torch, or anything with __array__, __dlpack__ or the buffer protocol), got object",
    ):
        logcal.token_stats(X, object())


def test_cuda_arrays_without_a_usable_gpu_are_refused_clearly():
    """CUDA arrays go to the CUDA back end; where it cannot run, the error says why."""
    if logcal.cuda_available():
        pytest.skip("a GPU is usable here: CUDA arrays are computed (tests/test_gpu_*.py)")

    class FakeCudaArray:
        @property
        def __cuda_array_interface__(self):
            return {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}

    if logcal.cuda_compiled():
        why = "the input is in CUDA memory, but no CUDA device is usable"
    else:
        why = (
            "the input is in CUDA memory, but this build of logcal has no CUDA module (it was "
            "built without nvcc); move the input to host memory or rebuild with LOGCAL_CUDA=ON"
        )
    with raises(RuntimeError, f"token_stats: {why}"):
        logcal.token_stats(FakeCudaArray())

    class FakeDLPackCuda:
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, stream=None):
            raise AssertionError("must not be called")

    with raises(RuntimeError, f"log_softmax: {why}"):
        logcal.log_softmax(FakeDLPackCuda())
    with raises(RuntimeError, f"sequence_stats: {why}"):
        logcal.sequence_stats(FakeCudaArray(), offsets=[0, 3])


def test_set_num_threads_type():
    with raises(TypeError, "n must be an int, got float"):
        logcal.set_num_threads(2.0)


@pytest.mark.parametrize("func", [logcal.token_stats, logcal.log_softmax])
def test_temperature_below_the_dtype_minimum_is_refused(func):
    with raises(
        ValueError,
        "temperature = 1e-39 is below 1e-38, the smallest float32 logits allow "
        "(1/temperature must be finite in float32)",
    ):
        func(X, temperature=1e-39)
    with raises(
        ValueError,
        "temperature = 1e-310 is below 1e-307, the smallest float64 logits allow "
        "(1/temperature must be finite in float64)",
    ):
        func(X.astype(np.float64), temperature=1e-310)


def test_tiny_temperatures_give_the_limit():
    """At the smallest temperatures allowed, the distribution is the one-hot argmax (within the
    float32 tolerance), never an entropy above ln V or a NaN."""
    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    s = logcal.token_stats(x, np.array([1]), temperature=1e-38)
    assert abs(float(s.max_logprob[0])) < 1e-6 and 0 <= float(s.entropy[0]) < 1e-6
    assert float(s.target_logprob[0]) == pytest.approx(-1e38, rel=1e-6)
    lp = logcal.log_softmax(x, temperature=1e-38)
    np.testing.assert_allclose(lp, [[-2e38, -1e38, 0.0]], rtol=1e-6, atol=1e-6)
    s64 = logcal.token_stats(x.astype(np.float64), temperature=1e-307)
    assert float(s64.max_logprob[0]) == 0.0 and float(s64.entropy[0]) < 1e-300


def test_out_that_cannot_be_written_in_place_is_refused():
    big_endian = np.zeros((2, 3, 5), dtype=">f4")
    with raises(
        ValueError,
        "out must be in native byte order with strides that are a multiple of its element size, "
        "so that results can be written into it",
    ):
        logcal.log_softmax(X, out=big_endian)
    assert not big_endian.any()
    torch = pytest.importorskip("torch")
    negated = torch._neg_view(torch.zeros((2, 3, 5)))  # negation pending, applied on read
    assert negated.is_neg()
    with raises(
        ValueError,
        "out is a torch tensor with a pending conjugation or negation; pass a resolved "
        "tensor so that results can be written into it",
    ):
        logcal.log_softmax(torch.from_numpy(X), out=negated)


def test_integer_arguments_out_of_range_are_value_errors():
    with raises(ValueError, f"ignore_index must fit in int64, got {2**70}"):
        logcal.token_stats(X, np.zeros((2, 3), np.int64), ignore_index=2**70)
    with raises(ValueError, f"n must be at most 1024 threads, got {2**31}"):
        logcal.set_num_threads(2**31)
    with raises(ValueError, "n must be at most 1024 threads, got 1000000000"):
        logcal.set_num_threads(10**9)
    assert logcal.get_num_threads() <= 1024


def test_tensors_on_other_torch_devices_are_named():
    torch = pytest.importorskip("torch")
    with raises(
        ValueError,
        "logits is a torch tensor on device 'meta'; logcal reads tensors in CPU or CUDA memory",
    ):
        logcal.token_stats(torch.empty((2, 3), device="meta"))
