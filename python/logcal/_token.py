"""Token level: ``log_softmax`` and ``token_stats`` over logits of shape ``[..., V]``."""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import numpy as np

from . import _device, _native
from ._arrays import (
    FLOAT_CODES,
    FLOAT_NAMES,
    HostArray,
    as_host_array,
    dtype_name,
    empty,
    format_index,
    int_arg,
)
from ._record import Record

_ALWAYS = ("logsumexp", "max_logprob", "argmax", "entropy")
_TARGET_FIELDS = ("target_logprob", "target_rank")
_TOPK_FIELDS = ("topk_ids", "topk_logprobs")
_FIELDS = _ALWAYS + _TARGET_FIELDS + _TOPK_FIELDS


class TokenStats(Record):
    """Per-token statistics from :func:`token_stats`: an immutable record of arrays.

    Fields (leading shape ``[...]`` of the logits):

    ``logsumexp``, ``max_logprob``, ``argmax`` (int64), ``entropy`` (nats); with targets,
    ``target_logprob`` and ``target_rank`` (int64); with ``top_k > 0``, ``topk_ids``
    (int64, ``[..., k]``) and ``topk_logprobs`` (``[..., k]``).

    Fields that were not computed do not exist: reading one raises ``AttributeError`` saying
    which argument brings it. The record is also a read-only mapping of the fields it has.
    """

    __slots__ = ()
    _FIELDS = _FIELDS
    _OPTIONAL: ClassVar[dict] = {
        **dict.fromkeys(_TARGET_FIELDS, "pass targets= to token_stats"),
        **dict.fromkeys(_TOPK_FIELDS, "pass top_k > 0 to token_stats"),
    }


# --- validation: once, here, with messages that name the argument ---------------------------


def _logits(logits: Any, func: str) -> HostArray:
    arr = as_host_array(logits, "logits", func)
    if arr.dtype not in FLOAT_CODES:
        raise TypeError(
            f"logits must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got {arr.dtype}"
        )
    shape = arr.data.shape
    if len(shape) == 0:
        raise ValueError(
            "logits must have at least one dimension (the vocabulary axis), got a 0-d array"
        )
    if shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last (vocabulary) axis, got shape {shape}")
    if arr.data.size == 0:
        raise ValueError(f"logits must not be empty, got shape {shape}")
    return arr


