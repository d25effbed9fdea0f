"""The calls into the compiled kernels: the CPU binning kernel, the CUDA one, and the part of an
accumulator's state kept on a GPU. The only module of the package that reaches the compiled
modules; arrays travel to them as the views of ``logcal._arrays``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _native
from .._arrays import (
    converted,
    copied,
    cuda_kernels,
    from_host,
    reshaped,
    same_device,
    to_host,
    view,
    zeros,
)
from .._arrays import on_gpu as is_cuda
from ._binning import DEFAULT_EPS, Bootstrap, binning_plan, growing_units
from ._fixed import CAPACITY, FIELDS, MAX_WEIGHT, POISSON_MAX, FixedSums
from ._inputs import Pairs, pairs, sample_error

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
    """Adds the samples to ``target``, which must hold no samples yet; returns the first
    invalid position, or -1. ``light``: only the sums behind the binned metrics (sq_error and
    nll stay 0). OverflowError when a sum would pass the capacity of the fixed-point sums.

    The kernel adds modulo 2^128, so a wrap must be excluded before it runs. Every per-sample
    term is at most ``w * max(1, -log(eps))`` (c, y, (c - y)^2, c y and y^2 are at most 1; the
    clipped probabilities of the NLL are at least eps; the products are rounded, and fdlibm's
    log is within 1 ulp, hence the margin of :func:`_term_bound`), and a bootstrap replicate
    weighs each term at most POISSON_MAX times (its per-unit parts are added times a Poisson
    weight, every partial sum below the total). So from zero, no sum of a call reaches
    ``_term_bound * sum(w)``: where that is below the capacity, one call is exact. Otherwise
    the samples are split until each part's bound is (one sample's bound, at most
    2^30 * 691 * 20 < 2^44, always is), and the parts are added with :meth:`FixedSums.add`,
    which checks each add.
    """
    if p.conf.size == 0:
        return -1
    edges = None if inner_edges is None else np.ascontiguousarray(inner_edges, dtype=np.float64)
    per_weight = _term_bound(eps, boot)

    def add(begin: int, end: int, into: FixedSums) -> int:
        """Adds samples [begin, end) into ``into`` (zero), checked; the first invalid one."""
        weights = None if p.weights is None else p.weights[begin:end]
        if per_weight * _weight_bound(weights, end - begin) >= CAPACITY and end - begin > 1:
            middle = (begin + end) // 2
            bad = add(begin, middle, into)
            if bad >= 0:
                return bad
            rest = FixedSums(into.count.size, 0 if boot is None else boot.n)
            bad = add(middle, end, rest)
            if bad < 0:
                into.add(rest)
            return bad
        bad = _kernel_add(
            p.conf[begin:end],
            p.correct[begin:end],
            weights,
            into,
            edges=edges,
            right_closed=right_closed,
            edges_scale=edges_scale,
            eps=eps,
            boot=boot,
            offset=offset + begin,
            light=light,
        )
        return bad if bad < 0 else begin + bad

    return add(0, p.conf.size, target)


def _term_bound(eps: float, boot: Bootstrap | None) -> float:
    """An upper bound of any fixed-point term of a sample, per unit of its weight (see
    :func:`add_pairs`): 1 or the largest NLL, ``-log(eps)``, with a margin of 2^-40 for the
    roundings, times the largest Poisson weight with a bootstrap."""
    nll = -math.log(eps) * (1.0 + 2.0**-40)
    return max(1.0, nll) * (1.0 + 2.0**-40) * (POISSON_MAX if boot is not None else 1)


def _weight_bound(weights: np.ndarray | None, n: int) -> float:
    """An upper bound of the exact sum of ``n`` weights (n without weights). A float sum of n
    non-negative terms in any order is within (n - 1) 2^-53 of the exact sum, relatively, so
    for n < 2^40 the exact sum is below the float sum times 1 + 2^-12."""
    if weights is None:
        return float(n)
    if n >= 2**40:
        return n * MAX_WEIGHT
    return float(np.sum(weights)) * (1.0 + 2.0**-12)


def _kernel_add(
    conf: np.ndarray,
    correct: np.ndarray,
    weights: np.ndarray | None,
    target: FixedSums,
    *,
    edges: np.ndarray | None,
    right_closed: bool,
    edges_scale: float,
    eps: float,
    boot: Bootstrap | None,
    offset: int,
    light: bool,
) -> int:
    """The CPU kernel (adds modulo 2^128: see :func:`add_pairs`); one call, or one per segment
    of units that grow along the stream."""
    if boot is not None and boot.block is None:
        for begin, end, block, unit_offset in growing_units(offset, offset + conf.size):
            i, j = begin - offset, end - offset
            bad = _kernel_add(
                conf[i:j],
                correct[i:j],
                None if weights is None else weights[i:j],
                target,
                edges=edges,
                right_closed=right_closed,
                edges_scale=edges_scale,
                eps=eps,
                boot=boot._replace(block=block),
                offset=unit_offset,
                light=light,
            )
            if bad >= 0:
                return i + bad
        return -1
    boot_args = {}
    if boot is not None:
        boot_args = dict(
            n_bootstrap=boot.n,
            seed=boot.seed,
            block=boot.block,
            boot_bins=view(target.boot_bins, "boot_bins"),
            boot_totals=view(target.boot_totals, "boot_totals"),
        )
    return _native.cpu.calibration_stats(
        confidence=view(conf, "confidence"),
        correct=view(correct, "correct"),
        weights=None if weights is None else view(weights, "weights"),
        n_bins=target.count.size,
        edges=None if edges is None else view(edges, "edges"),
        right_closed=right_closed,
        edges_scale=float(edges_scale),
        eps=eps,
        light=light,
        offset=offset,
        count=view(target.count, "count"),
        sums=view(target.sums, "sums"),
        **boot_args,
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
    return _native.cpu.top_label(
        probs=view(rows, "probs"),
        labels=view(labels, "labels"),
        confidence=view(conf, "confidence"),
        correct=view(correct, "correct"),
    )


def confidence_from_max_logprob(max_logprob: np.ndarray) -> np.ndarray:
    """``exp(max_logprob)`` with the same bits on every device (the GPU path computes it too)."""
    return _native.cpu.calib_confidence_from_max_logprob(max_logprob)


# --- CUDA inputs ------------------------------------------------------------------------------


def gpu_unsupported(func: str, what: str) -> ValueError:
    return ValueError(
        f"{func}: {what} is not available for CUDA arrays in this version; pass "
        "host arrays (e.g. tensor.cpu()) for it"
    )


def _device_pairs(confidence: Any, correct: Any, func: str) -> tuple:
    """Flat device views of (confidence, correct) in types the CUDA kernel reads, and the
    callers' shape; raises like the CPU for bad dtypes and shapes."""
    c = view(confidence, "confidence", func=func)
    if not is_cuda(correct):
        raise ValueError(
            f"{func}: confidence is on the GPU but correct is not; pass both on the same device"
        )
    y = view(correct, "correct", func=func)
    same_device(c, y, "correct", "confidence")
    if c.dtype in ("float16", "bfloat16"):
        c = converted(c, "float32")
    elif c.dtype not in ("float32", "float64"):
        raise TypeError(
            "confidence must be an array of floating-point probabilities (float16, bfloat16, "
            f"float32 or float64), got dtype {c.dtype}"
        )
    if y.shape != c.shape:
        raise ValueError(
            f"correct must have the same shape as confidence {c.shape}, got shape {y.shape}"
        )
    if y.dtype in ("float16", "bfloat16"):
        y = converted(y, "float32")
    elif y.dtype in ("int8", "int16", "uint16", "uint32", "uint64"):
        y = converted(y, "int64")
    elif y.dtype not in ("bool", "uint8", "int32", "int64", "float32", "float64"):
        raise TypeError(
            "correct must be an array of bool, integers (0 or 1) or floats in [0, 1], "
            f"got dtype {y.dtype}"
        )
    shape = c.shape
    n = int(np.prod(shape))
    return reshaped(c, (n,)), reshaped(y, (n,)), shape


