"""Fuzzing the calibration state: tampered dicts and bytes, extreme weights, eps and counts,
through from_dict / from_bytes / merge / update / compute. Every case ends as the right answer
or a documented error (ValueError, OverflowError, TypeError): never another exception, never a
sample dropped without an error. The ``ci`` profile (tests/conftest.py) derandomises it."""

from __future__ import annotations

import copy
import hashlib
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from logcal import reference as R

DOCUMENTED = (ValueError, OverflowError, TypeError)
TRIED: Counter = Counter()  # cases per surface, printed at the end (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nfuzz cases tried per surface:", dict(TRIED))


def _states() -> list:
    rng = np.random.default_rng(0)
    c = rng.uniform(size=300)
    y = rng.uniform(size=300) < c
    w = rng.uniform(0, 5, 300)
    acc = logcal.CalibrationAccumulator(6, n_bootstrap=3, seed=5)
    acc.update(c[:200], y[:200]).update(c[200:], y[200:], offset=1000)
    return [
        logcal.calibration_stats(c, y, n_bins=5),
        logcal.calibration_stats(c, y, n_bins=4, weights=w, n_bootstrap=2, bootstrap_offset=7),
        logcal.calibration_stats(c, rng.uniform(size=300), binning=[0, 0.3, 0.3, 1.0]),
        logcal.calibration_stats(c, y, n_bins=6, binning="quantile"),
        acc,
        logcal.CalibrationAccumulator(5, "quantile").update(c, y),
    ]


