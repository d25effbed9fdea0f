"""CPU benchmarks of sequence_stats, sample_consistency and selective against their peers.

Run (2 threads, the numpy reference and the peers in the same run, ratios printed at the end):

    python -m pytest benchmarks/bench_sequence.py -s -p no:cacheprovider

Sizes are the issue's: sequence_stats on 2^26 float32 tokens in 2^18 sequences (against
np.add.reduceat for the sums and logcal.reference for all five statistics), sample_consistency
on Q = 10^6 questions of K = 20 samples (against logcal.reference), selective on 10^7 pairs
(against scikit-learn's roc_auc_score). Ratios use each job's fastest round.
"""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from logcal import reference

THREADS = 2
FAST = {"rounds": 5, "warmup_rounds": 1, "iterations": 1}
SLOW = {"rounds": 2, "warmup_rounds": 0, "iterations": 1}
_best: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = logcal.get_num_threads()
    logcal.set_num_threads(THREADS)
    yield
    logcal.set_num_threads(before)
    _report()


def _run(benchmark, name, fn, timing):
    benchmark.group = name.split(":")[0]
    benchmark.pedantic(fn, **timing)
    _best[name] = benchmark.stats.stats.min


def _ratio(peer, ours):
    if peer in _best and ours in _best:
        return f"{_best[peer] / _best[ours]:6.1f}x   ({peer}: {_best[peer] * 1e3:9.1f} ms, " \
               f"{ours}: {_best[ours] * 1e3:8.1f} ms)"
    return "not measured"


def _report():
    print(f"\n\nlogcal speed-ups, {THREADS} threads, best of the rounds of this run:")
    for label, peer, ours, target in [
        ("sequence_stats vs np.add.reduceat (sums)", "seq:reduceat", "seq:logcal", 1.5),
        ("sequence_stats vs reference (all five)", "seq:reference", "seq:logcal", 5),
        ("sample_consistency vs reference", "cons:reference", "cons:logcal", 20),
        ("  with seq_logprobs", "cons_lp:reference", "cons_lp:logcal", None),
        ("selective vs sklearn roc_auc_score", "sel:sklearn", "sel:logcal", 3),
        ("selective vs reference", "sel:reference", "sel:logcal", None),
    ]:
        goal = f"(target >= {target}x)" if target else ""
        print(f"  {label:44s} {_ratio(peer, ours)} {goal}")


# --- sequence_stats: 2^26 tokens in 2^18 sequences --------------------------------------------


@pytest.fixture(scope="module")
def ragged():
    rng = np.random.default_rng(0)
    n_tokens, n_seq = 2**26, 2**18
    cuts = np.sort(rng.integers(0, n_tokens + 1, n_seq - 1))
    offsets = np.concatenate([[0], cuts, [n_tokens]]).astype(np.int64)
    logprobs = -rng.exponential(1.0, n_tokens).astype(np.float32)
    return logprobs, offsets


def test_sequence_stats_logcal(benchmark, ragged):
    x, offsets = ragged
    _run(benchmark, "seq:logcal", lambda: logcal.sequence_stats(x, offsets), FAST)


def test_sequence_sums_reduceat(benchmark, ragged):
    x, offsets = ragged
    # reduceat cannot express an empty segment; the starts of the non-empty ones are its input.
    starts = offsets[:-1][np.diff(offsets) > 0]
    _run(benchmark, "seq:reduceat", lambda: np.add.reduceat(x, starts), FAST)


def test_sequence_stats_reference(benchmark, ragged):
    x, offsets = ragged
    _run(benchmark, "seq:reference", lambda: reference.sequence_stats(x, offsets), SLOW)


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


def test_consistency_logcal(benchmark, samples):
    ids, _ = samples
    _run(benchmark, "cons:logcal", lambda: logcal.sample_consistency(ids), FAST)


def test_consistency_reference(benchmark, samples):
    ids, _ = samples
    _run(benchmark, "cons:reference", lambda: reference.sample_consistency(ids), SLOW)


def test_consistency_lp_logcal(benchmark, samples):
    ids, lp = samples
    _run(benchmark, "cons_lp:logcal", lambda: logcal.sample_consistency(ids, seq_logprobs=lp), FAST)


def test_consistency_lp_reference(benchmark, samples):
    ids, lp = samples
    _run(benchmark, "cons_lp:reference",
         lambda: reference.sample_consistency(ids, seq_logprobs=lp), SLOW)


# --- selective: 10^7 pairs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(2)
    n = 10**7
    confidence = rng.random(n)
    correct = rng.random(n) < confidence
    return confidence, correct


def test_selective_logcal(benchmark, pairs):
    c, y = pairs
    _run(benchmark, "sel:logcal", lambda: logcal.selective(c, y), FAST)


def test_selective_sklearn(benchmark, pairs):
    from sklearn.metrics import roc_auc_score

    c, y = pairs
    _run(benchmark, "sel:sklearn", lambda: roc_auc_score(y, c), SLOW)


def test_selective_reference(benchmark, pairs):
    c, y = pairs
    _run(benchmark, "sel:reference", lambda: reference.selective(c, y), SLOW)
