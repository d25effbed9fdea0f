"""The calls into the compiled kernels: the CPU binning kernel, the CUDA glue, and the part of
an accumulator's state kept on a GPU. The only module of the package that reaches the compiled
modules (``_native``, ``_device``, ``_cuda_ops``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _device, _native
from ._binning import DEFAULT_EPS, Bootstrap, binning_plan
from ._fixed import FixedSums
from ._inputs import Pairs, pairs, sample_error

_CONF_CODES = {"float32": 0, "float64": 1}
_CORRECT_CODES = {"uint8": 0, "int32": 1, "int64": 2, "float32": 3, "float64": 4}


def is_cuda(x: Any) -> bool:
    """Whether ``x`` is an array in CUDA memory (its statistics are then computed there)."""
    return _device.is_cuda_array(x)


# --- the CPU kernel ---------------------------------------------------------------------------


def add_pairs(
    p: Pairs,
    target: FixedSums,
    *,
    inner_edges: np.ndarray | None = None,
    right_closed: bool = False,
    edges_scale: float = 0.0,
    eps: float = DEFAULT_EPS,
    boot: Bootstrap | None = None,
    offset: int = 0,
    light: bool = False,
) -> int:
    """Adds the samples to `target`; returns the first invalid position, or -1. ``light``:
    only the sums behind the binned metrics (sq_error and nll stay 0)."""
    if p.conf.size == 0:
        return -1
    edges = None if inner_edges is None else np.ascontiguousarray(inner_edges, dtype=np.float64)
    return _native.cpu.calibration_stats(
        p.conf,
        _CONF_CODES[p.conf.dtype.name],
        p.correct,
        _CORRECT_CODES[p.correct.dtype.name],
        p.weights,
        target.count.size,
        edges,
        right_closed,
        float(edges_scale),
        eps,
        light,
        0 if boot is None else boot.n,
        0 if boot is None else boot.seed,
        1 if boot is None else boot.block,
        offset,
        target.count,
        target.sums.reshape(-1),
        target.boot_bins.reshape(-1),
        target.boot_totals.reshape(-1),
    )


def add_pairs_checked(p: Pairs, target: FixedSums, **kwargs: Any) -> None:
    """:func:`add_pairs`, raising the message of the first invalid sample."""
    bad = add_pairs(p, target, **kwargs)
    if bad >= 0:
        raise sample_error(p, bad)


def top_label_rows(
    rows: np.ndarray, labels: np.ndarray, conf: np.ndarray, correct: np.ndarray
) -> tuple[int, int]:
    """Fills ``conf``/``correct`` from probability rows [N, K] and int64 labels [N]; returns the
    first row with a probability outside [0, 1] and the first label outside [0, K) (-1: none)."""
    return _native.cpu.top_label(rows, 0 if rows.dtype == np.float32 else 1, labels, conf, correct)


def confidence_from_max_logprob(max_logprob: np.ndarray) -> np.ndarray:
    """``exp(max_logprob)`` with the same bits on every device (the GPU path computes it too)."""
    return _native.cpu.calib_confidence_from_max_logprob(max_logprob)


# --- CUDA inputs ------------------------------------------------------------------------------


def gpu_unsupported(func: str, what: str) -> ValueError:
    return ValueError(
        f"{func}: {what} is not available for CUDA arrays in this version; pass "
        "host arrays (e.g. tensor.cpu()) for it"
    )


def _gpu_run(
    confidence: Any,
    correct: Any,
    state: Any,
    inner: np.ndarray | None,
    *,
    eps: float,
    light: bool,
    func: str,
) -> None:
    """Adds CUDA (confidence, correct) pairs into the device state `state`; validates them with
    one synchronisation and, on a bad sample, raises the CPU's message (read from a host copy)."""
    from .. import _cuda_ops

    core = _device.require_cuda(func)
    shape = _device.describe(confidence).shape
    c, y, n = _cuda_ops.calib_pairs(confidence, correct, func)
    if n == 0:
        return
    s = _device.stream(c)
    first = _device.full_u64_max(c)
    scratch = _cuda_ops.DeviceState(state.n_bins, state.like)
    edges = None if inner is None else _device.from_host(np.asarray(inner, np.float64), c)
    _cuda_ops.calib_launch(
        core,
        scratch,
        s,
        n=n,
        n_bins=state.n_bins,
        edges=edges,
        eps=eps,
        light=light,
        conf=c,
        corr=y,
        first=first,
    )
    if _device.read_u64(core, first, s) != _device.NONE_FOUND:
        host = pairs(
            _device.to_host(c).reshape(shape),
            _device.to_host(y).reshape(shape),
            None,
            func,
            allow_empty=True,
        )
        probe = FixedSums(state.n_bins)
        bad = add_pairs(host, probe, inner_edges=inner, eps=eps, light=light)
        raise sample_error(host, bad if bad >= 0 else 0)
    core.calibration_add_state(
        state.like.device,
        s,
        state.count.ptr,
        state.sums.ptr,
        scratch.count.ptr,
        scratch.sums.ptr,
        state.n_bins,
    )


