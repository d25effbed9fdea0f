"""The CUDA paths of the public functions: validation with the CPU's messages, allocation in
the caller's framework, and the launches. See ``_device`` for streams and synchronisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _device as dev
from ._arrays import FLOAT_CODES, FLOAT_NAMES

_FIELDS = (
    "logsumexp",
    "max_logprob",
    "argmax",
    "entropy",
    "target_logprob",
    "target_rank",
    "topk_ids",
    "topk_logprobs",
)
_INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_MAX_VOCAB = (1 << 31) - 1


def _logits(x: Any, func: str) -> dev.DeviceArray:
    core = dev.require_cuda(func)
    del core
    a = dev.describe(x)
    if a.dtype not in FLOAT_CODES:
        raise TypeError(
            f"logits must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got {a.dtype}"
        )
    if len(a.shape) == 0:
        raise ValueError(
            "logits must have at least one dimension (the vocabulary axis), got a 0-d array"
        )
    if a.shape[-1] == 0:
        raise ValueError(
            f"logits must have a non-empty last (vocabulary) axis, got shape {a.shape}"
        )
    if int(np.prod(a.shape)) == 0:
        raise ValueError(f"logits must not be empty, got shape {a.shape}")
    if a.shape[-1] > _MAX_VOCAB:
        raise ValueError(f"logits on a GPU must have V < 2**31, got V = {a.shape[-1]}")
    return a


def _device_targets(
    targets: Any,
    a: dev.DeviceArray,
    ignore_index: int,
    func: str,
    core: Any,
    stream: int,
    host_check: Any,
) -> dev.DeviceArray:
    """int64 [n_rows] targets on a's device, validated (one synchronisation)."""
    lead, vocab = a.shape[:-1], a.shape[-1]
    if not dev.is_cuda_array(targets):
        flat = host_check(targets, lead, vocab, ignore_index, func)  # raises like the CPU
        return dev.from_host(flat, a)
    t = dev.describe(targets)
    dev.same_device(a, t, "targets", func)
    if t.dtype not in _INTS:
        raise TypeError(f"targets must be an array of integers, got dtype {t.dtype}")
    if t.shape != lead:
        raise ValueError(
            f"targets must have the leading shape of logits {lead}, got shape {t.shape}"
        )
    if t.dtype == "uint64":
        host_check(dev.to_host(t), lead, vocab, ignore_index, func)
    t = dev.converted(dev.reshaped(t, (-1,)) if len(lead) != 1 else t, "int64", contiguous=True)
    first = dev.full_u64_max(a)
    core.first_bad_target(
        a.device, stream, t.ptr, int(np.prod(lead)), vocab, ignore_index, first.ptr
    )
    if dev.read_u64(core, first, stream) != dev.NONE_FOUND:
        host_check(dev.to_host(dev.reshaped(t, lead)), lead, vocab, ignore_index, func)
        raise AssertionError("device and host disagree on targets")  # pragma: no cover
    return t


