"""Sequence level, multiple choice and multi-sample consistency.

``sequence_stats`` reduces token log-probabilities per sequence, ``choice_confidence`` turns
per-option log-likelihoods into the model's probability over the offered answers, and
``sample_consistency`` measures how much K sampled answers to a question agree.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import _native
from ._arrays import (
    FLOAT_NAMES,
    INT_NAMES,
    ArrayView,
    empty,
    format_index,
    host_only,
    kernels,
    numpy_of,
    same_device,
    view,
)
from ._record import Record
from ._token import TokenStats

__all__ = [
    "ChoiceConfidence",
    "Consistency",
    "SequenceStats",
    "choice_confidence",
    "sample_consistency",
    "sequence_stats",
]


class SequenceStats(Record):
    """Per-sequence statistics from :func:`sequence_stats`: an immutable record of arrays.

    Fields, one entry per sequence: ``sum``, ``mean``, ``min``, ``count`` (int64) and
    ``perplexity`` (``exp(-mean)``). The record is also a read-only mapping.
    """

    __slots__ = ()
    sum: Any
    mean: Any
    min: Any
    count: Any
    perplexity: Any
    _FIELDS = ("sum", "mean", "min", "count", "perplexity")


class ChoiceConfidence(Record):
    """Multiple-choice confidence from :func:`choice_confidence`: an immutable record.

    Fields: ``probs`` ``[Q, C]``, ``pred`` ``[Q]`` (int64), ``confidence`` ``[Q]`` and, with
    labels, ``correct`` ``[Q]`` (bool). The record is also a read-only mapping.
    """

    __slots__ = ()
    probs: Any
    pred: Any
    confidence: Any
    correct: Any
    _FIELDS = ("probs", "pred", "confidence", "correct")
    _OPTIONAL: ClassVar[dict] = {"correct": "pass labels= to choice_confidence"}


class Consistency(Record):
    """Multi-sample consistency from :func:`sample_consistency`: an immutable record.

    Fields, one entry per question: ``mode`` and ``n_unique`` (int64), ``agreement``,
    ``entropy``, ``entropy_consistency``, ``fsd`` (float64) and, with ``seq_logprobs``,
    ``semantic_entropy``. The record is also a read-only mapping.
    """

    __slots__ = ()
    mode: Any
    agreement: Any
    entropy: Any
    entropy_consistency: Any
    fsd: Any
    n_unique: Any
    semantic_entropy: Any
    _FIELDS = (
        "mode",
        "agreement",
        "entropy",
        "entropy_consistency",
        "fsd",
        "n_unique",
        "semantic_entropy",
    )
    _OPTIONAL: ClassVar[dict] = {"semantic_entropy": "pass seq_logprobs= to sample_consistency"}


# --- validation helpers: messages name the argument and the first offending position --------


def _require_float(v: ArrayView, name: str) -> None:
    if v.dtype not in FLOAT_NAMES:
        raise TypeError(
            f"{name} must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got dtype {v.dtype}"
        )


def _float_array(x: Any, name: str, func: str) -> ArrayView:
    v = view(x, name)
    _require_float(v, name)
    host_only(v, name, func)
    return v


def _int_array(x: Any, name: str, func: str) -> np.ndarray:
    v = view(x, name)
    arr = host_only(v, name, func)
    if v.dtype not in INT_NAMES:
        raise TypeError(f"{name} must be an array of integers, got dtype {v.dtype}")
    return arr


def _first(bad: np.ndarray) -> int:
    return int(np.argmax(bad.reshape(-1)))


def _as_int64(arr: np.ndarray, name: str) -> np.ndarray:
    """Integers as int64, refusing uint64 values that do not fit."""
    if arr.dtype == np.uint64:
        big = arr > np.iinfo(np.int64).max
        if big.any():
            i = _first(big)
            raise ValueError(
                f"{name}{format_index(arr.shape, i)} = {int(arr.reshape(-1)[i])} "
                "does not fit in int64"
            )
    return arr.astype(np.int64, copy=False)


def _nan_mask(v: ArrayView) -> np.ndarray:
    """Where a host float array (bfloat16 as its bits) holds NaN."""
    a = numpy_of(v)
    if v.dtype == "bfloat16":
        return (a & 0x7FFF) > 0x7F80
    return np.isnan(a)


def _float_out(v: ArrayView) -> str:
    return "float64" if v.dtype == "float64" else "float32"


# --- sequence_stats ---------------------------------------------------------------------------


def _offsets(offsets: Any, x: ArrayView) -> ArrayView:
    """The offsets' view; their values are checked by the kernel that reads them."""
    off = view(offsets, "offsets")
    if off.dtype not in INT_NAMES:
        raise TypeError(f"offsets must be an array of integers, got dtype {off.dtype}")
    if len(off.shape) != 1:
        raise ValueError(f"offsets must be 1-D [S+1], got shape {off.shape}")
    if off.shape[0] < 2:
        raise ValueError(
            f"offsets must have at least 2 entries (S+1 for S >= 1 sequences), got {off.shape[0]}"
        )
    same_device(x, off, "offsets", "token_logprobs")
    return off