def gpu_stats(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int,
    binning: Any,
    weights: Any,
    eps: float,
    light: bool,
    func: str,
) -> tuple:
    """(name, edges, sums) of CUDA pairs, computed on their GPU (synchronises: the result is
    host numbers)."""
    from .. import _cuda_ops

    _device.require_cuda(func)
    if weights is not None:
        raise gpu_unsupported(func, "weights=")
    if isinstance(binning, str) and binning == "quantile":
        raise gpu_unsupported(func, "binning='quantile'")
    name, edges, inner = binning_plan(binning, n_bins, None)
    nb = edges.size - 1
    c = _device.describe(confidence)
    if int(np.prod(c.shape)) == 0:
        raise ValueError(f"confidence is empty (shape {c.shape}): {func} needs at least one sample")
    state = _cuda_ops.DeviceState(nb, c)
    _gpu_run(confidence, correct, state, inner, eps=eps, light=light, func=func)
    sums = FixedSums(nb)
    sums.count, sums.sums = state.to_host()
    return name, edges, sums


class DevicePart:
    """The sums of an accumulator's CUDA updates, kept on their device (the first one's) until
    :meth:`take` reads them; bitwise the sums the CPU would add."""

    def __init__(self, n_bins: int, inner_edges: np.ndarray | None) -> None:
        self._n_bins = n_bins
        self._inner = inner_edges
        self._state = None
        self._edges = None
        self._pairs = 0  # samples of add_pairs among them (an accumulator counts them at once)

    def _state_like(self, like: Any, func: str) -> Any:
        from .. import _cuda_ops

        if self._state is None:
            self._state = _cuda_ops.DeviceState(self._n_bins, like)
            self._edges = (
                None
                if self._inner is None
                else _device.from_host(np.asarray(self._inner, dtype=np.float64), like)
            )
        elif self._state.like.device != like.device:
            raise ValueError(
                f"{func}: this accumulator holds state on cuda:{self._state.like.device}"
                f", got data on cuda:{like.device}"
            )
        return self._state

    def add_pairs(self, confidence: Any, correct: Any, *, eps: float, func: str) -> int:
        """Adds CUDA (confidence, correct) pairs (validated: one 8-byte read); returns how many."""
        _device.require_cuda(func)
        c = _device.describe(confidence)
        _gpu_run(
            confidence,
            correct,
            self._state_like(c, func),
            self._inner,
            eps=eps,
            light=False,
            func=func,
        )
        n = int(np.prod(c.shape))
        self._pairs += n
        return n

    def add_logits(
        self,
        logits: Any,
        targets: Any,
        *,
        temperature: float,
        ignore_index: int,
        eps: float,
        func: str,
    ) -> None:
        """Adds the top-1 (confidence, correct) pairs of CUDA logits: one pass over the logits
        and a small binning kernel, no synchronisation but the range check of ``targets``."""
        from .. import _cuda_ops
        from .._token import _targets

        core = _device.require_cuda(func)
        out = _cuda_ops.token_stats(
            logits,
            targets,
            0,
            temperature,
            ignore_index,
            _targets,
            fields=("max_logprob", "argmax"),
            keep_targets=True,
        )
        lp = _device.describe(out["max_logprob"])
        n = int(np.prod(lp.shape))
        if n == 0:
            return
        state = self._state_like(lp, func)
        t = _device.describe(out["_targets"])
        am = _device.describe(out["argmax"])
        src = dict(
            max_logprob=lp.ptr,
            lp_type=0 if lp.dtype == "float32" else 1,
            argmax=am.ptr,
            targets=t.ptr,
            ignore_index=ignore_index,
        )
        _cuda_ops.calib_launch(
            core,
            state,
            _device.stream(lp),
            n=n,
            n_bins=state.n_bins,
            edges=self._edges,
            eps=eps,
            light=False,
            logits_source=src,
        )

    def take(self) -> tuple[FixedSums, int] | None:
        """(the sums, how many of their samples came from :meth:`add_pairs`), and forgets them;
        None when there are none (synchronises)."""
        if self._state is None:
            return None
        sums = FixedSums(self._n_bins)
        sums.count, sums.sums = self._state.to_host()
        taken = (sums, self._pairs)
        self._state = self._edges = None
        self._pairs = 0
        return taken