def token_stats(
    logits: Any,
    targets: Any,
    top_k: int,
    temperature: float,
    ignore_index: int,
    host_check: Any,
    fields: tuple | None = None,
    keep_targets: bool = False,
) -> dict:
    """The CUDA token_stats: a dict of output arrays (the caller's family). ``fields`` limits
    what is written (internal callers); None: every field the arguments ask for."""
    func = "token_stats"
    core = dev.require_cuda(func)
    a = _logits(logits, func)
    lead, vocab = a.shape[:-1], a.shape[-1]
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if top_k > vocab:
        raise ValueError(f"top_k = {top_k} is larger than the vocabulary size V = {vocab}")
    s = dev.stream(a)
    t = None
    if targets is not None:
        t = _device_targets(targets, a, ignore_index, func, core, s, host_check)
    float_out = "float64" if a.dtype == "float64" else "float32"
    shapes = {f: (lead, float_out) for f in ("logsumexp", "max_logprob", "entropy")}
    shapes["argmax"] = (lead, "int64")
    if t is not None:
        shapes["target_logprob"] = (lead, float_out)
        shapes["target_rank"] = (lead, "int64")
    if top_k > 0:
        shapes["topk_ids"] = ((*lead, top_k), "int64")
        shapes["topk_logprobs"] = ((*lead, top_k), float_out)
    if fields is not None:
        shapes = {f: v for f, v in shapes.items() if f in fields}
    out = {f: dev.empty(shape, dtype, a) for f, (shape, dtype) in shapes.items()}
    code = FLOAT_CODES[a.dtype]
    ws_bytes = int(
        core.token_stats_workspace(a.device, code, list(a.shape), list(a.strides), top_k)
    )
    ws = dev.empty((max(ws_bytes, 1),), "uint8", a)
    core.token_stats(
        a.device,
        s,
        a.ptr,
        code,
        list(a.shape),
        list(a.strides),
        0 if t is None else t.ptr,
        ignore_index,
        top_k,
        temperature,
        [out[f].ptr if f in out else 0 for f in _FIELDS],
        ws.ptr,
        ws_bytes,
    )
    result = {f: v.obj for f, v in out.items()}
    if keep_targets:
        result["_targets"] = t.obj
    return result


def _ranges_overlap(x: dev.DeviceArray, y: dev.DeviceArray) -> bool:
    xl, xh = dev.nbytes_span(x, dev.ITEMSIZE[x.dtype])
    yl, yh = dev.nbytes_span(y, dev.ITEMSIZE[y.dtype])
    return xl < yh and yl < xh


def log_softmax(logits: Any, temperature: float, out_dtype: str | None, out: Any) -> Any:
    func = "log_softmax"
    core = dev.require_cuda(func)
    a = _logits(logits, func)
    if out_dtype is None:
        out_dtype = "float32" if a.dtype in ("float16", "bfloat16") else a.dtype
    elif out_dtype not in FLOAT_CODES:
        raise TypeError(f"dtype must be one of {', '.join(FLOAT_NAMES)}, got {out_dtype}")
    if out is None:
        o = dev.empty(a.shape, out_dtype, a)
        result = o.obj
    else:
        if not dev.is_cuda_array(out):
            raise ValueError("out must be on the GPU, like the logits")
        o = dev.describe(out)
        dev.same_device(a, o, "out", func)
        if o.shape != a.shape:
            raise ValueError(f"out must have the shape of logits {a.shape}, got {o.shape}")
        if o.dtype != out_dtype:
            raise TypeError(f"out must have dtype {out_dtype}, got {o.dtype}")
        if _ranges_overlap(a, o) and not (
            a.ptr == o.ptr and a.strides == o.strides and a.dtype == o.dtype
        ):
            raise ValueError("out overlaps logits in a different layout; pass a separate array")
        result = out
    s = dev.stream(a)
    code = FLOAT_CODES[a.dtype]
    ws_bytes = int(core.log_softmax_workspace(a.device, code, list(a.shape), list(a.strides)))
    ws = dev.empty((max(ws_bytes, 1),), "uint8", a)
    core.log_softmax(
        a.device,
        s,
        a.ptr,
        code,
        list(a.shape),
        list(a.strides),
        o.ptr,
        FLOAT_CODES[out_dtype],
        list(o.strides),
        temperature,
        ws.ptr,
        ws_bytes,
    )
    return result


