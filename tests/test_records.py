"""Result records are values: they pickle, copy and compare, so processes can return them."""

from __future__ import annotations

import copy
import multiprocessing
import pickle

import numpy as np
import pytest

import logcal


def _records():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 7)).astype(np.float32)
    lp = np.log(rng.random(10)).astype(np.float32)
    return [
        logcal.token_stats(logits, np.array([0, 1, 2, 3]), top_k=2),
        logcal.sequence_stats(lp, offsets=np.array([0, 4, 10])),
        logcal.choice_confidence(np.array([[-1.0, -2.0, np.nan]]), labels=np.array([0])),
        logcal.sample_consistency(np.array([[1, 1, 2]]), seq_logprobs=np.array([[-1.0, -2, -3]])),
        logcal.selective(np.array([0.9, 0.2]), np.array([1, 1])),  # NaN AUROC: one class
    ]


@pytest.mark.parametrize("record", _records(), ids=lambda r: type(r).__name__)
def test_records_pickle_and_copy(record):
    for again in (pickle.loads(pickle.dumps(record)), copy.deepcopy(record)):
        assert type(again) is type(record)
        assert again == record
        assert list(again) == list(record)
    assert copy.copy(record) is record  # immutable
    deep = copy.deepcopy(record)
    first = next(iter(record))
    if hasattr(record[first], "shape"):
        assert deep[first] is not record[first]


def _stats_of(seed: int):
    rng = np.random.default_rng(seed)
    return logcal.token_stats(rng.standard_normal((3, 5)).astype(np.float32), top_k=1)


def test_pool_map_returns_records():
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.map(_stats_of, [0, 1, 2], chunksize=1)
    assert got == [_stats_of(s) for s in range(3)]


def test_records_with_different_values_differ():
    a, b = _stats_of(0), _stats_of(1)
    assert a != b
    assert a != dict(a)
