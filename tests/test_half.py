"""The 16-bit float conversions of the shared core, exhaustively against numpy and ml_dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from logcal import _core_cpu as core

ml_dtypes = pytest.importorskip("ml_dtypes")


def test_every_float16_widens_exactly():
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = core._fp16_bits_to_float32(bits)
    want = bits.view(np.float16).astype(np.float32)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), bits[~same][:5]


def _float32_samples():
    rng = np.random.default_rng(0)
    every_exponent = (np.arange(256, dtype=np.uint32) << 23)[:, None] | rng.integers(
        0, 1 << 23, (256, 4000), dtype=np.uint32
    )
    # Halfway cases between neighbouring float16 / bfloat16 values, and their neighbours.
    halfway = np.arange(0, 1 << 16, dtype=np.uint32)
    ties16 = (halfway << 16) | 0x8000
    ties13 = (np.arange(0x38000000 >> 13, 0x47800000 >> 13, dtype=np.uint32) << 13) | 0x1000
    u = np.concatenate([every_exponent.ravel(), ties16, ties16 + 1, ties16 - 1, ties13, ties13 - 1])
    u = np.concatenate([u, u | 0x80000000])
    return u.view(np.float32)


def test_float32_to_float16_rounds_to_nearest_even():
    x = _float32_samples()
    got = core._float32_to_fp16_bits(x)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], want[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()


def test_float32_to_bfloat16_rounds_to_nearest_even():
    x = _float32_samples()
    got = core._float32_to_bf16_bits(x)
    with np.errstate(invalid="ignore"):
        want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], want[~nan])
    assert np.isnan(got[nan].view(ml_dtypes.bfloat16).astype(np.float32)).all()