def _temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    t = float(temperature)
    if not (math.isfinite(t) and t > 0.0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def _targets(
    targets: Any, lead_shape: tuple, vocab: int, ignore_index: int, func: str
) -> np.ndarray:
    arr = as_host_array(targets, "targets", func).data
    if arr.dtype.kind not in "iu":
        raise TypeError(f"targets must be an array of integers, got dtype {arr.dtype}")
    if arr.shape != lead_shape:
        raise ValueError(
            f"targets must have the leading shape of logits {lead_shape}, got shape {arr.shape}"
        )
    ok = (arr >= 0) & (arr < vocab)
    if ignore_index is not None:
        ok |= arr == ignore_index
    if not ok.all():
        flat = int(np.argmin(ok.reshape(-1)))
        bad = arr.reshape(-1)[flat]
        raise ValueError(
            f"targets{format_index(lead_shape, flat)} = {int(bad)} is outside [0, {vocab}) "
            f"and is not ignore_index ({ignore_index})"
        )
    return np.ascontiguousarray(arr.reshape(-1), dtype=np.int64)


# --- the public functions --------------------------------------------------------------------


def token_stats(
    logits: Any,
    targets: Any = None,
    *,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
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

    Returns
    -------
    TokenStats
        ``logsumexp``, ``max_logprob``, ``argmax``, ``entropy`` always; ``target_logprob`` and
        ``target_rank`` (number of tokens with a strictly larger logit) with targets;
        ``topk_ids`` and ``topk_logprobs`` (best first, ties to the lower id) with ``top_k``.
        Float fields are float32, or float64 for float64 logits; the result is numpy, or torch
        for torch input. A row with a NaN, a ``+inf``, or only ``-inf`` logits gets NaN floats
        and ``-1`` ids.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> logits = np.log(np.array([[0.7, 0.2, 0.1]], dtype=np.float32))
    >>> s = logcal.token_stats(logits, targets=np.array([1]), top_k=2)
    >>> float(np.exp(s.max_logprob[0])), int(s.target_rank[0])
    (0.699999988079071, 1)
    >>> s.topk_ids
    array([[0, 1]])
    """
    func = "token_stats"
    if _device.is_cuda_array(logits):
        from . import _cuda_ops

        return TokenStats(
            **_cuda_ops.token_stats(
                logits,
                targets,
                int_arg(top_k, "top_k"),
                _temperature(temperature),
                int_arg(ignore_index, "ignore_index"),
                _targets,
            )
        )
    arr = _logits(logits, func)
    temperature = _temperature(temperature)
    top_k = int_arg(top_k, "top_k")
    ignore_index = int_arg(ignore_index, "ignore_index")
    lead, vocab = arr.data.shape[:-1], arr.data.shape[-1]
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if top_k > vocab:
        raise ValueError(f"top_k = {top_k} is larger than the vocabulary size V = {vocab}")
    flat_targets = None if targets is None else _targets(targets, lead, vocab, ignore_index, func)

    float_out = "float64" if arr.dtype == "float64" else "float32"
    results, views = {}, {}

    def alloc(field: str, shape: tuple, dtype: str) -> None:
        results[field], views[field] = empty(shape, dtype, arr.family)

    for field in ("logsumexp", "max_logprob", "entropy"):
        alloc(field, lead, float_out)
    alloc("argmax", lead, "int64")
    if flat_targets is not None:
        alloc("target_logprob", lead, float_out)
        alloc("target_rank", lead, "int64")
    if top_k > 0:
        alloc("topk_ids", (*lead, top_k), "int64")
        alloc("topk_logprobs", (*lead, top_k), float_out)

    _native.cpu.token_stats(
        arr.data,
        FLOAT_CODES[arr.dtype],
        flat_targets,
        ignore_index,
        top_k,
        temperature,
        *(views.get(f) for f in _FIELDS),
    )
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
    func = "log_softmax"
    if _device.is_cuda_array(logits):
        from . import _cuda_ops

        return _cuda_ops.log_softmax(
            logits, _temperature(temperature), None if dtype is None else dtype_name(dtype), out
        )
    arr = _logits(logits, func)
    temperature = _temperature(temperature)
    if dtype is None:
        out_dtype = "float32" if arr.dtype in ("float16", "bfloat16") else arr.dtype
    else:
        out_dtype = dtype_name(dtype)
        if out_dtype not in FLOAT_CODES:
            raise TypeError(f"dtype must be one of {', '.join(FLOAT_NAMES)}, got {out_dtype}")
    if out is None:
        result, view = empty(arr.data.shape, out_dtype, arr.family)
    else:
        view = _out_array(out, arr.data.shape, out_dtype, arr.data)
        result = out
    _native.cpu.log_softmax(
        arr.data, FLOAT_CODES[arr.dtype], view, FLOAT_CODES[out_dtype], temperature, out is None
    )
    return result


def _out_array(out: Any, shape: tuple, dtype: str, source: np.ndarray) -> np.ndarray:
    view = as_host_array(out, "out", "log_softmax")
    if view.data.shape != shape:
        raise ValueError(f"out must have the shape of logits {shape}, got {view.data.shape}")
    if view.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {view.dtype}")
    if not view.data.flags.writeable:
        raise ValueError("out must be writeable")
    if np.may_share_memory(view.data, source) and not (
        view.data.__array_interface__["data"][0] == source.__array_interface__["data"][0]
        and view.data.strides == source.strides
    ):
        raise ValueError("out overlaps logits in a different layout; pass a separate array")
    return view.data


__all__ = ["TokenStats", "log_softmax", "token_stats"]