def sequence_stats(token_logprobs: Any, offsets: Any, mask: Any, host_offsets: Any) -> dict:
    func = "sequence_stats"
    core = dev.require_cuda(func)
    a = dev.describe(token_logprobs)
    if a.dtype not in FLOAT_CODES:
        raise TypeError(
            "token_logprobs must be a floating-point array (float16, bfloat16, float32 or "
            f"float64), got dtype {a.dtype}"
        )
    s = dev.stream(a)
    float_out = "float64" if a.dtype == "float64" else "float32"
    if offsets is not None:
        if len(a.shape) != 1:
            raise ValueError(
                f"token_logprobs must be flat [T] when offsets are given, got shape {a.shape}"
            )
        if mask is not None:
            raise ValueError(
                "mask is for the padded [B, L] layout; with offsets every token of "
                "token_logprobs is counted"
            )
        n_tokens = a.shape[0]
        if dev.is_cuda_array(offsets):
            off = dev.describe(offsets)
            dev.same_device(a, off, "offsets", func)
            if off.dtype not in _INTS:
                raise TypeError(f"offsets must be an array of integers, got dtype {off.dtype}")
            if len(off.shape) != 1 or off.shape[0] < 2 or off.dtype == "uint64":
                host_offsets(dev.to_host(off), n_tokens, func)  # raises with the CPU's message
            off = dev.converted(off, "int64", contiguous=True)
            first = dev.full_u64_max(a)
            core.first_bad_offset(a.device, s, off.ptr, off.shape[0] - 1, n_tokens, first.ptr)
            if dev.read_u64(core, first, s) != dev.NONE_FOUND:
                host_offsets(dev.to_host(off), n_tokens, func)
                raise AssertionError("device and host disagree on offsets")  # pragma: no cover
        else:
            off = dev.from_host(host_offsets(offsets, n_tokens, func), a)
        n_seq = off.shape[0] - 1
        out_shape = (n_seq,)
        layout = dict(
            offsets=off.ptr,
            stride=a.strides[0],
            length=0,
            row_stride=0,
            col_stride=1,
            mask=0,
            mrs=0,
            mcs=1,
        )
        keep = [off]
    else:
        if len(a.shape) < 2:
            raise ValueError(
                f"token_logprobs of shape {a.shape} needs offsets: pass offsets [S+1] for "
                f"the flat layout, or a padded [B, L] array (with mask)"
            )
        out_shape = a.shape[:-1]
        n_seq = int(np.prod(out_shape))
        if n_seq == 0:
            raise ValueError(f"token_logprobs must hold at least one sequence, got shape {a.shape}")
        length = a.shape[-1]
        a = dev.reshaped(a, (n_seq, length))
        m = None
        if mask is not None:
            if not dev.is_cuda_array(mask):
                raise ValueError("mask must be on the GPU, like token_logprobs")
            m = dev.describe(mask)
            dev.same_device(a, m, "mask", func)
            if m.dtype != "bool":
                raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
            if m.shape != (*out_shape, length):
                raise ValueError(
                    f"mask must have the shape of token_logprobs {(*out_shape, length)}, "
                    f"got shape {m.shape}"
                )
            m = dev.as_bytes_view(dev.reshaped(m, (n_seq, length)))
        layout = dict(
            offsets=0,
            stride=1,
            length=length,
            row_stride=a.strides[0],
            col_stride=a.strides[1],
            mask=0 if m is None else m.ptr,
            mrs=0 if m is None else m.strides[0],
            mcs=1 if m is None else m.strides[1],
        )
        keep = [m]
    outs = {f: dev.empty(out_shape, float_out, a) for f in ("sum", "mean", "min", "perplexity")}
    outs["count"] = dev.empty(out_shape, "int64", a)
    core.sequence_stats(
        a.device,
        s,
        a.ptr,
        FLOAT_CODES[a.dtype],
        n_seq,
        layout["offsets"],
        layout["stride"],
        layout["length"],
        layout["row_stride"],
        layout["col_stride"],
        layout["mask"],
        layout["mrs"],
        layout["mcs"],
        [outs[f].ptr for f in ("sum", "mean", "min", "perplexity", "count")],
    )
    del keep  # the inputs stay alive until the launch is queued; the allocator orders reuse
    return {f: v.obj for f, v in outs.items()}


