"""sequence_stats on a GPU: the same bits as the CPU (the same additions in the same order)."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_util import TORCH_DTYPES, to_numpy

import logcal

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")


def _same(cpu, gpu):
    for f in ("sum", "mean", "min", "count"):  # bitwise (NaN where NaN)
        np.testing.assert_array_equal(to_numpy(gpu[f]), to_numpy(cpu[f]), err_msg=f)
    # perplexity = exp(-mean): the device's exp and the host's may differ by an ulp
    np.testing.assert_allclose(
        to_numpy(gpu["perplexity"]), to_numpy(cpu["perplexity"]), rtol=1e-6, equal_nan=True
    )


def _lengths(seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    lens = g.integers(0, 600, 3000)
    lens[:6] = [0, 1, 8191, 8192, 8193, 70000]  # empty, block edges, multi-block
    lens[10] = 65536 * 8 + 5  # a long sequence (the block-per-sequence kernel)
    return lens


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_flat_bitwise_equal_to_cpu(dtype):
    lens = _lengths(1)
    off = np.concatenate([[0], np.cumsum(lens)])
    g = np.random.default_rng(2)
    lp = torch.from_numpy(-g.exponential(2.0, int(off[-1]))).to(getattr(torch, dtype))
    lp[5] = float("nan")
    lp[off[7] + 3] = float("-inf")
    cpu = logcal.sequence_stats(lp, offsets=off)
    gpu = logcal.sequence_stats(lp.cuda(), offsets=torch.from_numpy(off).cuda())
    _same(cpu, gpu)
    gpu2 = logcal.sequence_stats(lp.cuda(), offsets=off)  # host offsets
    _same(cpu, gpu2)


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_flat_strided_and_2pow20_sequences(dtype):
    g = np.random.default_rng(3)
    lens = g.integers(1, 512, 1 << 20)
    off = np.concatenate([[0], np.cumsum(lens)])
    base = torch.from_numpy(-g.exponential(1.0, 2 * int(off[-1]))).to(getattr(torch, dtype))
    lp = base[::2]
    _same(
        logcal.sequence_stats(lp, offsets=off),
        logcal.sequence_stats(base.cuda()[::2], offsets=torch.from_numpy(off).cuda()),
    )


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (300, 8200), (3, 600000)])
def test_padded_with_and_without_mask(shape, dtype):
    g = np.random.default_rng(shape[1])
    x = torch.from_numpy(-g.exponential(1.0, shape)).to(getattr(torch, dtype))
    m = torch.from_numpy(g.random(shape) < 0.7)
    x[0, 0] = float("nan")
    m[0, 0] = False  # masked NaN does not count
    _same(logcal.sequence_stats(x), logcal.sequence_stats(x.cuda()))
    _same(logcal.sequence_stats(x, mask=m), logcal.sequence_stats(x.cuda(), mask=m.cuda()))
    xt = x.t().contiguous().t()  # column-major: strided rows
    _same(logcal.sequence_stats(xt, mask=m), logcal.sequence_stats(xt.cuda(), mask=m.cuda()))


def test_bad_offsets_raise_the_cpu_message():
    lp = torch.randn(10)
    for off in ([0, 5, 3, 10], [1, 5, 10], [0, 5, 9], [0, 11]):
        t = torch.tensor(off)
        with pytest.raises(ValueError) as cpu_err:
            logcal.sequence_stats(lp, offsets=t)
        with pytest.raises(ValueError) as gpu_err:
            logcal.sequence_stats(lp.cuda(), offsets=t.cuda())
        assert str(gpu_err.value) == str(cpu_err.value)


def test_run_to_run_bitwise():
    g = np.random.default_rng(4)
    lens = g.integers(0, 100000, 64)
    off = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)])).cuda()
    lp = torch.randn(int(off[-1]), device="cuda", dtype=torch.float32)
    a = logcal.sequence_stats(lp, offsets=off)
    b = logcal.sequence_stats(lp, offsets=off)
    for f in a:
        assert torch.equal(a[f].nan_to_num(), b[f].nan_to_num()), f