class DeviceState:
    """Calibration sums on one device, in the CPU's layout (count [n_bins] int64, sums
    [n_bins, 7, 2] 64-bit words), and the stream that last wrote them: they are read, or
    written from another stream, only once that stream's work is done."""

    def __init__(self, n_bins: int, inner_edges: np.ndarray | None, like: Any) -> None:
        self.n_bins = n_bins
        self.device = like.device
        self.stream = like.stream
        _, self.count = zeros((n_bins,), "int64", like)
        _, self.sums = zeros((n_bins, len(FIELDS), 2), "int64", like)
        self.edges = (
            None
            if inner_edges is None
            else from_host(np.asarray(inner_edges, dtype=np.float64), like)
        )

    def use_from(self, v: Any, func: str) -> None:
        """Orders a launch on ``v``'s stream after everything queued on this state's stream."""
        if v.device != self.device:
            raise ValueError(
                f"{func}: this accumulator holds state on cuda:{self.device}, got data on "
                f"cuda:{v.device}"
            )
        if v.stream != self.stream:
            _native.cuda.synchronize(self.device, self.stream)
            self.stream = v.stream

    def to_host(self) -> FixedSums:
        _native.cuda.synchronize(self.device, self.stream)
        sums = FixedSums(self.n_bins)
        sums.count = to_host(self.count)
        sums.sums = to_host(self.sums).view(np.uint64)
        return sums