# --- calibration -----------------------------------------------------------------------------

_CONF_CODES = {"float32": 0, "float64": 1}
_CORRECT_CODES = {"uint8": 0, "int32": 1, "int64": 2, "float32": 3, "float64": 4}


class DeviceState:
    """Calibration state on a device, the CPU's layout: count [n_bins] int64 and sums
    [n_bins, 7, 2] (uint64 words, held as int64)."""

    def __init__(self, n_bins: int, like: dev.DeviceArray) -> None:
        self.n_bins = n_bins
        self.like = like
        self.count = dev.zeros((n_bins,), "int64", like)
        self.sums = dev.zeros((n_bins, 7, 2), "int64", like)

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        return dev.to_host(self.count), dev.to_host(self.sums).view(np.uint64)


def calib_pairs(confidence: Any, correct: Any, func: str) -> tuple:
    """Device (confidence, correct) views with kernel codes, or raise like the CPU."""
    c = dev.describe(confidence)
    y = dev.describe(correct) if dev.is_cuda_array(correct) else None
    if y is None:
        raise ValueError(
            f"{func}: confidence is on the GPU but correct is not; pass both on the same device"
        )
    dev.same_device(c, y, "correct", func)
    if c.dtype in ("float16", "bfloat16"):
        c = dev.converted(c, "float32")
    elif c.dtype not in _CONF_CODES:
        raise TypeError(
            "confidence must be an array of floating-point probabilities (float16, bfloat16, "
            f"float32 or float64), got dtype {c.dtype}"
        )
    if y.shape != c.shape:
        raise ValueError(
            f"correct must have the same shape as confidence {c.shape}, got shape {y.shape}"
        )
    if y.dtype == "bool":
        y = dev.as_bytes_view(y)
    elif y.dtype in ("int8", "uint8"):
        y = dev.converted(y, "int64") if y.dtype == "int8" else y
    elif y.dtype in ("int16", "uint16", "uint32", "uint64"):
        y = dev.converted(y, "int64")
    elif y.dtype in ("float16", "bfloat16"):
        y = dev.converted(y, "float32")
    elif y.dtype not in _CORRECT_CODES:
        raise TypeError(
            "correct must be an array of bool, integers (0 or 1) or floats in [0, 1], "
            f"got dtype {y.dtype}"
        )
    n = int(np.prod(c.shape))
    if len(c.shape) != 1:
        c = dev.converted(dev.reshaped(c, (-1,)), c.dtype)
        y = dev.converted(dev.reshaped(y, (-1,)), y.dtype)
    return c, y, n


def calib_launch(
    core: Any,
    state: DeviceState,
    stream: int,
    *,
    n: int,
    n_bins: int,
    edges: Any,
    eps: float,
    light: bool,
    conf: dev.DeviceArray | None = None,
    corr: dev.DeviceArray | None = None,
    first: dev.DeviceArray | None = None,
    logits_source: dict | None = None,
) -> None:
    """Adds samples into ``state`` on ``stream`` (no synchronisation)."""
    like = state.like
    d = dict(n=n, n_bins=n_bins, eps=eps, light=light, count=state.count.ptr, sums=state.sums.ptr)
    if edges is not None:
        d.update(edges=edges.ptr, n_edges=edges.shape[0], right_closed=False)
    if logits_source is not None:
        d.update(logits_source)
    else:
        d.update(
            confidence=conf.ptr,
            conf_type=_CONF_CODES[conf.dtype],
            conf_stride=conf.strides[0],
            correct=corr.ptr,
            correct_type=_CORRECT_CODES[corr.dtype],
            correct_stride=corr.strides[0],
            first_invalid=first.ptr,
        )
    ws_bytes = int(core.calibration_workspace(d))
    ws = dev.empty((max(ws_bytes, 8),), "uint8", like)
    core.calibration_stats(like.device, stream, d, ws.ptr, ws_bytes)
