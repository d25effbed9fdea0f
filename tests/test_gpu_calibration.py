"""Calibration on a GPU: the exact fixed-point state is bitwise the CPU's."""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from logcal import _native

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")


def _pairs(n: int, seed: int):
    g = np.random.default_rng(seed)
    conf = g.random(n)
    conf[: min(n, 6)] = [0.0, 1.0, 0.3, 0.5, 0.9, 0.7][: min(n, 6)]  # exact edges, 1.0
    correct = g.random(n) < conf
    return conf, correct


@pytest.mark.parametrize("n", [1, 7, 1000, 1 << 20, (1 << 22) + 3])
@pytest.mark.parametrize("conf_dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("correct_dtype", ["bool", "int32", "int64", "uint8", "float32", "float64"])
def test_calibration_stats_bitwise(n, conf_dtype, correct_dtype):
    conf, correct = _pairs(n, n)
    c = torch.from_numpy(conf).to(getattr(torch, conf_dtype))
    y = torch.from_numpy(correct).to(getattr(torch, correct_dtype))
    for n_bins in (1, 10, 15, 100):
        cpu = logcal.calibration_stats(c, y, n_bins=n_bins)
        gpu = logcal.calibration_stats(c.cuda(), y.cuda(), n_bins=n_bins)
        assert gpu == cpu
        assert logcal.ece(c.cuda(), y.cuda(), n_bins=n_bins) == logcal.ece(c, y, n_bins=n_bins)


def test_soft_labels_edges_and_multidim():
    g = np.random.default_rng(5)
    c = torch.from_numpy(g.random((300, 70)))
    y = torch.from_numpy(g.random((300, 70))).float()
    edges = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]
    assert logcal.calibration_stats(c.cuda(), y.cuda(), binning=edges) == logcal.calibration_stats(
        c, y, binning=edges
    )
    assert logcal.calibration_stats(c.cuda().t(), y.cuda().t()) == logcal.calibration_stats(
        c.t(), y.t()
    )


def test_accumulator_gpu_chunks_equal_cpu_one_shot():
    conf, correct = _pairs(1 << 21, 9)
    for binning in ("uniform", "quantile", [0.0, 0.2, 0.6, 1.0]):
        gpu = logcal.CalibrationAccumulator(n_bins=15, binning=binning)
        c, y = torch.from_numpy(conf).cuda(), torch.from_numpy(correct).cuda()
        for lo in range(0, conf.size, 300_001):
            gpu.update(c[lo : lo + 300_001], y[lo : lo + 300_001])
        cpu = logcal.CalibrationAccumulator(n_bins=15, binning=binning).update(conf, correct)
        assert gpu.to_dict() == cpu.to_dict()
        assert gpu.compute() == cpu.compute()
        # mixed: half on the GPU, half on the CPU, merged
        mixed = logcal.CalibrationAccumulator(n_bins=15, binning=binning)
        mixed.update(c[: conf.size // 2], y[: conf.size // 2])
        mixed.update(conf[conf.size // 2 :], correct[conf.size // 2 :])
        assert mixed.to_dict() == cpu.to_dict()


def test_invalid_samples_raise_the_cpu_message():
    c = torch.tensor([[0.2, 0.5], [1.5, 0.1]], dtype=torch.float64)
    y = torch.tensor([[1, 0], [1, 0]])
    with pytest.raises(ValueError) as cpu_err:
        logcal.calibration_stats(c, y)
    with pytest.raises(ValueError) as gpu_err:
        logcal.calibration_stats(c.cuda(), y.cuda())
    assert str(gpu_err.value) == str(cpu_err.value)
    acc = logcal.CalibrationAccumulator()
    with pytest.raises(ValueError):
        acc.update(c.cuda(), torch.tensor([[1, 0], [2, 0]]).cuda())
    assert acc.n == 0  # the bad chunk was not added


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_update_from_logits_fused(dtype):
    g = np.random.default_rng(6)
    x = torch.from_numpy(g.standard_normal((4096, 3000)) * 2).to(getattr(torch, dtype)).cuda()
    x[3] = float("nan")
    t = torch.from_numpy(g.integers(0, 3000, 4096)).cuda()
    t[::9] = -100
    acc = logcal.CalibrationAccumulator(n_bins=15).update_from_logits(x, t)
    # replay on the CPU from the GPU's own token statistics: bitwise the same state
    st = logcal.token_stats(x)
    lp = np.ascontiguousarray(st.max_logprob.cpu().numpy())
    am, tt = st.argmax.cpu().numpy(), t.cpu().numpy()
    keep = ~np.isnan(lp) & (tt != -100)
    conf = _native.cpu.calib_confidence_from_max_logprob(lp)
    ref = logcal.CalibrationAccumulator(n_bins=15).update(conf[keep], (am == tt)[keep])
    assert acc.to_dict() == ref.to_dict()
    # and close to the all-CPU path (token statistics may differ in the last bits)
    cpu = logcal.CalibrationAccumulator(n_bins=15).update_from_logits(x.cpu(), t.cpu())
    assert abs(cpu.compute().ece() - acc.compute().ece()) < 1e-6
    assert cpu.n == acc.n
