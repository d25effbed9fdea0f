"""Index values (targets, offsets) are checked by the kernel that reads them.

A caller's thread may change an index array while a call runs; the kernels read each value once
into private memory and check it there, so the call either computes with the values it read or
raises the documented ValueError -- it never reads outside an array. The compiled modules'
functions, called directly, check what the kernels rely on in the same way.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

import logcal
from logcal import _native
from logcal._arrays import view

TARGET_ERROR = re.compile(
    r"^targets\[\d+\] = (-?\d+) is outside \[0, 4096\) and is not ignore_index \(-100\)$"
)


def _mutate_while(call, array, index, bad, good, runs):
    """Run `call` `runs` times while another thread flips array[index] between bad and good;
    returns the outcomes (None for a completed call, else the ValueError's message)."""
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            array[index] = bad
            array[index] = good

    thread = threading.Thread(target=flip)
    thread.start()
    outcomes = []
    try:
        for _ in range(runs):
            try:
                call()
                outcomes.append(None)
            except ValueError as exc:
                outcomes.append(str(exc))
    finally:
        stop.set()
        thread.join()
    return outcomes


def test_targets_changed_during_token_stats_never_leave_the_logits():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, 4096), dtype=np.float32)
    targets = rng.integers(0, 4096, 64)
    expected = logcal.reference.token_stats(logits, targets)
    outcomes = []

    def call():
        s = logcal.token_stats(logits, targets, top_k=3)
        # Every completed call computed with targets it read: row 0's target is the good one.
        np.testing.assert_allclose(s.target_logprob[1:], expected.target_logprob[1:], rtol=1e-5)
        outcomes.append(s)

    messages = _mutate_while(call, targets, 0, 1 << 40, int(targets[0]), runs=200)
    for m in messages:
        if m is not None:
            match = TARGET_ERROR.match(m)
            assert match and m.startswith("targets[0] = 1099511627776"), m


def test_offsets_changed_during_sequence_stats_never_leave_the_data():
    rng = np.random.default_rng(1)
    lp = -rng.random(1 << 16).astype(np.float32)
    offsets = np.linspace(0, lp.size, 257).astype(np.int64)
    expected = logcal.reference.sequence_stats(lp, offsets)
    good = int(offsets[100])

    def call():
        s = logcal.sequence_stats(lp, offsets)
        np.testing.assert_array_equal(s.count[:99], expected.count[:99])
        np.testing.assert_array_equal(s.count[101:], expected.count[101:])

    messages = _mutate_while(call, offsets, 100, 1 << 40, good, runs=200)
    for m in messages:
        assert m is None or m == (
            f"offsets[100] = {1 << 40} is outside [0, {lp.size}]: token_logprobs has "
            f"{lp.size} tokens"
        ), m


# --- the compiled functions, called directly ------------------------------------------------


def _outs(n_rows, k=0, dtype="float32"):
    outs = {
        "logsumexp": np.empty(n_rows, dtype),
        "max_logprob": np.empty(n_rows, dtype),
        "argmax": np.empty(n_rows, np.int64),
        "entropy": np.empty(n_rows, dtype),
    }
    if k:
        outs["topk_ids"] = np.empty((n_rows, k), np.int64)
        outs["topk_logprobs"] = np.empty((n_rows, k), dtype)
    return {name: view(a, name) for name, a in outs.items()}


def test_private_token_stats_checks_targets_itself():
    logits = np.zeros((3, 4096), np.float32)
    targets = np.array([0, 4096, 1], np.int64)
    with pytest.raises(
        ValueError,
        match=re.escape("targets[1] = 4096 is outside [0, 4096) and is not ignore_index (-100)"),
    ):
        _native.cpu.token_stats(
            logits=view(logits, "logits"), targets=view(targets, "targets"), **_outs(3)
        )
    big = np.array([0, 2**64 - 1, 1], np.uint64)
    with pytest.raises(ValueError, match=re.escape(f"targets[1] = {2**64 - 1} is outside")):
        _native.cpu.token_stats(logits=view(logits, "logits"), targets=view(big, "targets"))


def test_private_token_stats_refuses_top_k_above_v_and_small_outputs():
    logits = view(np.zeros((3, 5), np.float32), "logits")
    with pytest.raises(ValueError, match=re.escape("top_k = 6 is outside [0, V = 5]")):
        _native.cpu.token_stats(logits=logits, top_k=6, **_outs(3, k=6))
    small = {**_outs(3), "logsumexp": view(np.empty(2, np.float32), "logsumexp")}
    with pytest.raises(ValueError, match="logsumexp: output array of the wrong shape or layout"):
        _native.cpu.token_stats(logits=logits, **small)
    wrong = {**_outs(3), "argmax": view(np.empty(3, np.int32), "argmax")}
    with pytest.raises(TypeError, match="argmax: output must have dtype int64, got int32"):
        _native.cpu.token_stats(logits=logits, **wrong)
    read_only = np.empty(3, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="entropy: output is read-only"):
        _native.cpu.token_stats(
            logits=logits, **{**_outs(3), "entropy": view(read_only, "entropy")}
        )
    with pytest.raises(ValueError, match="target_logprob and target_rank need targets"):
        _native.cpu.token_stats(
            logits=logits, target_logprob=view(np.empty(3, np.float32), "target_logprob")
        )


def test_private_sequence_stats_checks_offsets_itself():
    lp = view(np.zeros(10, np.float32), "token_logprobs")
    outs = {"count": view(np.empty(2, np.int64), "count")}
    for offsets, message in [
        ([0, 11, 10], "offsets[1] = 11 is outside [0, 10]: token_logprobs has 10 tokens"),
        (
            [1, 5, 10],
            "offsets[0] = 1 must be 0: sequence s is token_logprobs[offsets[s]:"
            "offsets[s+1]], and every token belongs to a sequence",
        ),
        ([0, 5, 4], "offsets must be non-decreasing: offsets[2] = 4 is less than offsets[1] = 5"),
        (
            [0, 5, 9],
            "offsets[2] = 9 must equal the number of tokens (10): the last offset ends "
            "the last sequence",
        ),
    ]:
        off = view(np.array(offsets, np.int64), "offsets")
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            _native.cpu.sequence_stats(token_logprobs=lp, offsets=off, **outs)


@pytest.mark.gpu
def test_cuda_token_stats_and_sequence_stats_check_indices_on_the_device():
    torch = pytest.importorskip("torch")
    logits = torch.zeros((3, 4096), device="cuda")
    targets = torch.tensor([0, 4096, 1], device="cuda")
    with pytest.raises(
        ValueError,
        match=re.escape("targets[1] = 4096 is outside [0, 4096) and is not ignore_index (-100)"),
    ):
        _native.cuda.token_stats(logits=view(logits, "logits"), targets=view(targets, "targets"))
    lp = view(torch.zeros(10, device="cuda"), "token_logprobs")
    count = view(torch.empty(2, dtype=torch.int64, device="cuda"), "count")
    off = view(torch.tensor([0, 5, 4], device="cuda"), "offsets")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "offsets must be non-decreasing: offsets[2] = 4 is less than offsets[1] = 5"
        ),
    ):
        _native.cuda.sequence_stats(token_logprobs=lp, offsets=off, count=count)
