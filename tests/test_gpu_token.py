"""token_stats and log_softmax on a GPU against the CPU core, on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_util import RTOL, TORCH_DTYPES, assert_same_stats, logits_np, to_numpy

import logcal

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

SHAPES = [
    (1, 1),
    (3, 7),
    (65536, 7),
    (1, 32000),
    (9, 32000),
    (300, 32000),
    (2, 128256),
    (5, 151936),
    (3, 256000),
    (1024, 1000),
]


def _tensor(x: np.ndarray, dtype: str):
    return torch.from_numpy(x).to(getattr(torch, dtype))


def _targets(n: int, v: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed + 1)
    t = g.integers(0, v, n)
    t[::5] = -100  # ignored
    if n > 1:
        t[1] = v - 1
    return t


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_token_stats_matches_cpu(shape, dtype):
    n, v = shape
    x = _tensor(logits_np(n, v, seed=n + v), dtype)
    t = torch.from_numpy(_targets(n, v, n * v))
    for k in sorted({0, 1, min(5, v), min(20, v), min(64, v)}):
        cpu = logcal.token_stats(x, t, top_k=k)
        gpu = logcal.token_stats(x.cuda(), t.cuda(), top_k=k)
        assert_same_stats(cpu, gpu, dtype)
        assert all(val.device.type == "cuda" for val in gpu.values())


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize(
    "shape,k",
    [((4, 7), 7), ((6, 1000), 100), ((3, 128256), 200), ((40, 5000), 65), ((2, 300), 300)],
)
def test_top_k_beyond_one_pass(shape, k, dtype):
    n, v = shape
    x = _tensor(logits_np(n, v, seed=k), dtype)
    cpu = logcal.token_stats(x, top_k=k)
    gpu = logcal.token_stats(x.cuda(), top_k=k)
    assert_same_stats(cpu, gpu, dtype)


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_temperature_and_no_targets(dtype):
    x = _tensor(logits_np(50, 3000, seed=3), dtype)
    for temp in (0.3, 1.0, 2.5):
        assert_same_stats(
            logcal.token_stats(x, top_k=3, temperature=temp),
            logcal.token_stats(x.cuda(), top_k=3, temperature=temp),
            dtype,
        )


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("shape", [(3, 7), (1, 32000), (9, 32000), (300, 32000), (2, 128256)])
def test_varentropy_matches_cpu(shape, dtype):
    """Whole rows and rows split over blocks (few rows), with and without targets; the other
    fields keep their bits."""
    n, v = shape
    x = _tensor(logits_np(n, v, seed=n * 7 + v), dtype)
    t = torch.from_numpy(_targets(n, v, n + v))
    for targets in (None, t):
        for temp in (0.3, 1.0, 2.5):
            cpu = logcal.token_stats(x, targets, top_k=3, temperature=temp, varentropy=True)
            gt = None if targets is None else targets.cuda()
            gpu = logcal.token_stats(x.cuda(), gt, top_k=3, temperature=temp, varentropy=True)
            assert_same_stats(cpu, gpu, dtype)
            plain = logcal.token_stats(x.cuda(), gt, top_k=3, temperature=temp)
            for field in plain:
                np.testing.assert_array_equal(
                    to_numpy(gpu[field]), to_numpy(plain[field]), err_msg=field
                )


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_non_contiguous_views(dtype):
    base = _tensor(logits_np(24, 2 * 4099, seed=11, special=False), dtype).cuda()
    views = {
        "every_other_column": base[:, ::2],
        "offset_rows": base[3:, 1:4001],  # rows not 16-byte aligned
        "3d_permuted": base[:, :4000].reshape(4, 6, 4000).permute(1, 0, 2),
        "column_major_rows": base[:, :300].t().contiguous().t(),
    }
    for name, view in views.items():
        lead = view.shape[:-1]
        t = torch.randint(0, view.shape[-1], lead)
        cpu = logcal.token_stats(view.cpu(), t, top_k=5)
        gpu = logcal.token_stats(view, t.cuda(), top_k=5)
        assert_same_stats(cpu, gpu, dtype)
        ls_cpu = logcal.log_softmax(view.cpu())
        ls_gpu = logcal.log_softmax(view)
        np.testing.assert_allclose(
            to_numpy(ls_gpu),
            to_numpy(ls_cpu),
            rtol=RTOL[dtype],
            atol=RTOL[dtype],
            equal_nan=True,
            err_msg=name,
        )


@pytest.mark.parametrize("in_dtype", TORCH_DTYPES)
@pytest.mark.parametrize("out_dtype", [None, "bfloat16", "float16", "float32", "float64"])
@pytest.mark.parametrize(
    "shape",
    [(1, 1), (3, 7), (2, 128256), (600, 32000), (7, 151936)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_log_softmax_matches_cpu(shape, in_dtype, out_dtype):
    n, v = shape
    x = _tensor(logits_np(n, v, seed=n * 7 + v), in_dtype)
    cpu = logcal.log_softmax(x, dtype=out_dtype, temperature=0.7)
    gpu = logcal.log_softmax(x.cuda(), dtype=out_dtype, temperature=0.7)
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape and gpu.device.type == "cuda"
    narrow = cpu.dtype in (torch.bfloat16, torch.float16)
    tol = 1e-2 if narrow else max(RTOL[in_dtype], RTOL[str(cpu.dtype).removeprefix("torch.")])
    np.testing.assert_allclose(to_numpy(gpu), to_numpy(cpu), rtol=tol, atol=tol, equal_nan=True)


def test_log_softmax_out_and_in_place():
    x = _tensor(logits_np(16, 5000, seed=5), "float32").cuda()
    out = torch.full_like(x, 7.0)
    r = logcal.log_softmax(x, out=out)
    assert r is out
    ref = logcal.log_softmax(x.cpu())
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=2e-5, atol=2e-5, equal_nan=True)
    y = x.clone()
    logcal.log_softmax(y, out=y)  # same layout: allowed
    np.testing.assert_allclose(to_numpy(y), to_numpy(ref), rtol=2e-5, atol=2e-5, equal_nan=True)
    with pytest.raises(ValueError, match="overlaps logits in a different layout"):
        logcal.log_softmax(x[:, :-1], out=x[:, 1:])


def test_bad_targets_raise_the_cpu_message():
    x = torch.randn(4, 10)
    t = torch.tensor([0, 3, 10, -100])
    with pytest.raises(ValueError) as cpu_err:
        logcal.token_stats(x, t)
    with pytest.raises(ValueError) as gpu_err:
        logcal.token_stats(x.cuda(), t.cuda())
    assert str(gpu_err.value) == str(cpu_err.value)
    assert "targets[2] = 10" in str(gpu_err.value)


def test_int32_targets_and_host_targets():
    x = _tensor(logits_np(30, 700, seed=2), "float32")
    t = torch.from_numpy(_targets(30, 700, 4))
    cpu = logcal.token_stats(x, t)
    assert_same_stats(cpu, logcal.token_stats(x.cuda(), t.to(torch.int32).cuda()), "float32")
    assert_same_stats(cpu, logcal.token_stats(x.cuda(), t.numpy()), "float32")


def test_deterministic_run_to_run():
    x = _tensor(logits_np(3, 128256, seed=9), "bfloat16").cuda()
    a = logcal.token_stats(x, top_k=20)
    b = logcal.token_stats(x, top_k=20)
    for f in a:
        assert torch.equal(a[f], b[f]) or torch.equal(a[f].isnan(), b[f].isnan()), f


def test_large_index_space():
    """More than 2^31 elements: 64-bit indexing (about 4.3 GB of bf16)."""
    n, v = 16800, 128256  # 2.15e9 elements
    try:
        x = torch.empty((n, v), dtype=torch.bfloat16, device="cuda").normal_(0, 2)
    except torch.cuda.OutOfMemoryError:
        pytest.skip("not enough GPU memory")
    rows = [0, n // 2, n - 1]
    gpu = logcal.token_stats(x, top_k=5)
    cpu = logcal.token_stats(x[rows].cpu(), top_k=5)
    sub = {f: val[rows] for f, val in gpu.items()}
    assert_same_stats(cpu, sub, "bfloat16")
