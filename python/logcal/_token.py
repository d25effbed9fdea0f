"""Token level: ``log_softmax`` and ``token_stats`` over logits of shape ``[..., V]``."""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import numpy as np

from ._arrays import (
    FLOAT_NAMES,
    INT_NAMES,
    ArrayView,
    dtype_name,
    empty,
    format_index,
    int_arg,
    kernels,
    numpy_of,
    same_device,
    to_host,
    view,
    wrap,
)
from ._record import Record

_MAX_GPU_VOCAB = 1 << 31
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}

_ALWAYS = ("logsumexp", "max_logprob", "argmax", "entropy")
_TARGET_FIELDS = ("target_logprob", "target_rank")
_TOPK_FIELDS = ("topk_ids", "topk_logprobs")
_FIELDS = (*_ALWAYS, "varentropy", *_TARGET_FIELDS, *_TOPK_FIELDS, "candidate_logprobs")


class TokenStats(Record):
    """Per-token statistics from :func:`token_stats`: an immutable record of arrays.

    Fields (leading shape ``[...]`` of the logits):

    ``logsumexp``, ``max_logprob``, ``argmax`` (int64), ``entropy`` (nats); with
    ``varentropy=True``, ``varentropy`` (nats squared); with targets,
    ``target_logprob`` and ``target_rank`` (int64); with ``top_k > 0``, ``topk_ids``
    (int64, ``[..., k]``) and ``topk_logprobs`` (``[..., k]``); with ``candidate_ids``,
    ``candidate_logprobs`` (``[..., C]``).

    Fields that were not computed do not exist: reading one raises ``AttributeError`` saying
    which argument brings it. The record is also a read-only mapping of the fields it has.
    """

    __slots__ = ()
    logsumexp: Any
    max_logprob: Any
    argmax: Any
    entropy: Any
    varentropy: Any
    target_logprob: Any
    target_rank: Any
    topk_ids: Any
    topk_logprobs: Any
    candidate_logprobs: Any
    _FIELDS = _FIELDS
    _OPTIONAL: ClassVar[dict] = {
        "varentropy": "pass varentropy=True to token_stats",
        **dict.fromkeys(_TARGET_FIELDS, "pass targets= to token_stats"),
        **dict.fromkeys(_TOPK_FIELDS, "pass top_k > 0 to token_stats"),
        "candidate_logprobs": "pass candidate_ids= to token_stats",
    }


# --- checks of what can be seen without reading data: once, here, naming the argument --------


def _logits(logits: Any, func: str) -> ArrayView:
    x = view(logits, "logits", func=func)
    if x.dtype not in FLOAT_NAMES:
        raise TypeError(
            f"logits must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}"
        )
    if len(x.shape) == 0:
        raise ValueError(
            "logits must have at least one dimension (the vocabulary axis), got a 0-d array"
        )
    if x.shape[-1] == 0:
        raise ValueError(
            f"logits must have a non-empty last (vocabulary) axis, got shape {x.shape}"
        )
    if x.size == 0:
        raise ValueError(f"logits must not be empty, got shape {x.shape}")
    if x.on_gpu and x.shape[-1] >= _MAX_GPU_VOCAB:
        raise ValueError(f"logits on a GPU must have V < 2**31, got V = {x.shape[-1]}")
    return x


# The smallest temperature per compute type: 1/T and log2(e)/T must stay finite in the type the
# logits are computed in (float32 for 16/32-bit logits, float64 for float64), or the scaled
# differences turn into inf * 0 = NaN. Below it a result cannot be exact, so it is refused.
MIN_TEMPERATURE = {"float32": 1e-38, "float64": 1e-307}