def _gpu_add(
    state: DeviceState, confidence: Any, correct: Any, *, eps: float, light: bool, func: str
) -> int:
    """Adds CUDA (confidence, correct) pairs into ``state``, all or none; on a bad sample,
    raises the CPU's message (read from a host copy). Returns the number of samples."""
    c, y, shape = _device_pairs(confidence, correct, func)
    state.use_from(c, func)
    first = cuda_kernels(func).calibration_stats(
        confidence=c,
        correct=y,
        n_bins=state.n_bins,
        edges=state.edges,
        eps=eps,
        light=light,
        count=state.count,
        sums=state.sums,
    )
    if first >= 0:
        host = pairs(
            to_host(c).reshape(shape), to_host(y).reshape(shape), None, func, allow_empty=True
        )
        raise sample_error(host, first)
    return c.shape[0]


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
    c = view(confidence, "confidence", func=func)
    if weights is not None:
        raise gpu_unsupported(func, "weights=")
    if isinstance(binning, str) and binning == "quantile":
        raise gpu_unsupported(func, "binning='quantile'")
    name, edges, inner = binning_plan(binning, n_bins, None)
    if c.size == 0:
        raise ValueError(f"confidence is empty (shape {c.shape}): {func} needs at least one sample")
    state = DeviceState(edges.size - 1, inner, c)
    _gpu_add(state, confidence, correct, eps=eps, light=light, func=func)
    return name, edges, state.to_host()


class DevicePart:
    """The sums of an accumulator's CUDA updates, kept on their device (the first one's) until
    :meth:`take` reads them; bitwise the sums the CPU would add."""

    def __init__(self, n_bins: int, inner_edges: np.ndarray | None) -> None:
        self._n_bins = n_bins
        self._inner = inner_edges
        self._state: DeviceState | None = None
        self._pairs = 0  # samples of add_pairs among them (an accumulator counts them at once)

    def _state_like(self, like: Any) -> DeviceState:
        if self._state is None:
            self._state = DeviceState(self._n_bins, self._inner, like)
        return self._state

    def add_pairs(self, confidence: Any, correct: Any, *, eps: float, func: str) -> int:
        """Adds CUDA (confidence, correct) pairs (validated: one 8-byte read); returns how many."""
        like = view(confidence, "confidence", func=func)
        n = _gpu_add(self._state_like(like), confidence, correct, eps=eps, light=False, func=func)
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
        and a small binning kernel, no synchronisation but the check of ``targets``."""
        from .._token import token_stats

        x = view(logits, "logits", func=func)
        # One read of the caller's targets: a private copy, checked by the token kernel, then
        # compared with the argmax by the binning kernel.
        t = copied(view(targets, "targets", func=func))
        st = token_stats(logits, t.obj, temperature=temperature, ignore_index=ignore_index)
        n = int(np.prod(x.shape[:-1]))
        if n == 0:
            return
        lp = reshaped(view(st.max_logprob, "max_logprob"), (n,))
        state = self._state_like(lp)
        state.use_from(lp, func)
        t64 = reshaped(t if t.dtype == "int64" else converted(t, "int64"), (n,))
        cuda_kernels(func).calibration_from_logits(
            max_logprob=lp,
            argmax=reshaped(view(st.argmax, "argmax"), (n,)),
            targets=t64,
            ignore_index=ignore_index,
            n_bins=state.n_bins,
            edges=state.edges,
            eps=eps,
            count=state.count,
            sums=state.sums,
        )

    def take(self) -> tuple[FixedSums, int] | None:
        """(the sums, how many of their samples came from :meth:`add_pairs`), and forgets them;
        None when there are none (synchronises)."""
        if self._state is None:
            return None
        taken = (self._state.to_host(), self._pairs)
        self._state = None
        self._pairs = 0
        return taken
