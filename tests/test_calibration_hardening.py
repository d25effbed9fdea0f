"""Calibration state: exact or refused. The fixed-point sums never wrap, weights are never
rounded away, concurrent updates are never lost, bootstrap streams never overlap, corrupt state
is never accepted, and the bins are capped."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

import logcal
from logcal import reference as R

CAPACITY = re.escape("would exceed the capacity of the fixed-point sums (values below 2**64)")


# --- item 1: the 128-bit sums never wrap ------------------------------------------------------


def _heaviest(n: int):
    """n samples that each add the largest NLL term: c = 1, wrong, weight 2**30 - 1."""
    return np.ones(n), np.zeros(n, dtype=bool), np.full(n, 2.0**30 - 1)


def test_accumulator_sums_stay_exact_or_raise_overflow_error_at_capacity():
    acc = logcal.CalibrationAccumulator(n_bins=1, eps=1e-300)
    c, y, w = _heaviest(10**6)
    for _ in range(24):  # 24 * 10**6 * (2**30 - 1) * 690.78 < 2**64
        acc.update(c, y, weights=w)
    exact = -np.log(1e-300)
    assert acc.compute().nll() == pytest.approx(exact, rel=1e-15)
    before = acc.to_dict()
    with pytest.raises(OverflowError, match="^the 'nll' sum " + CAPACITY + "$"):
        acc.update(c, y, weights=w)
    assert acc.to_dict() == before  # all or nothing
    other = logcal.CalibrationAccumulator(n_bins=1, eps=1e-300).update(c, y, weights=w, offset=0)
    with pytest.raises(OverflowError, match="^the 'nll' sum " + CAPACITY + "$"):
        acc.merge(other)
    assert acc.to_dict() == before


def test_one_call_past_capacity_raises_overflow_error():
    n = 26_000_000  # the sum of one call would wrap: the kernel's adds are split and checked
    with pytest.raises(OverflowError, match="^the 'nll' sum " + CAPACITY + "$"):
        logcal.calibration_stats(
            np.ones(n, np.float32),
            np.zeros(n, bool),
            n_bins=1,
            eps=1e-300,
            weights=np.full(n, 2.0**30 - 1),
        )


def test_a_call_split_below_capacity_is_bitwise_one_call():
    # the bound of 3 * 10**6 heavy samples with a bootstrap (x20) is above capacity: the call
    # is split into parts, which must add up to the sums of separate chunks, bit for bit
    c, y, w = _heaviest(3 * 10**6)
    c[::3] = 0.25
    kw = dict(n_bins=2, eps=1e-300, n_bootstrap=2, seed=3, bootstrap_block=1000)
    whole = logcal.calibration_stats(c, y, weights=w, **kw)
    a = logcal.calibration_stats(c[:1234567], y[:1234567], weights=w[:1234567], **kw)
    b = logcal.calibration_stats(
        c[1234567:], y[1234567:], weights=w[1234567:], bootstrap_offset=1234567, **kw
    )
    assert whole == a + b


# --- item 2: small weights are refused, not rounded away --------------------------------------


@pytest.mark.parametrize("w", [1e-18, 1e-19, 1e-20, 5e-324, 2.0**-25])
def test_weights_below_the_resolution_are_refused(w):
    message = (
        f"weights[0] = {w!r} is nonzero but below 2**-24, too small for the fixed-point sums; "
        "scale the weights up (the statistics depend only on their ratios)"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        logcal.calibration_stats([0.2, 0.9], [1, 0], n_bins=2, weights=[w, w])
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        logcal.CalibrationAccumulator(2).update(
            np.array([0.2, 0.9]), np.array([1, 0]), weights=[w, w]
        )


@pytest.mark.parametrize("scale", [2.0**-23, 1e-6, 1.0, 2.0**29])  # weights in [0.5, 1)
def test_metrics_do_not_depend_on_the_scale_of_the_weights(scale):
    rng = np.random.default_rng(0)
    c = rng.uniform(size=1000)
    y = rng.uniform(size=1000) < c
    w = rng.uniform(0.5, 1.0, 1000)
    w[::10] = 0.0  # zero weights are allowed: they leave a sample out
    s = logcal.calibration_stats(c, y, n_bins=5, weights=w * scale)
    r = R.calibration_stats(c, y, n_bins=5, weights=w)
    # the 2**-64 resolution is at most 2**-40 of a weight
    for metric in ("ece", "mce", "brier", "nll"):
        assert getattr(s, metric)() == pytest.approx(getattr(r, metric)(), rel=1e-11, abs=1e-14)


# --- item 6: concurrent updates are never lost ------------------------------------------------


def test_concurrent_updates_from_threads_lose_nothing():
    acc = logcal.CalibrationAccumulator(n_bins=10, n_bootstrap=4)
    rng = np.random.default_rng(1)
    chunks = [(rng.uniform(size=250), rng.uniform(size=250) < 0.5) for _ in range(64)]
    barrier = threading.Barrier(4)

    def work(k: int) -> None:
        barrier.wait()
        for c, y in chunks[k::4]:
            acc.update(c, y, weights=np.ones(c.size))
            assert acc.n >= c.size  # reads interleave with the updates

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = acc.compute()
    assert acc.position == 64 * 250 and s.n == 64 * 250
    assert float(s.weight.sum()) == 64 * 250
    assert s._state.ranges == ((0, 64 * 250),)


# --- item 7: bootstrap streams that overlap are not merged ------------------------------------

OVERLAP = re.escape(
    "positions [0, 100) of the bootstrap's stream are taken twice (each sample needs its own "
    "position, which sets its replicate weights: place parts with bootstrap_offset= or update's "
    "offset=)"
)


def test_merging_bootstrap_accumulators_that_overlap_raises():
    c, y = np.full(100, 0.7), np.ones(100, bool)
    a = logcal.CalibrationAccumulator(5, n_bootstrap=3).update(c, y)
    b = logcal.CalibrationAccumulator(5, n_bootstrap=3).update(c, y)  # also from position 0
    before = a.to_dict()
    with pytest.raises(ValueError, match="^cannot merge accumulators: " + OVERLAP + "$"):
        a.merge(b)
    assert a.to_dict() == before
    with pytest.raises(ValueError, match="^CalibrationAccumulator.update: " + OVERLAP + "$"):
        a.update(c, y, offset=0)
    assert a.to_dict() == before
    s = logcal.calibration_stats(c, y, n_bins=5, n_bootstrap=3)
    with pytest.raises(ValueError, match="^cannot merge statistics: " + OVERLAP + "$"):
        s + s
    # parts at their own positions merge, in any order, to one pass, and adjacent ranges join
    b = logcal.CalibrationAccumulator(5, n_bootstrap=3).update(c, y, offset=100)
    one = logcal.CalibrationAccumulator(5, n_bootstrap=3).update(np.r_[c, c], np.r_[y, y])
    assert b.merge(a).to_dict() == one.to_dict()
    assert one.to_dict()["bootstrap"]["ranges"] == [[0, 200]]
    # without a bootstrap, positions do not matter: shards from 0 merge
    plain = logcal.CalibrationAccumulator(5).update(c, y)
    assert plain.merge(logcal.CalibrationAccumulator(5).update(c, y)).n == 200


def test_ranges_travel_through_both_encodings():
    c, y = np.full(50, 0.3), np.zeros(50, bool)
    a = logcal.CalibrationAccumulator(4, n_bootstrap=2).update(c, y, offset=1000)
    a.update(c, y, offset=5)
    for back in (
        logcal.CalibrationAccumulator.from_dict(a.to_dict()),
        logcal.CalibrationAccumulator.from_bytes(a.to_bytes()),
    ):
        assert back._state.ranges == ((5, 55), (1000, 1050))
        with pytest.raises(ValueError, match=re.escape("positions [5, 55) of the")):
            back.merge(a)


# --- item 8: the streaming bootstrap default is as good as the one-shot default ---------------


def test_streaming_default_bootstrap_matches_the_one_shot_interval():
    rng = np.random.default_rng(2)
    n = 20_000
    c = rng.uniform(0.5, 1.0, n)
    y = rng.uniform(size=n) < c - 0.05
    one = logcal.calibration_stats(c, y, n_bootstrap=1000, seed=1)
    acc = logcal.CalibrationAccumulator(n_bootstrap=1000, seed=1)
    for k in range(0, n, 3000):  # chunks that straddle the units' segments
        acc.update(c[k : k + 3000], y[k : k + 3000])
    s = acc.compute()
    assert s.bootstrap_block is None
    assert not np.isnan(s.bootstrap("ece")).any()
    lo1, hi1 = one.interval("ece")
    lo, hi = s.interval("ece")
    width = hi1 - lo1
    assert 0.8 < (hi - lo) / width < 1.25
    assert abs(lo - lo1) < 0.25 * width and abs(hi - hi1) < 0.25 * width
    # chunking never changes the replicates
    whole = logcal.CalibrationAccumulator(n_bootstrap=1000, seed=1).update(c, y)
    assert whole.compute() == s


def test_growing_units_are_the_documented_ones():
    from logcal.calibration._binning import growing_units, units_spanned

    # positions below 2**13: one unit each; [2**13, 2**14): units of 2 numbered from 2**13
    assert growing_units(8190, 8196) == [(8190, 8192, 1, 8190), (8192, 8196, 2, 2 * 8192)]
    assert growing_units(2**24 + 10, 2**24 + 20) == [
        (2**24 + 10, 2**24 + 20, 4096, 4096 * (2**13 + 11 * 2**12) + 10)
    ]
    assert units_spanned([(0, 20_000)], None) == 8192 + 4096 + 904
    assert units_spanned([(0, 20_000)], 8) == 2500
    # the replicates of the growing units equal those of fixed units over each segment
    rng = np.random.default_rng(3)
    c, y = rng.uniform(size=9000), rng.uniform(size=9000) < 0.5
    acc = logcal.CalibrationAccumulator(3, n_bootstrap=5, seed=9).update(c, y)
    lo = logcal.calibration_stats(
        c[:8192], y[:8192], n_bins=3, n_bootstrap=5, seed=9, bootstrap_block=1
    )
    hi = logcal.calibration_stats(
        c[8192:],
        y[8192:],
        n_bins=3,
        n_bootstrap=5,
        seed=9,
        bootstrap_block=2,
        bootstrap_offset=2 * 8192,
    )
    both = lo._state.copy()
    both.add(hi._state)  # the sums alone: the two block settings differ
    assert np.array_equal(acc.compute()._state.boot_bins, both.boot_bins)
    assert np.array_equal(acc.compute()._state.boot_totals, both.boot_totals)


# --- item 9: corrupt state is refused ---------------------------------------------------------


def _dict(**kw) -> dict:
    c, y = np.array([0.2, 0.9, 0.95]), np.array([1, 0, 1])
    return logcal.calibration_stats(c, y, n_bins=2, **kw).to_dict()


PREFIX = "logcal.CalibrationStats dict: "


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bins": [1, 1]}, "the non-empty bins must be increasing bin numbers in [0, 2)"),
        ({"bins": [-1, 1]}, "bins holds -1, outside [0, 9223372036854775807]"),
        ({"count": [1]}, "count must hold 2 values, got 1"),
        ({"count": [-1, 2]}, "count holds -1, outside [1, 9223372036854775807]"),
        ({"count": [1.0, 2]}, "count must be an integer, got 1.0"),
        ({"count": ["1", 2]}, "count must be an integer, got '1'"),
        ({"count": [True, 2]}, "count must be an integer, got True"),
        (
            {"count": [2**70, 2]},
            "count holds 1180591620717411303424, outside [1, 9223372036854775807]",
        ),
        (
            {"count": [2**62, 2**62]},
            "the counts add up to 9223372036854775808, more than 2**63 - 1",
        ),
        ({"position": -1}, "position must be in [0, 2**63), got -1"),
        ({"position": 2.5}, "position must be an integer, got 2.5"),
        ({"weighted": "no"}, "weighted must be true or false, got 'no'"),
        ({"eps": float("nan")}, "eps must be in [1e-300, 0.5), got nan"),
        ({"eps": "1e-12"}, "eps must be a real number, got str"),
        ({"n_bins": "2"}, "n_bins must be an integer, got '2'"),
        (
            {"binning": ["uniform"]},
            "binning must be one of ('uniform', 'quantile', 'edges'), got ['uniform']",
        ),
        (
            {"binning": "edges", "edges": [0.0, float("nan"), 1.0]},
            "bin edges must be non-decreasing, got edges[0] = 0.0 > edges[1] = nan",
        ),
        (
            {"binning": "edges", "edges": [0.0, 0.7, 0.5, 1.0], "n_bins": 3},
            "bin edges must be non-decreasing, got edges[1] = 0.7 > edges[2] = 0.5",
        ),
        (
            {"sums": [1, 2]},
            "sums must be a dict of the fields ('weight', 'conf', 'correct', 'sq_error', 'conf_correct', 'correct_sq', 'nll', 'spiegelhalter_var')",
        ),
        ({"bootstrap": 5}, "bootstrap must be a dict or None, got int"),
    ],
)
def test_corrupt_dict_fields_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match="^" + re.escape(PREFIX + message) + "$"):
        logcal.CalibrationStats.from_dict({**_dict(), **change})


def _sums_changed(field: str, k: int, value: int) -> dict:
    d = _dict()
    d["sums"] = {
        **d["sums"],
        field: [value if i == k else v for i, v in enumerate(d["sums"][field])],
    }
    return d


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("conf", 2**128 - 1, "a bin's 'conf' sum is more than its weight sum"),
        ("conf", 2**65 + 1, "a bin's 'conf' sum is more than its weight sum"),
        ("nll", 2**128 - 1, "a bin's 'nll' sum is more than -log(eps) times its weight sum"),
        (
            "weight",
            2**64 + 1,
            "a bin's weight sum, 18446744073709551617, is not what its 1 samples add up to",
        ),
        (
            "correct",
            2**128,
            "fixed-point sum 340282366920938463463374607431768211456 is outside [0, 2**128)",
        ),
    ],
)
def test_sums_that_samples_cannot_add_up_to_are_refused(field, value, message):
    with pytest.raises(ValueError, match="^" + re.escape(PREFIX + message) + "$"):
        logcal.CalibrationStats.from_dict(_sums_changed(field, 0, value))


def test_corrupt_bootstrap_fields_are_refused_by_name():
    d = _dict(n_bootstrap=2, bootstrap_block=1)
    b = d["bootstrap"]
    for change, message in [
        ({"block": 0}, "bootstrap settings Bootstrap(n=2, seed=0, block=0) are out of range"),
        ({"block": 1.0}, "block must be an integer, got 1.0"),
        ({"n_bootstrap": "2"}, "n_bootstrap must be an integer, got '2'"),
        ({"n_bootstrap": 2**40}, "n_bootstrap must be in [1, 16777216], got 1099511627776"),
        ({"ranges": [[0, 2]]}, "the bootstrap's positions hold 2 samples, the counts 3"),
        (
            {"ranges": [[0, 1], [1, 3]]},
            "ranges must be increasing, non-adjacent [begin, end) positions up to position",
        ),
        (
            {"ranges": [[0, 4]]},
            "ranges must be increasing, non-adjacent [begin, end) positions up to position",
        ),
        (
            {"totals": {**b["totals"], "nll": [2**127, 0]}},
            "a bootstrap replicate's 'nll' total is more than 20 times the sum's",
        ),
    ]:
        with pytest.raises(ValueError, match="^" + re.escape(PREFIX + message) + "$"):
            logcal.CalibrationStats.from_dict({**d, "bootstrap": {**b, **change}})


def test_decoding_the_old_format_versions_is_refused():
    d = _dict()
    with pytest.raises(ValueError, match=re.escape("not a logcal.CalibrationStats dict")):
        logcal.CalibrationStats.from_dict({**d, "version": 2})


# --- item 14: the bins are capped --------------------------------------------------------------


def test_the_number_of_bins_is_capped():
    c, y = np.array([0.2, 0.9]), np.array([1, 0])
    with pytest.raises(ValueError, match=re.escape("n_bins must be <= 2**17, got 131073")):
        logcal.calibration_stats(c, y, n_bins=2**17 + 1)
    with pytest.raises(ValueError, match=re.escape("n_bins must be <= 2**17, got 16777216")):
        logcal.CalibrationAccumulator(n_bins=2**24)
    edges = np.linspace(0, 1, 2**17 + 2)
    with pytest.raises(
        ValueError, match=re.escape("bin edges must make at most 2**17 bins, got 131073")
    ):
        logcal.calibration_stats(c, y, binning=edges)
    with pytest.raises(
        ValueError, match=re.escape("bin edges must make at most 2**17 bins, got 131073")
    ):
        logcal.CalibrationAccumulator(binning=edges)
    message = "n_bootstrap x bins = 100000000 is more than 2**26 replicate bins (48 bytes each)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        logcal.CalibrationAccumulator(n_bins=100, n_bootstrap=10**6)
    assert logcal.calibration_stats(c, y, n_bins=2**17).n == 2


def test_few_units_warning_names_growing_units_without_a_block_size():
    """An accumulator's default units grow along the stream (no fixed block): the warning
    counts them without printing a block size of None."""
    acc = logcal.CalibrationAccumulator(n_bins=5, n_bootstrap=20, seed=0)
    acc.update(np.array([0.2, 0.7, 0.9]), np.array([0, 1, 1]))
    with pytest.warns(UserWarning) as caught:
        acc.compute().interval("ece")
    message = str(caught[0].message)
    assert message.startswith("the bootstrap resampled only about 3 units;"), message
    assert "None" not in message