def _temperature(temperature: Any, dtype: str = "float64") -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    t = float(temperature)
    if not (math.isfinite(t) and t > 0.0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    compute = "float64" if dtype == "float64" else "float32"
    if t < MIN_TEMPERATURE[compute]:
        raise ValueError(
            f"temperature = {temperature!r} is below {MIN_TEMPERATURE[compute]:g}, the smallest "
            f"{dtype} logits allow (1/temperature must be finite in {compute})"
        )
    return t


def _targets(targets: Any, x: ArrayView, x_name: str = "logits") -> ArrayView:
    """The targets' view, of the leading shape of ``x`` (the logits, or the hidden states);
    their values are checked where they are read."""
    t = view(targets, "targets")
    if t.dtype not in INT_NAMES:
        raise TypeError(f"targets must be an array of integers, got dtype {t.dtype}")
    lead = x.shape[:-1]
    if t.shape != lead:
        raise ValueError(
            f"targets must have the leading shape of {x_name} {lead}, got shape {t.shape}"
        )
    same_device(x, t, "targets", x_name)
    return t


def checked_candidate_ids(candidate_ids: Any, lead: tuple, vocab: int) -> np.ndarray:
    """The candidate ids as host int64 of shape ``lead + (C,)`` (a broadcast view), checked.

    ``candidate_ids`` is ``[C]`` (the same candidates at every position) or ``[..., C]`` with
    the leading shape ``lead``; every id must be in ``[0, vocab)``. CUDA ids are copied to the
    host for the check: they are few.
    """
    c = view(candidate_ids, "candidate_ids")
    if c.dtype not in INT_NAMES:
        raise TypeError(f"candidate_ids must be an array of integers, got dtype {c.dtype}")
    if len(c.shape) == 0 or c.shape[-1] == 0 or c.shape[:-1] not in ((), lead):
        raise ValueError(
            f"candidate_ids must have shape [C] or the leading shape {lead} followed by [C], "
            f"with C >= 1, got shape {c.shape}"
        )
    ids = to_host(c)
    outside = ids >= vocab if ids.dtype.kind == "u" else (ids < 0) | (ids >= vocab)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"candidate_ids{format_index(c.shape, i)} = {ids.reshape(-1)[i]} is outside "
            f"[0, {vocab})"
        )
    return np.broadcast_to(ids.astype(np.int64), (*lead, c.shape[-1]))


def _gather_last(x: ArrayView, ids: np.ndarray) -> Any:
    """``x[..., ids]`` along the last axis as float64, in ``x``'s framework and device."""
    if not x.on_gpu:
        a = numpy_of(x)
        if x.dtype == "bfloat16":
            a = (a.astype(np.uint32) << 16).view(np.float32)  # exact
        return np.take_along_axis(a, ids, axis=-1).astype(np.float64)
    if x.family == "torch":
        import torch

        index = torch.from_numpy(np.ascontiguousarray(ids)).to(x.obj.device)
        return torch.gather(x.obj, -1, index).double()
    import cupy

    with cupy.cuda.Device(x.device):
        return cupy.take_along_axis(x.obj, cupy.asarray(ids), axis=-1).astype(np.float64)


def _candidate_logprobs(x: ArrayView, ids: np.ndarray, stats: dict, temperature: float) -> Any:
    """``log softmax(logits / T)`` at the candidate ids, in ``stats``' float dtype.

    Taken relative to the row's largest logit, ``(x_c - x_max) / T + max_logprob``, so that no
    large log-sum-exp is subtracted (it would cost the result its low bits); rows without
    statistics stay NaN through ``max_logprob``.
    """
    argmax, max_logprob = stats["argmax"], stats["max_logprob"]
    safe = np.maximum(to_host(view(argmax, "argmax")), 0)[..., None]
    x_c, x_max = _gather_last(x, ids), _gather_last(x, safe)
    if not x.on_gpu:
        m = view(max_logprob, "max_logprob")
        with np.errstate(invalid="ignore"):
            lp = (x_c - x_max) / temperature + numpy_of(m).astype(np.float64)[..., None]
        return wrap(lp.astype(m.dtype), m.dtype, x.family)
    if x.family == "torch":
        lp = (x_c - x_max) / temperature + max_logprob.double()[..., None]
        return lp.to(max_logprob.dtype)
    lp = (x_c - x_max) / temperature + max_logprob.astype(np.float64)[..., None]
    return lp.astype(max_logprob.dtype)


def _top_k_and_ignore_index(top_k: Any, ignore_index: Any, vocab: int) -> tuple[int, int]:
    """top_k in [0, V] and an ignore_index that fits in int64, or errors naming them."""
    top_k = int_arg(top_k, "top_k")
    ignore_index = int_arg(ignore_index, "ignore_index")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if top_k > vocab:
        raise ValueError(f"top_k = {top_k} is larger than the vocabulary size V = {vocab}")
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
    return top_k, ignore_index


