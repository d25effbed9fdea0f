"""The CUDA module: built where nvcc was found, and on a GPU it agrees with the CPU core."""

from __future__ import annotations

import os

import numpy as np
import pytest

import logcal
from _helpers import assert_close


def test_cuda_module_was_built_where_ci_expects_it():
    """.ci/run sets LOGCAL_EXPECT_CUDA=1 when nvcc is on PATH: the build must then compile the
    CUDA module (the compile check), even on a machine without a GPU."""
    if os.environ.get("LOGCAL_EXPECT_CUDA") != "1":
        pytest.skip("LOGCAL_EXPECT_CUDA is not set")
    assert logcal.cuda_compiled()


def test_capability_probes_are_consistent():
    assert isinstance(logcal.cuda_compiled(), bool)
    assert isinstance(logcal.cuda_available(), bool)
    if not logcal.cuda_compiled():
        assert logcal.cuda_available() is False


@pytest.mark.gpu
def test_gpu_row_logsumexp_matches_cpu_core():
    from logcal import _core_cuda

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((37, 128256)) * 3).astype(np.float32)
    x[3, ::2] = -np.inf
    x[5, :] = -np.inf
    x[6, 11] = np.nan
    got = _core_cuda.selftest_row_logsumexp(x)
    want = logcal.token_stats(x).logsumexp
    assert_close(got, want, rtol=1e-6, atol=1e-6, what="logsumexp")
