"""``token_stats_from_hidden``: token statistics of ``hidden @ weight.T + bias`` without its
``[rows, V]`` logits.

The vocabulary is a stream: one GEMM makes the logits of a chunk of it, :func:`token_stats`
reads that chunk, and its per-row results are folded into a running row state with exact merge
rules (chunks are disjoint pieces of each row's vocabulary, in id order):

* log-sum-exp, kept as the largest raw logit ``m`` and ``L = log sum exp((x - m) / T)``: the
  chunks' ``L`` are added by log-add-exp after shifting them to the common ``m``;
* entropy of a mixture of disjoint supports: ``H = sum_c w_c (H_c - log w_c)`` with
  ``w_c = exp(lse_c - lse)``;
* argmax by comparison of the raw maxima, the earlier chunk winning ties (lower id);
* top-k by merging the running best with the chunk's (a stable sort: ties keep the lower id);
* the target's and the candidates' logits read from the chunk that holds them, and the target's
  rank counted chunk by chunk (see :func:`_RankCounter`).

Every log-probability is finished as ``(x - m) / T - L`` in float64: no large log-sum-exp is
subtracted from a logit, so results keep the accuracy of :func:`token_stats` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import (
    FLOAT_NAMES,
    ArrayView,
    format_index,
    int_arg,
    numpy_of,
    same_device,
    to_host,
    view,
    wrap,
)
from ._token import (
    _INT64_MAX,
    _INT64_MIN,
    TokenStats,
    _targets,
    _temperature,
    _top_k_and_ignore_index,
    checked_candidate_ids,
    token_stats,
)

__all__ = ["token_stats_from_hidden"]

# Unit roundoff per dtype: the bound on how far two ways of computing one dot product may differ.
_UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}

# The default chunk keeps rows x chunk at or below 2**26 logits (256 MB in float32), and at
# most 8192 columns: larger chunks do not make the GEMM faster.
_CHUNK_ELEMENTS, _MAX_CHUNK, _MIN_CHUNK = 1 << 26, 8192, 256


# --- the array operations the fold needs, for numpy (host) and torch (CUDA) ---------------------


class _NumpyOps:
    """The fold's operations on host arrays."""

    xp = np

    def __init__(self, like: Any = None) -> None:
        pass

    def full(self, shape: tuple, value: float, dtype: str) -> Any:
        return np.full(shape, value, dtype=dtype)

    def f64(self, a: Any) -> Any:
        return np.asarray(a, dtype=np.float64)

    def i64(self, a: Any) -> Any:
        return np.asarray(a, dtype=np.int64)

    def take(self, a: Any, index: Any) -> Any:
        return np.take_along_axis(a, index, axis=-1)

    def cat(self, a: Any, b: Any) -> Any:
        return np.concatenate((a, b), axis=-1)

    def best_first(self, values: Any) -> Any:
        return np.argsort(-values, axis=-1, kind="stable")

    def clamp(self, a: Any, lo: int, hi: int) -> Any:
        return np.clip(a, lo, hi)

    def count_above(self, logits: Any, threshold: Any) -> Any:
        return np.count_nonzero(logits > threshold[:, None], axis=1)

    def arange(self, n: int) -> Any:
        return np.arange(n, dtype=np.int64)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)