def _float_out(x: ArrayView) -> str:
    return "float64" if x.dtype == "float64" else "float32"


# --- the public functions --------------------------------------------------------------------


def token_stats(
    logits: Any,
    targets: Any = None,
    *,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    candidate_ids: Any = None,
    varentropy: bool = False,
) -> TokenStats:
    """Per-token statistics of the distributions ``softmax(logits / temperature)``, one pass.

    Parameters
    ----------
    logits : array of shape ``[..., V]``
        float16, bfloat16, float32 or float64; numpy (bfloat16 through ``ml_dtypes``), torch
        tensors, cupy arrays, or anything with ``__dlpack__``, ``__cuda_array_interface__``,
        ``__array__`` or the buffer protocol. Any strides. ``-inf`` masks a token out. CUDA
        arrays are computed on their GPU, on the caller's current stream, and results come
        back in the same framework on the same device; with CUDA ``targets`` the call waits
        for one 8-byte read (the targets' range check, so a bad target raises here). On a GPU,
        V must be below 2**31; top_k above 64 costs one more pass over the logits per 64.
    targets : integer array of shape ``[...]``, optional
        The token whose log-probability and rank are wanted; ``ignore_index`` skips a position.
    top_k : int
        Number of most likely tokens to return (``0 <= top_k <= V``).
    temperature : float
        Divides the logits before the softmax (finite, > 0).
    ignore_index : int
        Target value that marks a position to skip: its ``target_logprob`` is NaN and its
        ``target_rank`` is -1.
    candidate_ids : integer array of shape ``[C]`` or ``[..., C]``, optional
        Tokens whose log-probabilities are wanted at every position (``[C]``: the same ones
        everywhere, e.g. the answer letters of a multiple-choice prompt), each in ``[0, V)``.
    varentropy : bool
        Also return ``varentropy``, the variance of the surprisal ``Var_p[ln p] =
        sum_i p_i (ln p_i + H)^2`` (``H`` the entropy), from the same pass: an uncertainty
        signal of its own, and times ``temperature**2`` the curvature of the NLL in
        ``1 / temperature``. Its moments are accumulated about the row's mean surprisal, so
        it keeps its relative accuracy however small it is against that mean (within 2e-6
        relative for 16/32-bit logits and 1e-11 for float64, tested down to values of 1e-11,
        where ``E[ln p ** 2] - H ** 2`` would keep no digit). It costs about a third more
        time on the CPU; without it the pass is as before.

    Returns
    -------
    TokenStats
        ``logsumexp``, ``max_logprob``, ``argmax``, ``entropy`` always; ``varentropy`` when
        asked for; ``target_logprob`` and
        ``target_rank`` (number of tokens with a strictly larger logit) with targets;
        ``topk_ids`` and ``topk_logprobs`` (best first, ties to the lower id) with ``top_k``;
        ``candidate_logprobs`` ``[..., C]`` with ``candidate_ids`` (pass it to
        :func:`logcal.choice_confidence`). Float fields are float32, or float64 for float64
        logits; the result is numpy, or torch for torch input. A row with a NaN, a ``+inf``,
        or only ``-inf`` logits gets NaN floats and ``-1`` ids.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> logits = np.log(np.array([[0.7, 0.2, 0.1]], dtype=np.float32))
    >>> s = logcal.token_stats(logits, targets=np.array([1]), top_k=2)
    >>> float(np.exp(s.max_logprob[0])), int(s.target_rank[0])
    (0.699999988079071, 1)
    >>> s.topk_ids
    array([[0, 1]])
    >>> s = logcal.token_stats(np.log(np.array([[0.5, 0.25, 0.25]])), varentropy=True)
    >>> round(float(s.entropy[0]), 6), round(float(s.varentropy[0]), 6)  # (ln 2)^2 / 4
    (1.039721, 0.120113)
    """
    x = _logits(logits, "token_stats")
    temperature = _temperature(temperature, x.dtype)
    lead, vocab = x.shape[:-1], x.shape[-1]
    top_k, ignore_index = _top_k_and_ignore_index(top_k, ignore_index, vocab)
    if not isinstance(varentropy, (bool, np.bool_)):
        raise TypeError(f"varentropy must be a bool, got {type(varentropy).__name__}")
    t = None if targets is None else _targets(targets, x)
    ids = None if candidate_ids is None else checked_candidate_ids(candidate_ids, lead, vocab)

    float_out = _float_out(x)
    shapes = {f: (lead, float_out) for f in ("logsumexp", "max_logprob", "entropy")}
    shapes["argmax"] = (lead, "int64")
    if varentropy:
        shapes["varentropy"] = (lead, float_out)
    if t is not None:
        shapes["target_logprob"] = (lead, float_out)
        shapes["target_rank"] = (lead, "int64")
    if top_k > 0:
        shapes["topk_ids"] = ((*lead, top_k), "int64")
        shapes["topk_logprobs"] = ((*lead, top_k), float_out)
    results, outs = {}, {}
    for field, (shape, dtype) in shapes.items():
        results[field], outs[field] = empty(shape, dtype, x)
    kernels(x, "token_stats").token_stats(
        logits=x,
        targets=t,
        top_k=top_k,
        temperature=temperature,
        ignore_index=ignore_index,
        **outs,
    )
    if ids is not None:
        results["candidate_logprobs"] = _candidate_logprobs(x, ids, results, temperature)
    return TokenStats(**results)


