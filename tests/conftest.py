"""Shared test settings: hypothesis profiles, the GPU marker, the CPU instruction-set levels."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import logcal

# .ci/run uses the "ci" profile: derandomized, so a CI run is reproducible and never flaky.
# The default, "dev", draws new examples each run; "thorough" draws many more.
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

_LEVELS = ["baseline", "avx2", "avx512"]


def available_isas() -> list[str]:
    """The CPU instruction-set levels this machine and build can run."""
    best = logcal._native.cpu.best_isa()
    return _LEVELS[: _LEVELS.index(best) + 1]


@pytest.fixture(params=available_isas())
def isa(request):
    """Run a test once per available instruction-set level, restoring the best afterwards."""
    cpu = logcal._native.cpu
    before = cpu.isa()
    cpu.set_isa(request.param)
    yield request.param
    cpu.set_isa(before)


def pytest_collection_modifyitems(config, items):
    if logcal.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a usable CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