class _TorchOps:
    """The fold's operations on torch tensors of one CUDA device (on its current stream)."""

    def __init__(self, like: Any) -> None:
        import torch

        self.xp = torch
        self.device = like.device

    def full(self, shape: tuple, value: float, dtype: str) -> Any:
        return self.xp.full(shape, value, dtype=getattr(self.xp, dtype), device=self.device)

    def f64(self, a: Any) -> Any:
        return a.to(self.xp.float64)

    def i64(self, a: Any) -> Any:
        return a.to(self.xp.int64)

    def take(self, a: Any, index: Any) -> Any:
        return self.xp.gather(a, -1, index)

    def cat(self, a: Any, b: Any) -> Any:
        return self.xp.cat((a, b), dim=-1)

    def best_first(self, values: Any) -> Any:
        return self.xp.argsort(-values, dim=-1, stable=True)

    def clamp(self, a: Any, lo: int, hi: int) -> Any:
        return self.xp.clamp(a, lo, hi)

    def count_above(self, logits: Any, threshold: Any) -> Any:
        return (logits > threshold[:, None]).sum(dim=1)

    def arange(self, n: int) -> Any:
        return self.xp.arange(n, dtype=self.xp.int64, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.cpu().numpy()


# --- arguments ----------------------------------------------------------------------------------


def _float_view(x: Any, name: str, func: str) -> ArrayView:
    v = view(x, name, func=func)
    if v.dtype not in FLOAT_NAMES:
        raise TypeError(
            f"{name} must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got {v.dtype}"
        )
    return v


def _views(hidden: Any, weight: Any, bias: Any) -> tuple:
    func = "token_stats_from_hidden"
    h = _float_view(hidden, "hidden", func)
    if len(h.shape) == 0:
        raise ValueError("hidden must have at least one dimension (the hidden size), got 0-d")
    if h.size == 0:
        raise ValueError(f"hidden must not be empty, got shape {h.shape}")
    w = _float_view(weight, "weight", func)
    d = h.shape[-1]
    if len(w.shape) != 2 or w.shape[1] != d or w.shape[0] == 0:
        raise ValueError(
            f"weight must have shape [V, d] with V >= 1 and d = hidden.shape[-1] = {d}, "
            f"got shape {w.shape}"
        )
    same_device(h, w, "weight", "hidden")
    if w.dtype != h.dtype:
        raise TypeError(f"weight must have the dtype of hidden ({h.dtype}), got {w.dtype}")
    b = None
    if bias is not None:
        b = _float_view(bias, "bias", func)
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape [V] = ({w.shape[0]},), got shape {b.shape}")
        same_device(h, b, "bias", "hidden")
        if b.dtype != h.dtype:
            raise TypeError(f"bias must have the dtype of hidden ({h.dtype}), got {b.dtype}")
    return h, w, b


def _checked_targets(targets: Any, h: ArrayView, vocab: int, ignore_index: int) -> np.ndarray:
    """Host int64 targets, every one in ``[0, V)`` or ``ignore_index`` (as token_stats says),
    checked on a private host copy, which is what the rest of the computation reads."""
    t = _targets(targets, h, "hidden")
    a = to_host(t)
    if a.dtype.kind == "u":
        bad = (a >= vocab) & (a != ignore_index) if ignore_index >= 0 else a >= vocab
    else:
        bad = ((a < 0) | (a >= vocab)) & (a != ignore_index)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"targets{format_index(t.shape, i)} = {a.reshape(-1)[i]} is outside [0, {vocab}) "
            f"and is not ignore_index ({ignore_index})"
        )
    ignored = a == ignore_index if _INT64_MIN <= ignore_index <= _INT64_MAX else a != a
    return np.where(ignored, -1, a).astype(np.int64).reshape(-1)