def log_softmax(
    logits: Any,
    *,
    temperature: float = 1.0,
    dtype: Any = None,
    out: Any = None,
) -> Any:
    """Log-softmax of ``logits / temperature`` over the last axis.

    Parameters
    ----------
    logits : array of shape ``[..., V]``
        As for :func:`token_stats`.
    temperature : float
        Divides the logits first (finite, > 0).
    dtype : optional
        Output dtype: float16, bfloat16, float32 or float64 (name, numpy, ml_dtypes or torch
        dtype). Default: float32 for 16-bit logits, otherwise the logits' dtype.
    out : array, optional
        Where to write the result: same shape as the logits, the output dtype, any strides.

    Returns
    -------
    array
        numpy, or torch for torch input (``out`` itself when given). A row with a NaN, a
        ``+inf`` or only ``-inf`` logits is all NaN.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> np.round(logcal.log_softmax(np.array([0.0, 0.0], dtype=np.float32)), 4)
    array([-0.6931, -0.6931], dtype=float32)
    """
    x = _logits(logits, "log_softmax")
    temperature = _temperature(temperature, x.dtype)
    if dtype is None:
        out_dtype = "float32" if x.dtype in ("float16", "bfloat16") else x.dtype
    else:
        out_dtype = dtype_name(dtype)
        if out_dtype not in FLOAT_NAMES:
            raise TypeError(f"dtype must be one of {', '.join(FLOAT_NAMES)}, got {out_dtype}")
    if out is None:
        result, o = empty(x.shape, out_dtype, x)
    else:
        result, o = out, _out_array(out, x, out_dtype)
    kernels(x, "log_softmax").log_softmax(
        logits=x, out=o, temperature=temperature, out_is_new=out is None
    )
    return result


def _out_array(out: Any, x: ArrayView, dtype: str) -> ArrayView:
    o = view(out, "out", writable=True)
    if o.on_gpu != x.on_gpu:
        raise ValueError(
            "out must be on the GPU, like the logits"
            if x.on_gpu
            else "out must be in host memory, like the logits"
        )
    same_device(x, o, "out", "logits")
    if o.shape != x.shape:
        raise ValueError(f"out must have the shape of logits {x.shape}, got {o.shape}")
    if o.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {o.dtype}")
    if _overlap(x, o) and not (x.ptr == o.ptr and x.strides == o.strides and x.dtype == o.dtype):
        raise ValueError("out overlaps logits in a different layout; pass a separate array")
    return o


def _span(v: ArrayView) -> tuple[int, int]:
    """The [lo, hi) byte range a view's elements occupy."""
    item = _ITEMSIZE[v.dtype]
    lo = hi = v.ptr
    for n, s in zip(v.shape, v.strides):
        if n == 0:
            return v.ptr, v.ptr
        if s > 0:
            hi += (n - 1) * s * item
        else:
            lo += (n - 1) * s * item
    return lo, hi + item


def _overlap(a: ArrayView, b: ArrayView) -> bool:
    (alo, ahi), (blo, bhi) = _span(a), _span(b)
    return alo < bhi and blo < ahi


__all__ = ["TokenStats", "log_softmax", "token_stats"]
