"""torch and cupy arrays in, the same family out, on the array's device and the caller's
current stream."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_util import to_numpy

import logcal

pytestmark = pytest.mark.gpu

SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
  long long start = clock64();
  while (clock64() - start < cycles) {}
}
"""


def _check_softmax(got, x_host):
    ref = logcal.log_softmax(x_host)
    np.testing.assert_allclose(to_numpy(got), ref, rtol=2e-5, atol=2e-5)


def test_torch_side_stream_is_honoured():
    torch = pytest.importorskip("torch")
    src = torch.randn(64, 5000, device="cuda")
    x = torch.full_like(src, -5.0)  # a different answer if read too early
    t = torch.randint(0, 5000, (64,), device="cuda")
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time on s
        x.copy_(src)  # ordered after the sleep on s only
        ls = logcal.log_softmax(x)
        st = logcal.token_stats(x, t, top_k=3)
        seq = logcal.sequence_stats(x[:, :100])
    s.synchronize()
    _check_softmax(ls, src.cpu().numpy())
    ref = logcal.token_stats(src.cpu(), t.cpu(), top_k=3)
    np.testing.assert_array_equal(to_numpy(st.argmax), to_numpy(ref.argmax))
    np.testing.assert_allclose(
        to_numpy(seq.sum), to_numpy(logcal.sequence_stats(src[:, :100].cpu()).sum)
    )


def test_cupy_in_cupy_out_and_stream_honoured():
    cupy = pytest.importorskip("cupy")
    spin = cupy.RawKernel(SPIN, "spin")
    g = np.random.default_rng(0)
    src_host = g.standard_normal((32, 3000)).astype(np.float32)
    src = cupy.asarray(src_host)
    x = cupy.full_like(src, -5.0)
    cupy.cuda.Device().synchronize()
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        spin((1,), (1,), (np.int64(200_000_000),))
        x[...] = src
        ls = logcal.log_softmax(x)
        st = logcal.token_stats(x, top_k=2)
        conf = cupy.asarray(g.random(1000))
        corr = cupy.asarray(g.random(1000) < 0.5)
        cal = logcal.calibration_stats(conf, corr)  # synchronises (host result), on s
    s.synchronize()
    assert isinstance(ls, cupy.ndarray) and isinstance(st.argmax, cupy.ndarray)
    _check_softmax(ls, src_host)
    np.testing.assert_array_equal(
        cupy.asnumpy(st.topk_ids), logcal.token_stats(src_host, top_k=2).topk_ids
    )
    assert cal == logcal.calibration_stats(cupy.asnumpy(conf), cupy.asnumpy(corr))


def test_foreign_cuda_array_interface_object():
    cupy = pytest.importorskip("cupy")

    class Foreign:
        def __init__(self, a):
            self._a = a

        @property
        def __cuda_array_interface__(self):
            return self._a.__cuda_array_interface__

    a = cupy.asarray(np.random.default_rng(1).standard_normal((4, 100)).astype(np.float32))
    got = logcal.log_softmax(Foreign(a))
    _check_softmax(got, cupy.asnumpy(a))


def test_dlpack_capsule_producer():
    torch = pytest.importorskip("torch")
    x = torch.randn(5, 50, device="cuda")

    class Producer:
        def __dlpack__(self, stream=None):
            return x.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return x.__dlpack_device__()

    st = logcal.token_stats(Producer())
    np.testing.assert_array_equal(to_numpy(st.argmax), to_numpy(logcal.token_stats(x.cpu()).argmax))


def test_outputs_on_the_inputs_device():
    torch = pytest.importorskip("torch")
    for d in range(torch.cuda.device_count()):
        x = torch.randn(3, 40, device=f"cuda:{d}")
        st = logcal.token_stats(x, top_k=2)
        assert all(v.device == x.device for v in st.values())
        assert logcal.log_softmax(x).device == x.device
