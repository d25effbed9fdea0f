"""The one state behind CalibrationStats and CalibrationAccumulator: one merge (statistics and
accumulators agree bit for bit), one dict encoding, and the versioned, checksummed bytes."""

from __future__ import annotations

import hashlib
import json
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from logcal.calibration import CalibrationState

STATS = "logcal.CalibrationStats"
ACC = "logcal.CalibrationAccumulator"
HEADER = 96  # bytes before the body; the last 16 bytes are the BLAKE2b digest


def _data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    c[::7] = np.round(c[::7], 1)
    return c, rng.uniform(size=n) < c, rng.uniform(0, 3, n)


# the kinds of state that an encoding must keep: bootstrap replicates, weights, soft labels,
# equal-mass bins (data edges for statistics, the fine grid for an accumulator), explicit edges
VARIANTS = {
    "uniform": {"n_bins": 12},
    "bootstrap": {"n_bins": 9, "n_bootstrap": 5, "seed": 7, "bootstrap_block": 16},
    "weighted": {"n_bins": 10, "weights": True},
    "quantile": {"n_bins": 8, "binning": "quantile"},
    "edges": {"binning": [0.0, 0.2, 0.2, 0.7, 1.0], "eps": 1e-6, "weights": True},
}


def _stats(kw: dict, c, y, w) -> logcal.CalibrationStats:
    kw = dict(kw)
    weights = w if kw.pop("weights", False) else None
    return logcal.calibration_stats(c, y, weights=weights, **kw)


def _acc(kw: dict, c, y, w, *, offset: int = 0) -> logcal.CalibrationAccumulator:
    kw = dict(kw)
    weights = w if kw.pop("weights", False) else None
    acc = logcal.CalibrationAccumulator(
        kw.pop("n_bins", 15),
        kw.pop("binning", "uniform"),
        eps=kw.pop("eps", 1e-12),
        n_bootstrap=kw.pop("n_bootstrap", 0),
        seed=kw.pop("seed", 0),
        bootstrap_block=kw.pop("bootstrap_block", 4096),
    )
    return acc.update(c, y, weights=weights, offset=offset)


def _redigest(data: bytes) -> bytes:
    """Bytes with a valid checksum again: content that only a forger could produce."""
    body = data[:-16]
    return body + hashlib.blake2b(body, digest_size=16).digest()