STATES = _states()

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**130), 2**130),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64, 2**128 - 1, 2**128]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(-3, 2**70), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(obj, prefix=()):
    """Every place in a nested dict/list: the paths of its values."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    if isinstance(obj, dict) and value is _DELETE:
        del obj[path[-1]]
    elif isinstance(obj, list) and value is _DELETE:
        obj.pop(path[-1])
    else:
        obj[path[-1]] = value


_DELETE = object()


def _cls(obj):
    return type(obj)


def _sane(stats: logcal.CalibrationStats) -> None:
    """What any accepted state must give: metrics in their ranges, a round trip."""
    n = stats.n
    assert n == int(stats.count.sum()) >= 0
    if n and float(stats.weight.sum()) > 0:
        assert 0.0 <= stats.ece() <= 1.0
        assert 0.0 <= stats.mce() <= 1.0
        assert 0.0 <= stats.brier() <= 1.0
        assert 0.0 <= stats.nll() <= -math.log(stats.eps) * (1 + 1e-9) + 1e-9
    assert logcal.CalibrationStats.from_bytes(stats.to_bytes()) == stats
    assert logcal.CalibrationStats.from_dict(stats.to_dict()) == stats


@settings(max_examples=300)
@given(which=st.integers(0, len(STATES) - 1), data=st.data())
def test_tampered_dicts_are_refused_or_sane(which, data):
    TRIED["from_dict"] += 1
    obj = STATES[which]
    d = copy.deepcopy(obj.to_dict())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(d) if p]
        path = data.draw(st.sampled_from(paths))
        _set(d, path, data.draw(st.one_of(JUNK, st.just(_DELETE))))
    try:
        back = _cls(obj).from_dict(d)
    except ValueError:
        return
    stats = back if isinstance(back, logcal.CalibrationStats) else back.compute()
    _sane(stats)


def _redigest(data: bytes) -> bytes:
    body = data[:-16]
    return body + hashlib.blake2b(body, digest_size=16).digest()


@settings(max_examples=300)
@given(
    which=st.integers(0, len(STATES) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    forged=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_tampered_bytes_are_refused_or_sane(which, edits, forged, cut):
    TRIED["from_bytes"] += 1
    obj = STATES[which]
    b = bytearray(obj.to_bytes())
    for at, value in edits:
        b[at % len(b)] = value
    data = bytes(b) if cut is None else bytes(b[: cut % (len(b) + 1)])
    if forged and len(data) > 16:
        data = _redigest(data)
    try:
        back = _cls(obj).from_bytes(data)
    except ValueError:
        return
    stats = back if isinstance(back, logcal.CalibrationStats) else back.compute()
    _sane(stats)


EXTREME_WEIGHTS = st.sampled_from(
    [
        0.0,
        2.0**-24,
        2.0**-24 * 0.999,
        1e-300,
        5e-324,
        1.0,
        2.0**30 - 64,
        2.0**30,
        -0.0,
        -1.0,
        float("nan"),
        float("inf"),
    ]
)
EXTREME_EPS = st.one_of(
    st.sampled_from([1e-300, 1e-301, 0.0, 0.5, 0.4999999, -1e-12, True, "1e-12", None]),
    st.floats(allow_nan=True, allow_infinity=True),
)
EXTREME_BINS = st.one_of(
    st.sampled_from([0, -1, 1, 2**17, 2**17 + 1, 2**63, 2.0, True, "3", None]),
    st.integers(1, 50),
)


@settings(max_examples=200)
@given(
    n=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    weights=st.one_of(st.none(), st.lists(EXTREME_WEIGHTS, min_size=40, max_size=40)),
    eps=EXTREME_EPS,
    n_bins=EXTREME_BINS,
    boot=st.sampled_from([0, 2]),
)
def test_calibration_stats_with_extreme_numbers(n, seed, weights, eps, n_bins, boot):
    TRIED["calibration_stats"] += 1
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    y = rng.uniform(size=n) < c
    w = None if weights is None else np.array(weights[:n], dtype=np.float64)
    try:
        s = logcal.calibration_stats(c, y, n_bins=n_bins, eps=eps, weights=w, n_bootstrap=boot)
    except DOCUMENTED:
        return
    assert s.n == n  # nothing dropped
    if float(s.weight.sum()) == 0:
        return
    r = R.calibration_stats(c, y, n_bins=s.n_bins, eps=eps, weights=w)
    assert s.ece() == pytest.approx(r.ece(), rel=1e-9, abs=1e-12)
    assert s.brier() == pytest.approx(r.brier(), rel=1e-9, abs=1e-12)
    assert s.nll() == pytest.approx(r.nll(), rel=1e-9, abs=1e-12)
    _sane(s)


@settings(max_examples=150)
@given(
    chunks=st.lists(
        st.tuples(
            st.integers(0, 30),  # samples
            st.one_of(st.none(), st.integers(-5, 2**64)),  # offset
            st.one_of(st.none(), EXTREME_WEIGHTS),  # one weight for the chunk
        ),
        min_size=1,
        max_size=5,
    ),
    boot=st.sampled_from([0, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_accumulator_updates_and_merges_never_drop_a_sample(chunks, boot, seed):
    TRIED["update/merge"] += 1
    rng = np.random.default_rng(seed)
    accs = [logcal.CalibrationAccumulator(7, n_bootstrap=boot, seed=1) for _ in range(2)]
    expected = [0, 0]
    for k, (n, offset, weight) in enumerate(chunks):
        acc = accs[k % 2]
        c = rng.uniform(size=n)
        y = rng.uniform(size=n) < 0.5
        w = None if weight is None else np.full(n, weight)
        before = acc.to_dict()
        try:
            acc.update(c, y, weights=w, offset=offset)
        except DOCUMENTED:
            assert acc.to_dict() == before  # refused: all or nothing
            continue
        expected[k % 2] += n
        assert acc.n == expected[k % 2]
    a, b = accs
    before = a.to_dict()
    try:
        a.merge(b)
    except DOCUMENTED:
        assert a.to_dict() == before
        return
    assert a.n == sum(expected)
    back = logcal.CalibrationAccumulator.from_bytes(a.to_bytes())
    assert back.to_dict() == a.to_dict()
    _sane(a.compute())


@settings(max_examples=200)
@given(
    parts=st.lists(
        st.tuples(st.integers(1, 2**40), st.integers(0, 2**128 - 1), st.integers(0, 2**64)),
        min_size=2,
        max_size=4,
    )
)
def test_merges_near_capacity_are_exact_or_overflow_error(parts):
    TRIED["merge near capacity"] += 1
    template = logcal.calibration_stats([0.5], [1], n_bins=1, weights=[1.0], eps=1e-300).to_dict()
    states = []
    for count, weight, extra in parts:
        weight = min(weight, count * 2**94)  # what count samples of weight < 2**30 can reach
        conf = weight // 2 + extra % (weight // 2 + 1)  # at most the weight
        sums = {f: [weight // 3] for f in template["sums"]}
        sums.update(weight=[weight], conf=[conf], nll=[weight])
        d = {**template, "count": [count], "position": 0, "sums": sums}
        states.append(logcal.CalibrationStats.from_dict(d))
    total = states[0]
    for s in states[1:]:
        want = total.fixed_sums("weight")[0] + s.fixed_sums("weight")[0]
        want_conf = total.fixed_sums("conf")[0] + s.fixed_sums("conf")[0]
        try:
            total = total + s
        except OverflowError as exc:
            assert max(want, want_conf) >= 2**128
            assert "would exceed the capacity of the fixed-point sums" in str(exc)
            return
        assert total.fixed_sums("weight") == [want] and total.fixed_sums("conf") == [want_conf]
    assert total.n == sum(count for count, _, _ in parts)
