"""The caller's arrays: coercion and validation of confidences, correctness, weights, class
probabilities and labels, and the messages that name a bad sample."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._arrays import format_index, host_only, view
from ._fixed import MAX_WEIGHT, MIN_WEIGHT


class Pairs(NamedTuple):
    conf: np.ndarray  # flat float32/float64 view
    correct: np.ndarray  # flat uint8/int32/int64/float32/float64 view
    weights: np.ndarray | None  # flat float64, validated
    shape: tuple  # the callers' shape, for messages
    conf_orig: np.ndarray  # flat views of what the caller passed, for messages
    correct_orig: np.ndarray


def _host(x: Any, name: str, func: str) -> tuple[np.ndarray, str, str]:
    """A host array as numpy (bfloat16 as its bits), its dtype and family."""
    v = view(x, name)
    return host_only(v, name, func), v.dtype, v.family


def as_float_probs(x: Any, name: str, func: str) -> tuple[np.ndarray, np.ndarray]:
    data, dtype, _ = _host(x, name, func)
    if dtype == "bfloat16":
        data = (data.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "float16":
        data = data.astype(np.float32)
    elif dtype not in ("float32", "float64"):
        raise TypeError(
            f"{name} must be an array of floating-point probabilities (float16, bfloat16, "
            f"float32 or float64), got dtype {dtype}"
        )
    return data, data


def as_correct(x: Any, func: str) -> tuple[np.ndarray, np.ndarray]:
    data, dtype, _ = _host(x, "correct", func)
    orig = data
    kind = data.dtype.kind
    if dtype == "bfloat16":
        data = (data.astype(np.uint32) << 16).view(np.float32)
        orig = data
    elif kind == "b":
        data = data.view(np.uint8)
    elif data.dtype in (np.int8, np.uint8):
        data = data.view(np.uint8)  # -1 reads as 255: still not 0 or 1
    elif data.dtype in (np.int32, np.int64):
        pass
    elif kind in "iu":
        data = data.astype(np.int64)  # uint64 > 2^63 wraps negative: still not 0 or 1
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype in (np.float32, np.float64):
        pass
    else:
        raise TypeError(
            "correct must be an array of bool, integers (0 or 1) or floats in [0, 1], "
            f"got dtype {dtype}"
        )
    return data, orig


def checked_weights(weights: Any, shape: tuple, func: str) -> np.ndarray:
    arr = _host(weights, "weights", func)[0]
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"weights must be a numeric array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(
            f"weights must have the shape of confidence {shape}, got shape {arr.shape}"
        )
    w = np.asarray(arr, dtype=np.float64).reshape(-1)
    ok = np.isfinite(w) & ((w == 0) | (w >= MIN_WEIGHT)) & (w < MAX_WEIGHT)
    if not ok.all():
        i = int(np.argmin(ok))
        v = float(w[i])
        where = f"weights{format_index(shape, i)} = {v!r}"
        if not math.isfinite(v):
            raise ValueError(f"{where} is not finite")
        if v < 0:
            raise ValueError(f"{where} is negative")
        if v < MIN_WEIGHT:
            raise ValueError(
                f"{where} is nonzero but below 2**-24, too small for the fixed-point sums; "
                "scale the weights up (the statistics depend only on their ratios)"
            )
        raise ValueError(f"{where} is not below 2**30 (the range of the fixed-point sums)")
    return w


def pairs(
    confidence: Any, correct: Any, weights: Any, func: str, *, allow_empty: bool = False
) -> Pairs:
    conf, conf_orig = as_float_probs(confidence, "confidence", func)
    corr, corr_orig = as_correct(correct, func)
    if corr.shape != conf.shape:
        raise ValueError(
            f"correct must have the same shape as confidence {conf.shape}, got shape {corr.shape}"
        )
    if conf.size == 0 and not allow_empty:
        raise ValueError(
            f"confidence is empty (shape {conf.shape}): {func} needs at least one sample"
        )
    w = None if weights is None else checked_weights(weights, conf.shape, func)
    return Pairs(
        conf.reshape(-1),
        corr.reshape(-1),
        w,
        conf.shape,
        conf_orig.reshape(-1),
        corr_orig.reshape(-1),
    )


def sample_error(
    p: Pairs, flat: int, conf_name: str = "confidence", correct_name: str = "correct"
) -> ValueError:
    where = format_index(p.shape, flat)
    c = float(p.conf_orig[flat])
    if not 0.0 <= c <= 1.0:
        if math.isnan(c):
            return ValueError(f"{conf_name}{where} = nan is not a probability in [0, 1]")
        return ValueError(f"{conf_name}{where} = {c!r} is outside [0, 1]")
    y = p.correct_orig[flat]
    if p.correct_orig.dtype.kind == "f":
        y = float(y)
        if math.isnan(y):
            return ValueError(f"{correct_name}{where} = nan is not in [0, 1]")
        return ValueError(f"{correct_name}{where} = {y!r} is outside [0, 1]")
    return ValueError(
        f"{correct_name}{where} = {int(y)} is not 0 or 1 ({correct_name} must be bool, "
        "integers 0 or 1, or floats in [0, 1])"
    )


def probs_labels(probs: Any, labels: Any, func: str, check_values: bool = True) -> tuple:
    family = _host(probs, "probs", func)[2]
    p, _ = as_float_probs(probs, "probs", func)
    if p.ndim < 1 or p.shape[-1] == 0:
        raise ValueError(f"probs must have a non-empty last (class) axis, got shape {p.shape}")
    if p.size == 0:
        raise ValueError(f"probs is empty (shape {p.shape}): {func} needs at least one sample")
    lab = _host(labels, "labels", func)[0]
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be an array of integers, got dtype {lab.dtype}")
    if lab.shape != p.shape[:-1]:
        raise ValueError(
            f"labels must have the leading shape of probs {p.shape[:-1]}, got shape {lab.shape}"
        )
    if check_values:
        ok = (p >= 0) & (p <= 1)
        if not ok.all():
            bad_prob(p, int(np.argmin(ok.reshape(-1))))
        ok = (lab >= 0) & (lab < p.shape[-1])
        if not ok.all():
            bad_label(lab, int(np.argmin(ok.reshape(-1))), p.shape[-1])
    return p, lab, family


def bad_prob(p: np.ndarray, flat: int) -> None:
    v = float(p.reshape(-1)[flat])
    where = format_index(p.shape, flat)
    if math.isnan(v):
        raise ValueError(f"probs{where} = nan is not a probability in [0, 1]")
    raise ValueError(f"probs{where} = {v!r} is outside [0, 1]")


def bad_label(lab: np.ndarray, flat: int, k: int) -> None:
    raise ValueError(
        f"labels{format_index(lab.shape, flat)} = {int(lab.reshape(-1)[flat])} is outside [0, {k})"
    )