def _patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# --- one merge --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["uniform", "bootstrap", "weighted", "edges"])
def test_stats_merge_and_accumulator_merge_agree_bit_for_bit(variant):
    kw = VARIANTS[variant]
    c, y, w = _data(1, 3000)
    cuts = [0, 700, 701, 2500, 3000]
    parts = [(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    stats_kw = {**kw, "bootstrap_block": kw["bootstrap_block"]} if "n_bootstrap" in kw else kw
    stats = [_stats({**stats_kw, "bootstrap_offset": a}, c[a:b], y[a:b], w[a:b]) for a, b in parts]
    accs = [_acc(kw, c[a:b], y[a:b], w[a:b], offset=a) for a, b in parts]
    merged_stats = stats[3] + stats[1] + stats[0] + stats[2]
    merged_acc = accs[2].merge(accs[0]).merge(accs[3]).merge(accs[1])
    one = _stats(stats_kw, c, y, w)
    assert merged_stats == one == merged_acc.compute()
    assert merged_stats.to_dict() == {**merged_acc.to_dict(), "format": STATS}
    assert merged_stats.to_bytes() == one.to_bytes() == merged_acc.compute().to_bytes()


def test_to_dict_of_stats_and_accumulator_is_one_encoding():
    c, y, w = _data(2, 500)
    for variant in ("uniform", "bootstrap", "weighted", "edges"):
        acc = _acc(VARIANTS[variant], c, y, w)
        d = acc.to_dict()
        assert acc.compute().to_dict() == {**d, "format": STATS}
        assert d["version"] == 4 and d["position"] == 500
        assert d["bins"] == np.flatnonzero(acc.compute().count).tolist()
    # equal-mass bins: the accumulator's state is its fine grid (named, so not stored)
    acc = _acc(VARIANTS["quantile"], c, y, w)
    d, s = acc.to_dict(), acc.compute().to_dict()
    assert d["binning"] == s["binning"] == "quantile" and d["edges"] is None
    assert s["edges"] == acc.compute().edges.tolist() and s["n_bins"] == len(s["edges"]) - 1
    assert set(d) == set(s)


def test_merge_messages_name_the_setting():
    c, y, _ = _data(3, 100)
    a = logcal.calibration_stats(c, y, n_bins=4)
    with pytest.raises(ValueError, match=r"^cannot merge statistics with different bin edges$"):
        a + logcal.calibration_stats(c, y, binning=[0, 0.25, 0.5, 0.75, 1])  # same edges
    with pytest.raises(
        ValueError,
        match=re.escape(
            "cannot merge statistics with different bootstrap settings (None and "
            "Bootstrap(n=2, seed=0, block=1))"
        ),
    ):
        a + logcal.calibration_stats(c, y, n_bins=4, n_bootstrap=2)
    acc = logcal.CalibrationAccumulator(4)
    with pytest.raises(
        ValueError, match=r"^cannot merge accumulators with different eps or bootstrap settings$"
    ):
        acc.merge(logcal.CalibrationAccumulator(4, eps=1e-3))
    with pytest.raises(TypeError, match=r"^can only merge a CalibrationAccumulator, got int$"):
        acc.merge(3)
    # explicit edges say how many bins there are; n_bins is then ignored
    e1 = logcal.CalibrationAccumulator(3, [0, 0.5, 1]).update(c, y)
    e2 = logcal.CalibrationAccumulator(9, [0, 0.5, 1]).update(c, y, offset=100)
    assert e1.merge(e2).n == 200 and e1.position == 200


def test_merge_keeps_the_furthest_position_and_any_weights():
    c, y, w = _data(4, 300)
    a = logcal.calibration_stats(c[:100], y[:100], n_bins=5, bootstrap_offset=200)
    b = logcal.calibration_stats(c[100:], y[100:], n_bins=5, weights=w[100:])
    m = a + b
    assert m.weighted and m.to_dict()["position"] == 300
    assert (b + a) == m


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dict_and_bytes_round_trips_are_bit_for_bit(variant):
    kw = VARIANTS[variant]
    c, y, w = _data(5, 2000)
    s = _stats(kw, c, y, w)
    acc = _acc(kw, c, y, w)
    for obj, cls in ((s, logcal.CalibrationStats), (acc, logcal.CalibrationAccumulator)):
        d = obj.to_dict()
        from_json = cls.from_dict(json.loads(json.dumps(d)))
        assert from_json.to_dict() == d
        b = obj.to_bytes()
        from_bytes = cls.from_bytes(b)
        assert from_bytes.to_bytes() == b and from_bytes.to_dict() == d
        assert cls.from_bytes(bytearray(b)).to_bytes() == b  # any buffer
    assert logcal.CalibrationStats.from_bytes(s.to_bytes()) == s
    back = logcal.CalibrationAccumulator.from_bytes(acc.to_bytes())
    assert back.compute() == acc.compute() and back.position == acc.position
    if "n_bootstrap" in kw:
        again = logcal.CalibrationStats.from_bytes(s.to_bytes())
        assert np.array_equal(again.bootstrap("ece"), s.bootstrap("ece"))
        assert again.interval("brier") == s.interval("brier")


def test_a_restored_accumulator_keeps_accumulating():
    c, y, w = _data(6, 1000)
    kw = VARIANTS["bootstrap"]
    whole = _acc(kw, c, y, w)
    half = logcal.CalibrationAccumulator.from_bytes(_acc(kw, c[:400], y[:400], w).to_bytes())
    half.update(c[400:], y[400:])
    assert half.to_bytes() == whole.to_bytes()
    empty = logcal.CalibrationAccumulator(7)
    assert logcal.CalibrationAccumulator.from_bytes(empty.to_bytes()).to_dict() == empty.to_dict()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
    n_bins=st.integers(1, 40),
    boot=st.sampled_from([0, 3]),
    weighted=st.booleans(),
    soft=st.booleans(),
    offset=st.integers(0, 2**40),
)
def test_bytes_round_trip_of_any_state(n, seed, n_bins, boot, weighted, soft, offset):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    y = rng.uniform(size=n) if soft else rng.uniform(size=n) < c
    w = rng.uniform(0, 2**29, n) if weighted else None
    s = logcal.calibration_stats(
        c, y, n_bins=n_bins, weights=w, n_bootstrap=boot, seed=seed, bootstrap_offset=offset
    )
    back = logcal.CalibrationStats.from_bytes(s.to_bytes())
    assert back == s and back.to_bytes() == s.to_bytes()
    assert logcal.CalibrationStats.from_dict(s.to_dict()) == s


def test_the_state_type_is_shared():
    c, y, _ = _data(7, 50)
    s = logcal.calibration_stats(c, y, n_bins=3)
    acc = logcal.CalibrationAccumulator(3).update(c, y)
    assert isinstance(s._state, CalibrationState) and isinstance(acc._state, CalibrationState)
    assert s._state == acc._state
    assert not s.count.flags.writeable  # statistics are immutable; the accumulator is not
    acc.update(c, y)
    assert s.n == 50 and acc.n == 100


# --- bad bytes --------------------------------------------------------------------------------


def _bytes() -> bytes:
    c, y, w = _data(8, 200)
    return _acc(VARIANTS["bootstrap"], c, y, w).to_bytes()


def _raises(data, message: str, cls=logcal.CalibrationAccumulator) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        cls.from_bytes(data)


def test_truncated_bytes():
    b = _bytes()
    n = len(b)
    f = "CalibrationAccumulator.from_bytes: "
    _raises(b[:-1], f + f"truncated or corrupt: {n - 1} bytes, the header says {n}")
    _raises(b[: n // 2], f + f"truncated or corrupt: {n // 2} bytes, the header says {n}")
    _raises(b + b"\0", f + f"truncated or corrupt: {n + 1} bytes, the header says {n}")
    _raises(b[:40], f + "truncated: 40 bytes, less than the header and checksum (112 bytes)")


def test_corrupt_bytes():
    b = _bytes()
    f = "CalibrationAccumulator.from_bytes: "
    # settings in the header (n_bins, n_filled, seed, eps), bins, counts, sums, the digest
    for at in (12, 26, 40, 60, 85, HEADER, HEADER + 9, len(b) // 2, len(b) - 17, len(b) - 1):
        flipped = bytearray(b)
        flipped[at] ^= 0x10
        _raises(bytes(flipped), f + "checksum mismatch: the bytes are corrupt")
    length_flipped = bytearray(b)
    length_flipped[16] ^= 0x01  # the length field
    _raises(
        bytes(length_flipped),
        f + f"truncated or corrupt: {len(b)} bytes, the header says {len(b) ^ 1}",
    )


def test_foreign_bytes_and_other_versions():
    b = _bytes()
    f = "CalibrationAccumulator.from_bytes: "
    _raises(b"PK\x03\x04" + b[4:], f + "not logcal calibration state (no b'logcalCS' magic)")
    _raises(b"", f + "not logcal calibration state (no b'logcalCS' magic)")
    _raises(
        _patched(b, 8, "<H", 1),
        f + "format version 1 is not supported (this logcal reads version 3)",
    )
    _raises(
        _patched(b, 8, "<H", 0),
        f + "format version 0 is not supported (this logcal reads version 3)",
    )
    stats = logcal.calibration_stats(*_data(9, 30)[:2])
    _raises(
        stats.to_bytes(),
        f + "the bytes hold a logcal.CalibrationStats, not a logcal.CalibrationAccumulator",
    )
    _raises(
        b,
        "CalibrationStats.from_bytes: the bytes hold a logcal.CalibrationAccumulator, not a "
        "logcal.CalibrationStats",
        logcal.CalibrationStats,
    )
    with pytest.raises(
        TypeError,
        match=r"^CalibrationAccumulator.from_bytes needs bytes \(or a buffer\), got str$",
    ):
        logcal.CalibrationAccumulator.from_bytes("logcalCS")


def test_forged_bytes_with_a_valid_checksum_are_checked():
    b = _bytes()
    f = "CalibrationAccumulator.from_bytes: "
    _raises(_redigest(_patched(b, 11, "<B", 9)), f + "unknown binning or flags in the header")
    _raises(
        _redigest(_patched(b, 40, "<Q", 3)),  # n_filled
        f + f"the header's sizes do not add up to {len(b)} bytes",
    )
    _raises(
        _redigest(_patched(b, 32, "<Q", 10)),  # n_edges: uniform bins are named, not stored
        f + f"the header's sizes do not add up to {len(b)} bytes",
    )
    # the first non-empty bin number, then its count
    _raises(
        _redigest(_patched(b, HEADER, "<q", 99)),
        f + "the non-empty bins must be increasing bin numbers in [0, 9)",
    )
    filled = struct.unpack_from("<Q", b, 40)[0]
    _raises(
        _redigest(_patched(b, HEADER + 8 * filled, "<q", 0)),
        f + "the count of a non-empty bin must be > 0",
    )
    _raises(_redigest(_patched(b, 80, "<d", 0.5)), f + "eps must be in [1e-300, 0.5), got 0.5")


def test_bad_dicts_name_what_is_wrong():
    c, y, _ = _data(10, 100)
    d = logcal.calibration_stats(c, y, n_bins=5).to_dict()
    with pytest.raises(ValueError, match=re.escape("not a logcal.CalibrationStats dict")):
        logcal.CalibrationStats.from_dict({**d, "version": 1})
    with pytest.raises(ValueError, match=re.escape("not a logcal.CalibrationAccumulator dict")):
        logcal.CalibrationAccumulator.from_dict(d)
    missing = dict(d)
    del missing["position"]
    with pytest.raises(
        ValueError, match="^" + re.escape("logcal.CalibrationStats dict has no 'position'") + "$"
    ):
        logcal.CalibrationStats.from_dict(missing)
    with pytest.raises(ValueError, match=re.escape("is outside [0, 2**128)")):
        logcal.CalibrationStats.from_dict({**d, "sums": {**d["sums"], "conf": [-1] * 5}})
    with pytest.raises(
        ValueError, match=re.escape("edges are stored for binning 'uniform', which names them")
    ):
        logcal.CalibrationStats.from_dict({**d, "edges": [0, 0.5, 1]})
