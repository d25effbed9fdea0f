"""GPU cases the first device run must cover: streams, strided outputs, k > 64 with a
temperature, skewed calibration data, and results that repeat value for value."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_util import logits_np

import logcal
from _helpers import assert_close

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")


def test_accumulator_updates_on_two_streams_then_read_on_a_third():
    """The state remembers the stream that wrote it: an update on another stream, and a
    compute() outside both, see every sample."""
    g = torch.Generator(device="cuda").manual_seed(1)
    conf = torch.rand(1 << 20, device="cuda", generator=g)
    corr = torch.rand(1 << 20, device="cuda", generator=g) < conf
    x = torch.randn(4096, 5000, device="cuda", generator=g)
    t = torch.randint(0, 5000, (4096,), device="cuda", generator=g)
    acc = logcal.CalibrationAccumulator(n_bins=15)
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(s1):
        acc.update(conf, corr)
        acc.update_from_logits(x, t)
    with torch.cuda.stream(s2):
        acc.update(conf, corr)
    got = acc.compute()
    ref = logcal.CalibrationAccumulator(n_bins=15)
    ref.update(conf.cpu(), corr.cpu())
    ref.update_from_logits(x.cpu(), t.cpu())
    ref.update(conf.cpu(), corr.cpu())
    assert got.n == ref.compute().n
    assert got == ref.compute()


def test_log_softmax_into_a_strided_out():
    x = torch.from_numpy(logits_np(64, 3000, 2)).cuda()
    out = torch.empty((3000, 64), device="cuda").t()  # column-major: stride (1, 64)
    logcal.log_softmax(x, out=out)
    assert_close(out.cpu(), logcal.log_softmax(x.cpu()), rtol=2e-5, atol=2e-6, what="strided out")


@pytest.mark.parametrize("k", [65, 100, 200])
def test_top_k_above_one_pass_with_temperature(k):
    x = torch.from_numpy(logits_np(9, 4000, k)).cuda()
    got = logcal.token_stats(x, top_k=k, temperature=0.6)
    want = logcal.token_stats(x.cpu(), top_k=k, temperature=0.6)
    valid = ~np.isnan(want.logsumexp.numpy())
    assert np.array_equal(got.topk_ids.cpu().numpy()[valid], want.topk_ids.numpy()[valid])
    assert_close(got.topk_logprobs.cpu(), want.topk_logprobs, rtol=2e-5, atol=2e-6, what="top-k")


def test_calibration_of_skewed_confidences_is_bitwise_the_cpus():
    """LLM confidences pile up near 1: most samples land in the last cells."""
    g = np.random.default_rng(3)
    conf = g.beta(5, 2, 1 << 22) ** 0.2
    corr = g.random(conf.size) < conf
    for n_bins in (15, 100):
        gpu = logcal.calibration_stats(
            torch.from_numpy(conf).cuda(), torch.from_numpy(corr).cuda(), n_bins=n_bins
        )
        assert gpu == logcal.calibration_stats(conf, corr, n_bins=n_bins)


def test_results_repeat_value_for_value():
    x = torch.from_numpy(logits_np(300, 20000, 4)).cuda().to(torch.bfloat16)
    t = torch.randint(0, 20000, (300,), device="cuda")
    a = logcal.token_stats(x, t, top_k=8)
    b = logcal.token_stats(x, t, top_k=8)
    for field in a:
        u, v = a[field].cpu().numpy(), b[field].cpu().numpy()
        assert np.array_equal(u, v, equal_nan=u.dtype.kind == "f"), field
    la, lb = logcal.log_softmax(x), logcal.log_softmax(x)
    assert torch.equal(torch.nan_to_num(la, nan=7.0), torch.nan_to_num(lb, nan=7.0))
