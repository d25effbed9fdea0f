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