def sequence_stats(token_logprobs: Any, offsets: Any = None, *, mask: Any = None) -> SequenceStats:
    """Per-sequence sum, mean, min, count and perplexity of token log-probabilities.

    Parameters
    ----------
    token_logprobs : float array
        Flat ``[T]`` with ``offsets``, or padded ``[..., L]`` (usually ``[B, L]``) without.
        float16, bfloat16, float32 or float64; numpy, torch CPU, or anything with
        ``__dlpack__``, ``__array__`` or the buffer protocol; any strides.
    offsets : integer array ``[S+1]``, optional
        CSR offsets of the flat layout: sequence ``s`` is
        ``token_logprobs[offsets[s]:offsets[s+1]]``. They must start at 0, never decrease
        and end at ``T`` (every token belongs to exactly one sequence); ``S >= 1``.
    mask : bool array of the shape of ``token_logprobs``, optional
        Padded layout only: ``True`` marks a counted token. ``None`` counts every position.
        Masked-out positions may hold anything, NaN included.

    Returns
    -------
    SequenceStats
        ``sum``, ``mean``, ``min``, ``count`` (int64) and ``perplexity = exp(-mean)``, of shape
        ``[S]`` (flat) or ``[...]`` (padded). Float fields are float64 for float64 input and
        float32 otherwise; sums are accumulated in float64 whatever the input. An empty sequence
        has ``sum = 0``, ``count = 0`` and NaN mean, min and perplexity. A counted NaN makes its
        sequence's sum, mean, min and perplexity NaN (as numpy would); its count is kept.
        ``-inf`` is a valid log-probability (its sequence's sum and min are ``-inf``).

    Notes
    -----
    Bitwise reproducible: the summation order is fixed by the data alone (blocks of 8192
    tokens, eight interleaved float64 accumulators, blocks added in order), so results are the
    same run to run, for any :func:`logcal.set_num_threads`, and for strided and contiguous
    input -- and the same bits on a GPU, which adds in that very order. CUDA inputs are
    computed on their device and stream; CUDA ``offsets`` are checked there, with one 8-byte
    read that waits for the stream. Work is spread over threads across sequences, and within
    very long sequences.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> lp = np.log(np.array([0.5, 0.25, 0.5, 0.8], dtype=np.float32))
    >>> s = logcal.sequence_stats(lp, offsets=np.array([0, 2, 2, 4]))
    >>> s.count
    array([2, 0, 2])
    >>> np.round(s.perplexity, 4)
    array([2.8284,    nan, 1.5811], dtype=float32)
    """
    x = view(token_logprobs, "token_logprobs", func="sequence_stats")
    _require_float(x, "token_logprobs")
    off = m = None
    if offsets is not None:
        if len(x.shape) != 1:
            raise ValueError(
                f"token_logprobs must be flat [T] when offsets are given, got shape {x.shape}"
            )
        if mask is not None:
            raise ValueError(
                "mask is for the padded [B, L] layout; with offsets every token of "
                "token_logprobs is counted"
            )
        off = _offsets(offsets, x)
        out_shape = (off.shape[0] - 1,)
    else:
        if len(x.shape) < 2:
            raise ValueError(
                f"token_logprobs of shape {x.shape} needs offsets: pass offsets [S+1] for "
                f"the flat layout, or a padded [B, L] array (with mask)"
            )
        out_shape = x.shape[:-1]
        n_rows = int(np.prod(out_shape))
        if n_rows == 0:
            raise ValueError(f"token_logprobs must hold at least one sequence, got shape {x.shape}")
        if mask is not None:
            m = view(mask, "mask")
            if m.dtype != "bool":
                raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
            if m.shape != x.shape:
                raise ValueError(
                    f"mask must have the shape of token_logprobs {x.shape}, got shape {m.shape}"
                )
            same_device(x, m, "mask", "token_logprobs")
            m = _rows(m, n_rows)
        x = _rows(x, n_rows)

    float_out = _float_out(x)
    results, outs = {}, {}
    for field in ("sum", "mean", "min", "perplexity"):
        results[field], outs[field] = empty((int(np.prod(out_shape)),), float_out, x)
    results["count"], outs["count"] = empty((int(np.prod(out_shape)),), "int64", x)
    kernels(x, "sequence_stats").sequence_stats(token_logprobs=x, offsets=off, mask=m, **outs)
    return SequenceStats(**{k: v.reshape(out_shape) for k, v in results.items()})


