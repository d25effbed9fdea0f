"""Helpers shared by the tests: comparisons that print the first mismatches."""

from __future__ import annotations

import re

import numpy as np

# Tolerances per output dtype, relative and absolute. float32 outputs are accumulated in at
# least float32 and finished in float64: 1e-5 relative. The absolute floor 1e-6 is for values
# near zero (a log-probability of -1e-9 cannot be held to 1e-5 relative once the sum of
# exponentials, about 1 + 1e-9, is formed in float32).
TOL = {
    "float32": dict(rtol=1e-5, atol=1e-6),
    "float64": dict(rtol=1e-12, atol=1e-12),
}


def to_numpy(x) -> np.ndarray:
    """numpy view of a result (torch tensors included; bfloat16 widened to float32)."""
    if hasattr(x, "detach"):
        import torch

        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.detach().numpy()
    x = np.asarray(x)
    if x.dtype.name == "bfloat16":
        return x.astype(np.float32)
    return x


def assert_close(actual, expected, *, rtol, atol, what=""):
    """allclose with NaN == NaN and matching infinities; the message shows the worst entries."""
    a = to_numpy(actual).astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    same_nan = np.isnan(a) == np.isnan(e)
    both_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    with np.errstate(invalid="ignore"):
        close = np.abs(a - e) <= atol + rtol * np.abs(e)
    ok = same_nan & (np.isnan(e) | both_inf | close)
    if not ok.all():
        bad = np.argwhere(~ok)[:5]
        rows = [
            f"  at {tuple(int(i) for i in b)}: got {a[tuple(b)]!r}, want {e[tuple(b)]!r}"
            for b in bad
        ]
        raise AssertionError(f"{what}: {int((~ok).sum())} of {ok.size} differ\n" + "\n".join(rows))


def assert_equal(actual, expected, what=""):
    a, e = to_numpy(actual), np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    if not np.array_equal(a, e):
        bad = np.argwhere(a != e)[:5]
        rows = [
            f"  at {tuple(int(i) for i in b)}: got {a[tuple(b)]!r}, want {e[tuple(b)]!r}"
            for b in bad
        ]
        raise AssertionError(
            f"{what}: {int((a != e).sum())} of {a.size} differ\n" + "\n".join(rows)
        )


def exact(message: str) -> str:
    """A ``pytest.raises(match=)`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


def assert_same(a, b):
    """Two batches with the same fields and values (NaN equal to NaN)."""
    assert sorted(a) == sorted(b)
    for name in a:
        x, y = a[name], b[name]
        if not isinstance(x, np.ndarray):
            assert x == y, name
        elif x.dtype == object:
            assert y.dtype == object and x.tolist() == y.tolist(), name
        else:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
