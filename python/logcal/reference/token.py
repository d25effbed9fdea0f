"""Float64 references of the token-level functions: log_softmax and token_stats."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import host_only, to_float64, view
from .._token import TokenStats

__all__ = ["log_softmax", "token_stats"]


def _float64(logits: Any) -> np.ndarray:
    """Logits as float64 numpy (bfloat16 bits widened exactly)."""
    return to_float64(logits, "logits")


def _row_stats(x: np.ndarray, temperature: float):
    """Shifted logits z = (x - max) / T, log-sum-exp of z, and the rows with no statistics."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = x.max(axis=-1, keepdims=True)
        invalid = np.isnan(x).any(axis=-1) | ~np.isfinite(m[..., 0])
        m = np.where(np.isfinite(m), m, 0.0)
        z = (x - m) / temperature
        log_sum = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return m, z, log_sum, invalid


def log_softmax(logits: Any, *, temperature: float = 1.0) -> np.ndarray:
    """``log(softmax(logits / temperature))`` over the last axis, in float64.

    Rows with a NaN, a ``+inf`` or only ``-inf`` logits are all NaN.
    """
    x = _float64(logits)
    _, z, log_sum, invalid = _row_stats(x, temperature)
    with np.errstate(invalid="ignore"):
        out = z - log_sum
    out[invalid] = np.nan
    return out


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
    """The fields of :func:`logcal.token_stats`, from their definitions, in float64.

    The varentropy is ``sum_i p_i (ln p_i + H)^2`` summed as written, about the entropy ``H``
    (two passes over the row: no cancellation against the mean surprisal).
    """
    x = _float64(logits)
    m, z, log_sum, invalid = _row_stats(x, temperature)
    with np.errstate(invalid="ignore"):
        lp = z - log_sum
        p = np.exp(lp)
        plogp = np.where(p > 0, p * lp, 0.0)
    fields = {
        "logsumexp": (m / temperature + log_sum)[..., 0],
        "max_logprob": lp.max(axis=-1),
        # np.argmax returns the first maximal index: ties go to the lower id.
        "argmax": np.argmax(np.where(np.isnan(x), -np.inf, x), axis=-1).astype(np.int64),
        "entropy": -plogp.sum(axis=-1),
    }
    if varentropy:
        h = fields["entropy"][..., None]
        with np.errstate(invalid="ignore"):
            # p = 0 terms (masked tokens, underflow) add nothing, as in the definition.
            fields["varentropy"] = np.where(p > 0, p * (lp + h) ** 2, 0.0).sum(axis=-1)
    if targets is not None:
        t = np.asarray(host_only(view(targets, "targets"), "targets", "reference"), np.int64)
        ignored = t == ignore_index
        safe = np.where(ignored, 0, t)[..., None]
        x_t = np.take_along_axis(x, safe, axis=-1)
        target_lp = np.take_along_axis(lp, safe, axis=-1)[..., 0]
        fields["target_logprob"] = np.where(ignored, np.nan, target_lp)
        # Rank on the raw logits: the number of tokens strictly more likely than the target.
        fields["target_rank"] = np.where(ignored, -1, (x > x_t).sum(axis=-1)).astype(np.int64)
    if top_k > 0:
        # A stable sort of -x keeps equal logits in id order: ties go to the lower id.
        order = np.argsort(-x, axis=-1, kind="stable")[..., :top_k]
        fields["topk_ids"] = order.astype(np.int64)
        fields["topk_logprobs"] = np.take_along_axis(lp, order, axis=-1)
    if candidate_ids is not None:
        c = view(candidate_ids, "candidate_ids")
        ids = np.asarray(host_only(c, "candidate_ids", "reference"))
        ids = np.broadcast_to(ids.astype(np.int64), (*x.shape[:-1], ids.shape[-1]))
        fields["candidate_logprobs"] = np.take_along_axis(lp, ids, axis=-1)
    for name in fields:
        fields[name] = value = np.array(fields[name])  # 0-d arrays for 1-d logits
        if value.dtype.kind == "f":
            value[invalid] = np.nan
        else:
            value[invalid] = -1
    return TokenStats(**fields)
