"""Hugging Face ``generate(..., return_dict_in_generate=True, output_logits=True)`` outputs.

``sequences`` is ``[B, prompt + N]`` and ``logits`` (unprocessed) or ``scores`` (after the
logits processors: temperature, top-k/top-p masks, penalties) a tuple of ``N`` tensors
``[B, V]``, one per generated step. The generated tokens are ``sequences[:, -N:]``; their
log-probabilities and the top-k come from one :func:`logcal.token_stats` pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._token import token_stats


def is_hf(source: Any) -> bool:
    if isinstance(source, dict):
        return "sequences" in source and ("logits" in source or "scores" in source)
    return hasattr(source, "sequences") and (
        getattr(source, "logits", None) is not None or getattr(source, "scores", None) is not None
    )


def _field(source: Any, name: str) -> Any:
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def _host(x: Any, name: str) -> Any:
    """torch tensors to CPU (token_stats reads host memory); anything else to a numpy array
    of floating-point numbers (JSON writes a whole number without a point: an integer)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu()
    try:
        arr = np.asarray(x)
    except ValueError:  # numpy refuses lists of unequal lengths
        raise ValueError(
            f"{name} must be an array of numbers, got lists of unequal lengths"
        ) from None
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must be an array of numbers, got {_kind(arr)}")
    return arr


def _kind(arr: np.ndarray) -> str:
    """What a non-numeric array holds, for an error message."""
    if arr.dtype == object:
        items = set(map(type, arr.ravel().tolist()))
        if type(None) in items:
            return "null"
        if int in items:
            return "an integer out of range"
        return ", ".join(sorted(t.__name__ for t in items)) or "nothing"
    return {"b": "booleans", "U": "strings", "S": "bytes"}.get(arr.dtype.kind, str(arr.dtype))


def _stack(steps: Any, name: str) -> Any:
    """``[B, N, V]`` from a tuple of ``N`` arrays ``[B, V]`` (or a ``[B, N, V]`` array)."""
    if isinstance(steps, (tuple, list)):
        if not steps:
            raise ValueError(f"{name} is an empty tuple: nothing was generated")
        steps = [_host(s, f"{name}[{i}]") for i, s in enumerate(steps)]
        shapes = {tuple(s.shape) for s in steps}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(
                f"{name} must be a tuple of [batch, vocab] arrays of one shape, got shapes "
                f"{sorted(shapes)[:3]}"
            )
        if hasattr(steps[0], "detach"):
            import torch

            return torch.stack(steps, dim=1)
        return np.stack(steps, axis=1)
    arr = _host(steps, name)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a tuple of [batch, vocab] arrays or one [batch, steps, vocab] "
            f"array, got shape {tuple(arr.shape)}"
        )
    return arr


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def read_hf(source: Any, *, top_k: int, eos_token_id: Any) -> tuple:
    """``(choices, lengths, logprob, ids, top_logprobs, top_ids)`` of one ``generate`` output."""
    logits = _field(source, "logits")
    name = "logits"
    if logits is None:
        logits, name = _field(source, "scores"), "scores"
    stacked = _stack(logits, name)
    sequences = _numpy(_field(source, "sequences"))
    if sequences.ndim != 2 or sequences.dtype.kind not in "iu":
        raise ValueError(
            f"sequences must be a [batch, length] array of token ids, got "
            f"{sequences.dtype} of shape {sequences.shape}"
        )
    batch, steps, vocab = (int(n) for n in stacked.shape)
    if batch != sequences.shape[0]:
        raise ValueError(
            f"{name} has {batch} rows per step but sequences has {sequences.shape[0]}; beam "
            f"search outputs (rows per beam) are not supported"
        )
    if steps > sequences.shape[1]:
        raise ValueError(
            f"{name} has {steps} steps but sequences has only {sequences.shape[1]} tokens"
        )
    targets = np.ascontiguousarray(sequences[:, sequences.shape[1] - steps :], dtype=np.int64)
    bad = (targets < 0) | (targets >= vocab)
    if bad.any():
        b, t = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"sequences[{b}, {sequences.shape[1] - steps + t}] = {int(targets[b, t])} is "
            f"outside the vocabulary [0, {vocab}) of {name}"
        )
    k = min(int(top_k), vocab)
    stats = token_stats(stacked, targets, top_k=k)
    logprob = _numpy(stats.target_logprob).astype(np.float64)
    top_lp = _numpy(stats.topk_logprobs).astype(np.float64) if k else np.empty((batch, steps, 0))
    top_ids = _numpy(stats.topk_ids) if k else np.empty((batch, steps, 0), dtype=np.int64)

    lengths = np.full(batch, steps, dtype=np.int64)
    if eos_token_id is not None:
        # After its first end-of-sequence token a finished row is padding: drop it.
        eos = np.isin(targets, np.atleast_1d(np.asarray(eos_token_id, dtype=np.int64)))
        first = np.where(eos.any(axis=1), eos.argmax(axis=1) + 1, steps)
        lengths = first.astype(np.int64)
    keep = np.arange(steps)[None, :] < lengths[:, None]
    return (
        np.arange(batch, dtype=np.int64),
        lengths,
        logprob[keep],
        targets[keep],
        top_lp[keep],
        top_ids[keep],
    )
