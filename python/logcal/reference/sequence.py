"""Float64 references of sequence_stats, choice_confidence and sample_consistency.

Vectorised numpy, written from the definitions (API.md), with the same conventions as the
kernels: empty sequences, NaN propagation, absent options, invalid samples, ties to the lowest
id. No validation: give them valid input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import host_only, to_float64, view
from .._sequence import ChoiceConfidence, Consistency, SequenceStats

__all__ = ["choice_confidence", "sample_consistency", "sequence_stats"]


def _float64(x: Any, name: str) -> np.ndarray:
    return to_float64(x, name)


def _host(x: Any, name: str) -> np.ndarray:
    return np.asarray(host_only(view(x, name), name, "reference"))


def sequence_stats(token_logprobs: Any, offsets: Any = None, *, mask: Any = None) -> SequenceStats:
    """Per-sequence sum, mean, min, count and perplexity, in float64."""
    x = _float64(token_logprobs, "token_logprobs")
    if offsets is not None:
        off = _host(offsets, "offsets").astype(np.int64)
        count = np.diff(off)
        n_seq = count.size
        seq = np.repeat(np.arange(n_seq), count)  # the sequence of each token
        total = np.bincount(seq, weights=x, minlength=n_seq)
        low = np.full(n_seq, np.inf)
        nonempty = count > 0
        if nonempty.any():
            # Between two non-empty starts lie exactly the first one's tokens.
            low[nonempty] = np.minimum.reduceat(x, off[:-1][nonempty])
    else:
        m = np.ones(x.shape, bool) if mask is None else _host(mask, "mask").astype(bool)
        count = m.sum(axis=-1).astype(np.int64)
        total = np.where(m, x, 0.0).sum(axis=-1)
        low = np.where(m, x, np.inf).min(axis=-1, initial=np.inf)
    empty = count == 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = total / count
        low = np.where(empty, np.nan, low)
        perplexity = np.exp(-mean)
    total = np.where(empty, 0.0, total)
    return SequenceStats(
        sum=total, mean=mean, min=low, count=count.astype(np.int64), perplexity=perplexity
    )


def choice_confidence(
    choice_logprobs: Any, *, lengths: Any = None, labels: Any = None
) -> ChoiceConfidence:
    """Softmax over the present options of ``choice_logprobs / lengths``, in float64."""
    ll = _float64(choice_logprobs, "choice_logprobs")
    score = ll if lengths is None else ll / _host(lengths, "lengths").astype(np.float64)
    present = ~np.isnan(ll)
    s = np.where(present, score, -np.inf)
    best = s.max(axis=1)
    usable = np.isfinite(best) & ~(present & (score == np.inf)).any(axis=1)
    shift = np.where(usable, best, 0.0)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.where(present, np.exp(s - shift), 0.0)
        probs = e / e.sum(axis=1, keepdims=True)
    probs[~usable] = np.nan
    pred = np.where(usable, np.argmax(s, axis=1), -1).astype(np.int64)  # first max: lowest index
    confidence = np.where(usable, np.max(np.where(present, probs, -np.inf), axis=1), np.nan)
    fields = {"probs": probs, "pred": pred, "confidence": confidence}
    if labels is not None:
        lab = _host(labels, "labels").astype(np.int64)
        fields["correct"] = usable & (pred == lab)
    return ChoiceConfidence(**fields)


def sample_consistency(answers: Any, *, seq_logprobs: Any = None) -> Consistency:
    """Per-question consistency statistics from their definitions, in float64.

    The answers of each question are sorted; runs of equal valid ids are its clusters.
    """
    a = _host(answers, "answers").astype(np.int64)
    n_q = a.shape[0]
    valid = a >= 0
    order = np.argsort(np.where(valid, a, np.iinfo(np.int64).max), axis=1, kind="stable")
    ids = np.take_along_axis(a, order, axis=1)
    ok = np.take_along_axis(valid, order, axis=1)  # valid samples first, by id
    starts = ok.copy()
    starts[:, 1:] &= ids[:, 1:] != ids[:, :-1]  # first sample of each cluster

    n_unique = starts.sum(axis=1)
    k_valid = ok.sum(axis=1)
    flat_ok = ok.reshape(-1)
    cluster_of = np.cumsum(starts.reshape(-1)) - 1  # global cluster index of each sample
    n_clusters = int(n_unique.sum())
    counts = np.bincount(cluster_of[flat_ok], minlength=n_clusters)
    cluster_id = ids.reshape(-1)[starts.reshape(-1)]
    row = np.repeat(np.arange(n_q), n_unique)  # question of each cluster
    first = np.concatenate([[0], np.cumsum(n_unique)[:-1]])  # first cluster of each question
    has = n_unique > 0

    n1 = np.zeros(n_q, np.int64)
    n2 = np.zeros(n_q, np.int64)
    mode = np.full(n_q, -1, np.int64)
    if n_clusters:
        n1[has] = np.maximum.reduceat(counts, first[has])
        # The first cluster (lowest id) reaching n1 is the mode; n2 is the largest of the rest.
        is_top = counts == n1[row]
        top = np.minimum.reduceat(np.where(is_top, np.arange(n_clusters), n_clusters), first[has])
        mode[has] = cluster_id[top]
        rest = counts.copy()
        rest[top] = 0
        n2[has] = np.maximum.reduceat(rest, first[has])

    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / k_valid[row]
        entropy = np.bincount(row, weights=-p * np.log(p), minlength=n_q)
        entropy = np.where(has, np.where(n_unique == 1, 0.0, entropy), np.nan)
        fields = {
            "mode": mode,
            "agreement": np.where(has, n1 / k_valid, np.nan),
            "entropy": entropy,
            "entropy_consistency": np.where(
                n_unique == 1, 1.0, 1.0 - entropy / np.log(n_unique.astype(np.float64))
            ),
            "fsd": np.where(has, (n1 - n2) / k_valid, np.nan),
            "n_unique": n_unique.astype(np.int64),
        }
    fields["entropy_consistency"][~has] = np.nan

    if seq_logprobs is not None:
        lp = np.take_along_axis(_float64(seq_logprobs, "seq_logprobs"), order, axis=1)
        lp_valid = lp.reshape(-1)[flat_ok]
        # A question is undefined when a valid sample's log-probability is NaN or +inf, or all
        # are -inf.
        bad_sample = np.where(ok, np.isnan(lp) | (lp == np.inf), False).any(axis=1)
        all_neg_inf = ~np.where(ok, lp > -np.inf, False).any(axis=1)
        bad_row = ~has | bad_sample | all_neg_inf
        se = np.full(n_q, np.nan)
        if n_clusters:
            # Farquhar et al. 2024: log p(c) = logsumexp over the cluster's samples, normalised
            # over the question's clusters; SE = -sum p(c) log p(c).
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                sample_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                log_mass = np.logaddexp.reduceat(lp_valid, sample_starts)
                log_total = np.logaddexp.reduceat(log_mass, first[has])
                log_p = log_mass - log_total[np.cumsum(has)[row] - 1]
                term = np.where(log_p > -np.inf, -np.exp(log_p) * log_p, 0.0)
                se_has = np.bincount(row, weights=term, minlength=n_q)
            se = np.where(bad_row, np.nan, se_has)
        fields["semantic_entropy"] = se
    return Consistency(**fields)