def _rows(v: ArrayView, n_rows: int) -> ArrayView:
    """A padded [..., L] view as [n_rows, L]: the framework's own reshape, a view whenever the
    leading axes fold (always for contiguous input), else a copy."""
    if len(v.shape) == 2:
        return v
    folded = view(v.obj.reshape(n_rows, v.shape[-1]), "token_logprobs")
    return folded._replace(dtype=v.dtype, family=v.family, readonly=v.readonly)


# --- choice_confidence ------------------------------------------------------------------------


def choice_confidence(
    choice_logprobs: Any, *, lengths: Any = None, labels: Any = None
) -> ChoiceConfidence:
    """The model's probability over the offered answers of multiple-choice questions.

    This is the distractor-augmented confidence of lm-eval and HELM: a softmax over the
    options' log-likelihoods (optionally length-normalised, as ``acc_norm`` does).

    Parameters
    ----------
    choice_logprobs : float array ``[Q, C]``, or TokenStats
        Each option's total log-likelihood; NaN marks an absent option (questions with fewer
        than C options). float16, bfloat16, float32 or float64; any strides. A
        :class:`TokenStats` with ``candidate_logprobs`` ``[Q, C]`` (from ``candidate_ids=``:
        one position per question, each option one token) stands for those.
    lengths : array ``[Q, C]``, optional
        Length of each option (tokens, characters or bytes: the caller's choice); scores are
        ``choice_logprobs / lengths``. Must be finite and > 0 wherever the option is present;
        ignored where it is absent.
    labels : integer array ``[Q]``, optional
        Index of the right option. Must be in ``[0, C)`` and point at a present option.

    Returns
    -------
    ChoiceConfidence
        ``probs`` ``[Q, C]``: softmax of the scores over the present options (0 for absent
        ones); ``pred`` ``[Q]`` int64: the best option (lowest index among ties);
        ``confidence`` ``[Q]``: its probability; with labels, ``correct`` ``[Q]`` bool:
        ``pred == labels``. A question with no present option, only ``-inf`` scores, or a
        ``+inf`` score has NaN ``probs`` and ``confidence``, ``pred = -1`` and
        ``correct = False``. Floats are float64 for float64 input, float32 otherwise (computed
        in float64).

    Examples
    --------
    >>> import numpy as np, logcal
    >>> ll = np.array([[-1.0, -2.0, np.nan], [-4.0, -3.0, -3.0]])
    >>> c = logcal.choice_confidence(ll, labels=np.array([0, 2]))
    >>> np.round(c.probs, 4)
    array([[0.7311, 0.2689, 0.    ],
           [0.1554, 0.4223, 0.4223]])
    >>> c.pred, c.correct
    (array([0, 1]), array([ True, False]))
    """
    func = "choice_confidence"
    if isinstance(choice_logprobs, TokenStats):
        if "candidate_logprobs" not in choice_logprobs:
            raise ValueError(
                "choice_logprobs is a TokenStats without candidate_logprobs: pass "
                "candidate_ids= to token_stats"
            )
        choice_logprobs = choice_logprobs.candidate_logprobs
    arr = _float_array(choice_logprobs, "choice_logprobs", func)
    data = numpy_of(arr)
    if data.ndim != 2:
        raise ValueError(f"choice_logprobs must be 2-D [Q, C], got shape {data.shape}")
    if data.size == 0:
        raise ValueError(f"choice_logprobs must not be empty, got shape {data.shape}")
    n_q, n_c = data.shape
    absent = _nan_mask(arr)

    len_arr = None
    if lengths is not None:
        la = host_only(view(lengths, "lengths"), "lengths", func)
        if la.dtype.kind not in "iuf":
            raise TypeError(f"lengths must be an array of numbers, got dtype {la.dtype}")
        if la.shape != data.shape:
            raise ValueError(
                f"lengths must have the shape of choice_logprobs {data.shape}, got shape {la.shape}"
            )
        len_arr = np.ascontiguousarray(la, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~absent & ~(np.isfinite(len_arr) & (len_arr > 0))
        if bad.any():
            i = _first(bad)
            where = format_index(data.shape, i)
            raise ValueError(
                f"lengths{where} = {la.reshape(-1)[i]} must be a finite number > 0: "
                f"choice_logprobs{where} is a present option"
            )

    lab = None
    if labels is not None:
        lab = _int_array(labels, "labels", func)
        if lab.shape != (n_q,):
            raise ValueError(f"labels must have shape (Q,) = ({n_q},), got shape {lab.shape}")
        out_of_range = lab >= n_c if lab.dtype.kind == "u" else (lab < 0) | (lab >= n_c)
        if out_of_range.any():
            i = _first(out_of_range)
            raise ValueError(f"labels[{i}] = {int(lab[i])} is outside [0, {n_c})")
        lab = np.array(lab, dtype=np.int64)  # private: checked here, then read by the kernel
        gold_absent = absent[np.arange(n_q), lab]
        if gold_absent.any():
            i = _first(gold_absent)
            raise ValueError(
                f"labels[{i}] = {int(lab[i])} points at an absent option: "
                f"choice_logprobs[{i}, {int(lab[i])}] is NaN"
            )

    float_out = _float_out(arr)
    results, outs = {}, {}
    results["probs"], outs["probs"] = empty((n_q, n_c), float_out, arr)
    results["pred"], outs["pred"] = empty((n_q,), "int64", arr)
    results["confidence"], outs["confidence"] = empty((n_q,), float_out, arr)
    if lab is not None:
        results["correct"], outs["correct"] = empty((n_q,), "bool", arr)
    _native.cpu.choice_confidence(
        choice_logprobs=arr,
        lengths=None if len_arr is None else view(len_arr, "lengths"),
        labels=None if lab is None else view(lab, "labels"),
        **outs,
    )
    return ChoiceConfidence(**results)


# --- sample_consistency -----------------------------------------------------------------------


def sample_consistency(answers: Any, *, seq_logprobs: Any = None) -> Consistency:
    """How much K sampled answers to each question agree.

    Parameters
    ----------
    answers : integer array ``[Q, K]``
        Cluster id of each sampled answer (equal id = equivalent answer, after whatever
        normalisation or clustering the caller chose); a negative id marks an invalid or
        missing sample, which is left out of every statistic. Any integer dtype, any K.
    seq_logprobs : float array ``[Q, K]``, optional
        Each sample's sequence log-probability (for example ``sequence_stats(...).sum``, or
        ``.mean`` for the length-normalised form of Farquhar et al. 2024); gives
        ``semantic_entropy``. Entries of invalid samples are ignored.

    Returns
    -------
    Consistency
        Per question, over its ``K_valid`` valid samples, with ``n_c`` samples in cluster c and
        ``n1 >= n2`` the two largest counts (``n2 = 0`` with one cluster):

        - ``mode`` int64: the most frequent id, the lowest id among ties;
        - ``agreement = n1 / K_valid``;
        - ``entropy = -sum_c (n_c/K_valid) log(n_c/K_valid)`` (nats; the discrete semantic
          entropy);
        - ``entropy_consistency = 1 - entropy / log(n_unique)``, 1 when ``n_unique == 1``
          (Lyu et al. 2025);
        - ``fsd = (n1 - n2) / K_valid`` (first-second distance);
        - ``n_unique`` int64: the number of clusters;
        - ``semantic_entropy`` (with ``seq_logprobs``): ``-sum_c p(c) log p(c)`` with
          ``p(c) ∝ sum_{s in c} exp(seq_logprobs[s])``, computed stably (log-sum-exp).

        Note that the denominators are ``K_valid``, not K (Lyu et al. divide agreement by K).
        A question with no valid sample has ``mode = -1``, ``n_unique = 0`` and NaN floats.
        ``semantic_entropy`` is NaN for a question whose valid samples' log-probabilities
        include NaN or ``+inf`` or are all ``-inf``. Floats are float64, except
        ``semantic_entropy``: float64 for float64 ``seq_logprobs``, float32 otherwise.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> answers = np.array([[3, 3, 1, 3, -1], [2, 5, 5, 2, 7]])
    >>> c = logcal.sample_consistency(answers)
    >>> c.mode, c.agreement, c.fsd
    (array([3, 2]), array([0.75, 0.4 ]), array([0.5, 0. ]))
    >>> c.n_unique
    array([2, 3])
    """
    func = "sample_consistency"
    host = view(answers, "answers")
    a = host_only(host, "answers", func)
    if host.dtype not in INT_NAMES:
        raise TypeError(f"answers must be an array of integer cluster ids, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"answers must be 2-D [Q, K], got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"answers must not be empty, got shape {a.shape}")
    answers_view = host if a.dtype == np.int64 else view(_as_int64(a, "answers"), "answers")
    n_q = a.shape[0]

    lp = None
    if seq_logprobs is not None:
        lp = _float_array(seq_logprobs, "seq_logprobs", func)
        if lp.shape != a.shape:
            raise ValueError(
                f"seq_logprobs must have the shape of answers {a.shape}, got shape {lp.shape}"
            )

    results, outs = {}, {}
    for field, dtype in (
        ("mode", "int64"),
        ("agreement", "float64"),
        ("entropy", "float64"),
        ("entropy_consistency", "float64"),
        ("fsd", "float64"),
        ("n_unique", "int64"),
    ):
        results[field], outs[field] = empty((n_q,), dtype, host)
    if lp is not None:
        results["semantic_entropy"], outs["semantic_entropy"] = empty((n_q,), _float_out(lp), host)
    _native.cpu.sample_consistency(answers=answers_view, seq_logprobs=lp, **outs)
    return Consistency(**results)
