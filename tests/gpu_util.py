"""Helpers of the GPU tests: inputs with the hard cases, and comparison with the CPU core."""

from __future__ import annotations

import numpy as np

TORCH_DTYPES = ("float32", "float64", "float16", "bfloat16")
# Float outputs are float32 for 16/32-bit logits: both back ends accumulate in float32 within a
# thread / chunk and merge in float64, so they agree to a few float32 ulps of each output.
RTOL = {"float32": 2e-5, "float16": 2e-5, "bfloat16": 2e-5, "float64": 1e-11}


def logits_np(n: int, v: int, seed: int, special: bool = True) -> np.ndarray:
    """float32 [n, v], random (never zeros), with the edge cases in the first rows: a -inf
    prefix, an all -inf row, a NaN, quantised values (ties), +inf, a sorted row."""
    g = np.random.default_rng(seed)
    x = (g.standard_normal((n, v)) * 3 + 0.25).astype(np.float32)
    if special:
        rows = iter(range(n))
        for case in ("mask", "all_inf", "nan", "ties", "posinf", "ascending", "one_finite"):
            r = next(rows, None)
            if r is None:
                break
            if case == "mask":
                x[r, : max(v - 3, 0)] = -np.inf
            elif case == "all_inf":
                x[r] = -np.inf
            elif case == "nan":
                x[r, v // 2] = np.nan
            elif case == "ties":
                x[r] = np.round(x[r] / 2)
            elif case == "posinf":
                x[r, v - 1] = np.inf
            elif case == "ascending":
                x[r] = np.sort(x[r])
            elif case == "one_finite":
                x[r] = -np.inf
                x[r, v - 1] = 1.5
    return x


def to_numpy(x):
    """A host numpy copy of a torch/cupy/numpy result (bfloat16 widened to float32)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.detach().cpu().numpy()
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy.asnumpy(x)
    return np.asarray(x)


def assert_same_stats(cpu, gpu, dtype: str) -> None:
    """Integer fields exactly equal; float fields to RTOL (NaN where the CPU has NaN)."""
    assert set(cpu) == set(gpu), (set(cpu), set(gpu))
    for field in cpu:
        a, b = to_numpy(cpu[field]), to_numpy(gpu[field])
        assert a.shape == b.shape, (field, a.shape, b.shape)
        if a.dtype.kind in "iu":
            np.testing.assert_array_equal(b, a, err_msg=field)
        else:
            assert b.dtype == a.dtype, (field, a.dtype, b.dtype)
            np.testing.assert_allclose(
                b, a, rtol=RTOL[dtype], atol=RTOL[dtype], equal_nan=True, err_msg=field
            )