def _default_chunk(rows: int, vocab: int) -> int:
    return min(vocab, max(_MIN_CHUNK, min(_MAX_CHUNK, _CHUNK_ELEMENTS // rows)))


# --- the GEMM of one chunk ---------------------------------------------------------------------


class _HostLogits:
    """Chunk logits on the host: numpy BLAS, float32 for 16- and 32-bit inputs (16-bit values
    widen exactly), float64 for float64; written into one reused ``[rows, chunk]`` buffer."""

    def __init__(self, h: ArrayView, w: ArrayView, b: ArrayView | None, rows: int, chunk: int):
        self.dtype = h.dtype
        self.compute = "float64" if h.dtype == "float64" else "float32"
        self.hidden = self._host(h).reshape(rows, h.shape[-1])
        self.weight, self.bias = self._host_raw(w), None if b is None else self._host(b)
        self.buffer = np.empty((rows, chunk), dtype=self.compute)

    def _host_raw(self, v: ArrayView) -> np.ndarray:
        return numpy_of(v)  # widened chunk by chunk: a float32 copy of all of it is not needed

    def _widen(self, a: np.ndarray) -> np.ndarray:
        if self.dtype == "bfloat16":
            return (a.astype(np.uint32) << 16).view(np.float32)  # exact
        return a.astype(self.compute, copy=False)

    def _host(self, v: ArrayView) -> np.ndarray:
        return self._widen(numpy_of(v))

    def rows_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The weight rows and biases of ``ids`` in the compute dtype."""
        w = self._widen(self.weight[ids])
        return w, None if self.bias is None else self.bias[ids]

    def __call__(self, start: int, stop: int) -> np.ndarray:
        out = self.buffer[:, : stop - start]
        np.matmul(self.hidden, self._widen(self.weight[start:stop]).T, out=out)
        if self.bias is not None:
            out += self.bias[start:stop]
        return out


class _TorchLogits:
    """Chunk logits on a CUDA device: ``torch.matmul`` in the input dtype (cuBLAS, float32
    accumulation, rounded to the input dtype as the model's own ``lm_head`` does), on the
    caller's current stream."""

    def __init__(self, hidden: Any, weight: Any, bias: Any, rows: int) -> None:
        self.hidden = hidden.reshape(rows, hidden.shape[-1])
        self.weight, self.bias = weight, bias
        self.compute = str(hidden.dtype).removeprefix("torch.")

    def rows_of(self, ids: Any) -> tuple[Any, Any]:
        return self.weight[ids], None if self.bias is None else self.bias[ids]

    def __call__(self, start: int, stop: int) -> Any:
        out = self.hidden @ self.weight[start:stop].T
        if self.bias is not None:
            out += self.bias[start:stop]
        return out


def _as_torch(v: ArrayView) -> Any:
    """A CUDA array as a torch tensor (zero-copy; cupy through DLPack)."""
    if v.family == "torch":
        return v.obj
    import torch

    return torch.from_dlpack(v.obj)


# --- the target's rank, counted chunk by chunk ---------------------------------------------------


class _RankCounter:
    """``target_rank``: how many logits are strictly above the target's, chunk by chunk.

    The target's logit is read from the chunk that holds it, so it is exactly the value that
    chunk's statistics saw, and that chunk's count comes from :func:`token_stats` itself. The
    chunks before it need the target's logit before it is made: a dot product stands in for it,
    and the two may differ by the rounding of a dot product. So a chunk's logits are counted
    against a band around the stand-in: those above the band are above the target, those below
    are not, and the few inside it are kept and compared with the exact value at the end. The
    band's half-width bounds the distance of two dot products of the same vectors:
    ``4 (u_out + (d + 2) u_acc) (sum_i |h_i w_i| + |b|)``.
    """

    def __init__(self, ops: Any, gemm: Any, targets: Any, d: int, dtype: str) -> None:
        xp = ops.xp
        self.ops, self.targets = ops, targets
        self.ignored = targets < 0
        safe = xp.where(self.ignored, 0, targets)
        w, b = gemm.rows_of(safe)
        h = ops.f64(gemm.hidden)
        w = ops.f64(w)
        stand_in = (h * w).sum(-1)
        magnitude = (abs(h) * abs(w)).sum(-1)
        if b is not None:
            stand_in = stand_in + ops.f64(b)
            magnitude = magnitude + abs(ops.f64(b))
        acc = _UNIT_ROUNDOFF["float64" if dtype == "float64" else "float32"]
        half_width = 4 * (_UNIT_ROUNDOFF[dtype] + (d + 2) * acc) * magnitude
        # Ignored rows compare against +inf: nothing is above it, and nothing is kept.
        inf = float("inf")
        self.low = xp.where(self.ignored, inf, stand_in - half_width)
        self.high = xp.where(self.ignored, inf, stand_in + half_width)
        self.rank = ops.full(targets.shape, 0, "int64")
        self.logit = ops.full(targets.shape, float("nan"), "float64")
        self.kept: list = []  # (rows, logits) of the band, compared at the end

    def add(self, logits: Any, start: int, stop: int, chunk_rank: Any) -> None:
        """Count one chunk; ``chunk_rank`` is token_stats' rank for the rows whose target is
        in it."""
        ops, xp = self.ops, self.ops.xp
        here = (self.targets >= start) & (self.targets < stop)
        low, high = _below(ops, self.low, logits), _below(ops, self.high, logits)
        above_high = ops.count_above(logits, high)
        unsure = ~here & (self.low < self.high)
        if bool(unsure.any()):
            above_low = ops.count_above(logits, low)
            for r in np.flatnonzero(ops.to_numpy(unsure & (above_low > above_high))):
                row = ops.to_numpy(logits[int(r)])
                band = (row > ops.to_numpy(low[int(r)])) & (row <= ops.to_numpy(high[int(r)]))
                self.kept.append((int(r), row[band].astype(np.float64)))
        # A chunk with only -inf for a row reports rank -1: nothing in it is above the target.
        own = xp.where(chunk_rank < 0, 0, chunk_rank)
        self.rank = self.rank + xp.where(here, own, above_high)
        local = ops.clamp(self.targets - start, 0, stop - start - 1)
        exact = ops.f64(ops.take(logits, local[:, None])[:, 0])
        self.logit = xp.where(here, exact, self.logit)
        # Later chunks compare with the exact value: an empty band.
        self.low = xp.where(here, exact, self.low)
        self.high = xp.where(here, exact, self.high)

    def result(self) -> tuple[Any, Any]:
        """The targets' logits and ranks (-1 where ignored)."""
        rank = self.ops.to_numpy(self.rank).copy() if self.kept else self.rank
        if self.kept:
            logit = self.ops.to_numpy(self.logit)
            for r, values in self.kept:
                rank[r] += int(np.count_nonzero(values > logit[r]))
            rank = self.ops.xp.asarray(rank) if self.ops.xp is np else self._back(rank)
        return self.logit, self.ops.xp.where(self.ignored, -1, rank)

    def _back(self, a: np.ndarray) -> Any:
        return self.ops.xp.from_numpy(a).to(self.ops.device)


def _below(ops: Any, threshold: Any, logits: Any) -> Any:
    """A threshold ``t`` in the logits' dtype with ``x > t`` unchanged for every logit ``x``.

    Rounded down: when ``t`` falls between two values of that dtype, ``x > t`` holds exactly
    when ``x`` is at least the upper one, that is when ``x`` is above the lower one.
    """
    if ops.xp is not np:
        return threshold  # torch compares mixed dtypes exactly, in the wider one
    t = threshold.astype(logits.dtype)
    with np.errstate(invalid="ignore"):
        return np.where(t > threshold, np.nextafter(t, -np.inf), t)


# --- the row state --------------------------------------------------------------------------------


class _RowState:
    """The running statistics of each row over the chunks seen so far (float64)."""

    def __init__(self, ops: Any, rows: int, top_k: int, temperature: float) -> None:
        self.ops, self.top_k, self.temperature = ops, top_k, temperature
        self.max = ops.full((rows,), -np.inf, "float64")  # largest raw logit
        self.log_sum = ops.full((rows,), -np.inf, "float64")  # log sum exp((x - max) / T)
        self.entropy = ops.full((rows,), 0.0, "float64")
        self.argmax = ops.full((rows,), -1, "int64")
        self.poisoned = ops.full((rows,), False, "bool")  # a NaN or +inf logit
        self.top_values = ops.full((rows, 0), 0.0, "float64")  # raw logits, best first
        self.top_ids = ops.full((rows, 0), 0, "int64")

    def add(self, logits: Any, start: int, stats: TokenStats) -> Any:
        """Fold one chunk's statistics in; returns the rows the chunk has only -inf for."""
        ops, xp, temp = self.ops, self.ops.xp, self.temperature
        argmax = ops.i64(stats.argmax)
        found = argmax >= 0
        empty = ~found
        if bool(empty.any()):
            # token_stats has no statistics for a row with a NaN, a +inf, or only -inf: the
            # first two spoil the whole row, the last is a chunk that holds nothing of it.
            only_masked = (
                (logits == -np.inf).all(axis=1)
                if xp is np
                else ((logits == -float("inf")).all(dim=1))
            )
            self.poisoned = self.poisoned | (empty & ~only_masked)
        at_max = ops.take(logits, ops.clamp(argmax, 0, None)[:, None])[:, 0]
        chunk_max = xp.where(found, ops.f64(at_max), -np.inf)
        chunk_log_sum = xp.where(found, -ops.f64(stats.max_logprob), -np.inf)
        chunk_entropy = xp.where(found, ops.f64(stats.entropy), 0.0)

        new_max = xp.maximum(self.max, chunk_max)
        shift = xp.where(xp.isfinite(new_max), new_max, 0.0)
        old = (self.max - shift) / temp + self.log_sum  # log of each part's share, unnormalised
        new = (chunk_max - shift) / temp + chunk_log_sum
        log_sum = xp.logaddexp(old, new)
        self.entropy = _mixture_term(xp, old - log_sum, self.entropy) + _mixture_term(
            xp, new - log_sum, chunk_entropy
        )
        # Strictly greater: on a tie the earlier chunk, with the lower id, keeps the argmax.
        self.argmax = xp.where(chunk_max > self.max, argmax + start, self.argmax)
        self.max, self.log_sum = new_max, log_sum
        if self.top_k:
            self._merge_top(logits, start, ops.i64(stats.topk_ids), empty)
        return empty

    def _merge_top(self, logits: Any, start: int, ids: Any, empty: Any) -> None:
        ops, xp = self.ops, self.ops.xp
        # A row with only -inf here: token_stats gives no ids, but its first ids are its best.
        ids = xp.where(empty[:, None], ops.arange(ids.shape[1])[None, :], ids)
        values = ops.f64(ops.take(logits, ops.clamp(ids, 0, None)))
        values = ops.cat(self.top_values, values)
        ids = ops.cat(self.top_ids, ids + start)
        # Stable: among equal logits the running ones, with lower ids, stay first.
        order = ops.best_first(values)[:, : self.top_k]
        self.top_values, self.top_ids = ops.take(values, order), ops.take(ids, order)

    def log_prob(self, logit: Any) -> Any:
        """``log softmax(x / T)`` of raw logits ``[rows]`` or ``[rows, n]``, in float64."""
        m, s = self.max, self.log_sum
        if logit.ndim == 2:
            m, s = m[:, None], s[:, None]
        return (logit - m) / self.temperature - s

    @property
    def invalid(self) -> Any:
        return self.poisoned | ~self.ops.xp.isfinite(self.max)


def _mixture_term(xp: Any, log_weight: Any, entropy: Any) -> Any:
    """``w (H - log w)``: one part's share of the entropy of a mixture of disjoint supports;
    0 for a part of weight 0."""
    with np.errstate(invalid="ignore", over="ignore"):
        return xp.where(log_weight > -np.inf, xp.exp(log_weight) * (entropy - log_weight), 0.0)


# --- the public function ----------------------------------------------------------------------


def token_stats_from_hidden(
    hidden: Any,
    weight: Any,
    targets: Any = None,
    *,
    bias: Any = None,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    candidate_ids: Any = None,
    vocab_chunk: int | None = None,
) -> TokenStats:
    """:func:`token_stats` of ``hidden @ weight.T + bias`` without making its ``[..., V]`` logits.

    The vocabulary is taken ``vocab_chunk`` tokens at a time: one GEMM makes the logits of a
    chunk for every row, :func:`token_stats` reads them, and its results are merged exactly
    into running per-row statistics. Extra memory is ``O(rows x vocab_chunk)``.

    Parameters
    ----------
    hidden : array of shape ``[..., d]``
        Final hidden states (after the model's last norm): float16, bfloat16, float32 or
        float64; numpy, torch (CPU or CUDA) or cupy.
    weight : array of shape ``[V, d]``
        The output embedding (``lm_head.weight``), of the dtype and device of ``hidden``.
    targets : integer array of shape ``[...]``, optional
        As for :func:`token_stats`.
    bias : array of shape ``[V]``, optional
        The output bias, of the dtype and device of ``hidden``.
    top_k, temperature, ignore_index, candidate_ids
        As for :func:`token_stats`.
    vocab_chunk : int, optional
        Vocabulary tokens per GEMM. Default: ``min(8192, 2**26 // rows)``, at least 256.

    Returns
    -------
    TokenStats
        The fields :func:`token_stats` gives for the same arguments, with its dtypes, in the
        framework and on the device of ``hidden``.

    Notes
    -----
    The logits are the GEMM's. On the CPU, 16-bit inputs are multiplied in float32 (they widen
    exactly, and the logits are not rounded back to 16 bits) and float32 and float64 in their
    own dtype, with numpy's BLAS; on a GPU, ``torch.matmul`` in the input dtype, on the
    caller's current stream. Given those logits the results are those of :func:`token_stats`
    to its own tolerance (float32 outputs: ``1e-5`` relative and ``1e-6`` absolute; float64:
    ``1e-12``), and argmax, ranks and top-k ids are exact. Against logits made by another GEMM
    (``token_stats(hidden @ weight.T)``, or logits rounded to 16 bits) they differ by that
    GEMM's rounding of the logits: for float32, ``d * 2**-24 * sum_i |h_i w_i|`` at most;
    16-bit logits are rounded to ``2**-11`` (float16) or ``2**-8`` (bfloat16) relative.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> rng = np.random.default_rng(0)
    >>> hidden = rng.standard_normal((4, 8)).astype(np.float32)
    >>> weight = rng.standard_normal((100, 8)).astype(np.float32)
    >>> s = logcal.token_stats_from_hidden(hidden, weight, np.array([1, 2, 3, 4]), top_k=3,
    ...                                    vocab_chunk=32)
    >>> t = logcal.token_stats(hidden @ weight.T, np.array([1, 2, 3, 4]), top_k=3)
    >>> bool(np.allclose(s.entropy, t.entropy, rtol=1e-5)), bool((s.topk_ids == t.topk_ids).all())
    (True, True)
    """
    h, w, b = _views(hidden, weight, bias)
    temperature = _temperature(temperature, h.dtype)
    lead, d = h.shape[:-1], h.shape[-1]
    vocab = w.shape[0]
    rows = int(np.prod(lead, dtype=np.int64))
    top_k, ignore_index = _top_k_and_ignore_index(top_k, ignore_index, vocab)
    if vocab_chunk is None:
        chunk = _default_chunk(rows, vocab)
    else:
        chunk = int_arg(vocab_chunk, "vocab_chunk")
        if chunk < 1:
            raise ValueError(f"vocab_chunk must be >= 1, got {vocab_chunk}")
        chunk = min(chunk, vocab)
    t = None if targets is None else _checked_targets(targets, h, vocab, ignore_index)
    ids = None
    if candidate_ids is not None:
        ids = np.ascontiguousarray(checked_candidate_ids(candidate_ids, lead, vocab))
        ids = ids.reshape(rows, ids.shape[-1])

    if h.on_gpu:
        hidden_t = _as_torch(h)
        ops = _TorchOps(hidden_t)
        gemm = _TorchLogits(hidden_t, _as_torch(w), None if b is None else _as_torch(b), rows)
        to_device = lambda a: ops.xp.from_numpy(np.ascontiguousarray(a)).to(ops.device)  # noqa: E731
    else:
        ops = _NumpyOps()
        gemm = _HostLogits(h, w, b, rows, chunk)
        to_device = np.asarray
    state = _RowState(ops, rows, top_k, temperature)
    ranks = None if t is None else _RankCounter(ops, gemm, to_device(t), d, h.dtype)
    if ids is not None:
        ids = to_device(ids)
        candidates = ops.full(ids.shape, np.nan, "float64")

    for start in range(0, vocab, chunk):
        stop = min(start + chunk, vocab)
        logits = gemm(start, stop)
        local_targets = None
        if ranks is not None:
            here = (ranks.targets >= start) & (ranks.targets < stop)
            local_targets = ops.xp.where(here, ranks.targets - start, -1)
        stats = token_stats(
            logits,
            local_targets,
            top_k=min(top_k, stop - start),
            temperature=temperature,
            ignore_index=-1,
        )
        state.add(logits, start, stats)
        if ranks is not None:
            ranks.add(logits, start, stop, ops.i64(stats.target_rank))
        if ids is not None:
            here = (ids >= start) & (ids < stop)
            local = ops.clamp(ids - start, 0, stop - start - 1)
            candidates = ops.xp.where(here, ops.f64(ops.take(logits, local)), candidates)

    return _finish(state, ranks, None if ids is None else candidates, h, lead)


def _finish(state: _RowState, ranks: Any, candidates: Any, h: ArrayView, lead: tuple) -> TokenStats:
    """The record: float64 state to the output dtypes and shapes, rows without statistics NaN
    and -1, in the caller's framework."""
    ops, xp = state.ops, state.ops.xp
    invalid = state.invalid
    floats = {
        "logsumexp": state.max / state.temperature + state.log_sum,
        "max_logprob": -state.log_sum,
        "entropy": state.entropy,
    }
    ints = {"argmax": state.argmax}
    if ranks is not None:
        logit, rank = ranks.result()
        floats["target_logprob"] = xp.where(ranks.ignored, np.nan, state.log_prob(logit))
        ints["target_rank"] = rank
    if state.top_k:
        ints["topk_ids"] = state.top_ids
        floats["topk_logprobs"] = state.log_prob(state.top_values)
    if candidates is not None:
        floats["candidate_logprobs"] = state.log_prob(candidates)
    out_dtype = "float64" if h.dtype == "float64" else "float32"
    fields = {}
    for name, value in {**floats, **ints}.items():
        bad = invalid if value.ndim == 1 else invalid[:, None]
        is_float = name in floats
        value = xp.where(bad, np.nan if is_float else -1, value)
        shape = (*lead, *value.shape[1:])
        fields[name] = _deliver(ops, value.reshape(shape), out_dtype if is_float else "int64", h)
    return TokenStats(**{k: fields[k] for k in TokenStats._FIELDS if k in fields})


def _deliver(ops: Any, value: Any, dtype: str, h: ArrayView) -> Any:
    """A result in ``hidden``'s framework and device."""
    if ops.xp is np:
        return wrap(np.array(value, dtype=dtype, order="C"), dtype, h.family)
    value = value.to(getattr(ops.xp, dtype)).contiguous()
    if h.family == "cupy":
        import cupy

        return cupy.from_dlpack(value)
    return value
