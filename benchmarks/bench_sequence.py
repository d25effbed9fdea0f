"""CPU benchmarks of sequence_stats, sample_consistency and selective against their peers.

Run (2 threads, the numpy reference and the peers in the same run; benchmarks/conftest.py
prints the ratios at the end):

    python -m pytest benchmarks/bench_sequence.py

Sizes are the issue's: sequence_stats on 2^26 float32 tokens in 2^18 sequences (against
np.add.reduceat for the sums and logcal.reference for all five statistics), sample_consistency
on Q = 10^6 questions of K = 20 samples (against logcal.reference), selective on 10^7 pairs
(against scikit-learn's roc_auc_score).
"""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from logcal import reference

SEQ = "sequence_stats 2^26 tokens, 2^18 seqs"

CONS = "sample_consistency Q=1e6 K=20"
CONS_LP = "sample_consistency + seq_logprobs"
SEL = "selective 1e7 pairs"

# --- sequence_stats: 2^26 tokens in 2^18 sequences --------------------------------------------


@pytest.fixture(scope="module")
def ragged():
    rng = np.random.default_rng(0)
    n_tokens, n_seq = 2**26, 2**18
    cuts = np.sort(rng.integers(0, n_tokens + 1, n_seq - 1))
    offsets = np.concatenate([[0], cuts, [n_tokens]]).astype(np.int64)
    logprobs = -rng.exponential(1.0, n_tokens).astype(np.float32)
    return logprobs, offsets


def test_sequence_stats_logcal(timed, ragged):
    x, offsets = ragged
    timed(SEQ, "logcal", lambda: logcal.sequence_stats(x, offsets), rounds=5)


def test_sequence_sums_reduceat(timed, ragged):
    x, offsets = ragged
    # reduceat cannot express an empty segment; the starts of the non-empty ones are its input.
    starts = offsets[:-1][np.diff(offsets) > 0]
    timed(SEQ, "np.add.reduceat (sums only)", lambda: np.add.reduceat(x, starts), rounds=5)


def test_sequence_stats_reference(timed, ragged):
    x, offsets = ragged
    timed(SEQ, "numpy reference (float64)", lambda: reference.sequence_stats(x, offsets), rounds=2)


# --- sample_consistency: Q = 10^6, K = 20 ------------------------------------------------------


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(1)
    q, k = 10**6, 20
    # Each question has a favourite answer that a question-dependent share of samples agrees on;
    # the others are scattered; 5% of the samples are invalid.
    favourite = rng.integers(0, 50, (q, 1))
    agrees = rng.random((q, k)) < rng.uniform(0.2, 1.0, (q, 1))
    ids = np.where(agrees, favourite, rng.integers(0, 50, (q, k)))
    ids[rng.random((q, k)) < 0.05] = -1
    seq_logprobs = rng.normal(-20.0, 8.0, (q, k))
    return ids, seq_logprobs


def test_consistency_logcal(timed, samples):
    ids, _ = samples
    timed(CONS, "logcal", lambda: logcal.sample_consistency(ids), rounds=5)


def test_consistency_reference(timed, samples):
    ids, _ = samples
    timed(CONS, "numpy reference", lambda: reference.sample_consistency(ids), rounds=2)


def test_consistency_lp_logcal(timed, samples):
    ids, lp = samples
    timed(CONS_LP, "logcal", lambda: logcal.sample_consistency(ids, seq_logprobs=lp), rounds=5)


def test_consistency_lp_reference(timed, samples):
    ids, lp = samples
    timed(
        CONS_LP,
        "numpy reference",
        lambda: reference.sample_consistency(ids, seq_logprobs=lp),
        rounds=2,
    )


# --- selective: 10^7 pairs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(2)
    n = 10**7
    confidence = rng.random(n)
    correct = rng.random(n) < confidence
    return confidence, correct


def test_selective_logcal(timed, pairs):
    c, y = pairs
    timed(SEL, "logcal", lambda: logcal.selective(c, y), rounds=5)


def test_selective_sklearn(timed, pairs):
    from sklearn.metrics import roc_auc_score

    c, y = pairs
    timed(SEL, "scikit-learn roc_auc_score", lambda: roc_auc_score(y, c), rounds=2)


def test_selective_reference(timed, pairs):
    c, y = pairs
    timed(SEL, "numpy reference", lambda: reference.selective(c, y), rounds=2)
