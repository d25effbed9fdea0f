"""Token level on [1024, 128256] float32 logits (525 MB): token_stats(top_k=20) and log_softmax,
against the float64 numpy reference, the float32 numpy composite of bench/peers_cpu.py, and
torch CPU when installed."""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from logcal import reference

N, V, K = 1024, 128256, 20


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((N, V), dtype=np.float32) * 3
    targets = rng.integers(0, V, N)
    return logits, targets


def numpy_log_softmax(x):
    m = x.max(-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_token_stats(x, targets):
    """The float32 composite a numpy user writes (bench/peers_cpu.py)."""
    rows = np.arange(x.shape[0])
    lp = numpy_log_softmax(x)
    target_lp = lp[rows, targets]
    entropy = -(np.exp(lp) * lp).sum(-1)
    argmax = lp.argmax(-1)
    rank = (lp > target_lp[:, None]).sum(-1)
    topk = np.argpartition(-lp, K, axis=-1)[:, :K]
    return target_lp, entropy, argmax, lp[rows, argmax], rank, topk


def test_token_stats_logcal(timed, data):
    x, t = data
    timed(
        "token_stats top-20 [1024,128256] f32",
        "logcal",
        lambda: logcal.token_stats(x, t, top_k=K),
        rounds=10,
    )


def test_token_stats_reference(timed, data):
    x, t = data
    timed(
        "token_stats top-20 [1024,128256] f32",
        "numpy reference (float64)",
        lambda: reference.token_stats(x, t, top_k=K),
        rounds=3,
    )


def test_token_stats_numpy_composite(timed, data):
    x, t = data
    timed(
        "token_stats top-20 [1024,128256] f32",
        "numpy composite (float32)",
        lambda: numpy_token_stats(x, t),
        rounds=3,
    )


def test_token_stats_torch(timed, data):
    torch = pytest.importorskip("torch")
    x, t = torch.from_numpy(data[0]), torch.from_numpy(data[1])

    def composite():
        lp = torch.log_softmax(x, -1)
        tl = lp.gather(1, t[:, None])[:, 0]
        ent = -(lp.exp() * lp).sum(-1)
        mx, am = lp.max(-1)
        rank = (lp > tl[:, None]).sum(-1)
        return tl, ent, mx, am, rank, lp.topk(K, -1)

    timed("token_stats top-20 [1024,128256] f32", "torch CPU composite", composite, rounds=3)


def test_log_softmax_logcal(timed, data):
    timed("log_softmax [1024,128256] f32", "logcal", lambda: logcal.log_softmax(data[0]), rounds=10)


def test_log_softmax_reference(timed, data):
    timed(
        "log_softmax [1024,128256] f32",
        "numpy reference (float64)",
        lambda: reference.log_softmax(data[0]),
        rounds=3,
    )


def test_log_softmax_numpy(timed, data):
    timed(
        "log_softmax [1024,128256] f32",
        "numpy (float32)",
        lambda: numpy_log_softmax(data[0]),
        rounds=3,
    )


def test_log_softmax_torch(timed, data):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(data[0])
    timed("log_softmax [1024,128256] f32", "torch CPU", lambda: torch.log_softmax(x, -1), rounds=5)
