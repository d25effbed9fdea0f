"""The one state of calibration statistics: settings and exact integer sums, their merge, and
their encodings (a JSON-ready dict and a versioned, checksummed binary form).

:class:`CalibrationStats` and :class:`CalibrationAccumulator` each hold a
:class:`CalibrationState` and delegate merging and serialisation to it. Both encodings store
the non-empty bins only (an accumulator's fine grid is mostly empty); that is all that tells
a sparse encoding from a dense one, the state itself is always dense.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import struct
from fractions import Fraction
from typing import Any

import numpy as np

from ._binning import (
    BINNINGS,
    FINE_EDGES,
    Bootstrap,
    edges_arg,
    eps_arg,
    n_bins_arg,
    uniform_edges,
)
from ._fixed import (
    BOOT_BIN_FIELDS,
    BOOT_TOTAL_FIELDS,
    CONF,
    CONF_CORRECT,
    CORRECT,
    CORRECT_SQ,
    FIELDS,
    FIXED_ONE,
    MAX_COUNT,
    MAX_PARTS,
    MAX_WEIGHT,
    NLL,
    POISSON_MAX,
    SPIEGELHALTER_VAR,
    SQ_ERROR,
    WEIGHT,
    FixedSums,
    from_ints,
    le128,
    limb_size,
    to_ints,
)

STATS_FORMAT = "logcal.CalibrationStats"
ACCUMULATOR_FORMAT = "logcal.CalibrationAccumulator"
_FORMATS = (STATS_FORMAT, ACCUMULATOR_FORMAT)
# Versions of both encodings: the dict's 4 and the bytes' 3 added the per-bin sum
# "spiegelhalter_var"; earlier ones lack it and are refused.
DICT_VERSION = 4

# The binary form, all little-endian: the header, then edges f8[n_edges] (none where the settings
# name them: uniform bins, an accumulator's fine grid), the non-empty bins
# i8[n_filled], their count i8[n_filled] and sums u8[n_filled, 8, 2], the replicates' bin sums
# u8[n_bootstrap, n_filled, 3, 2] and totals u8[n_bootstrap, 2, 2] (128-bit sums as (lo, hi)
# words), the bootstrap's positions i8[n_ranges, 2], and last a BLAKE2b digest of everything
# before it. A block of 0 stands for units that grow along the stream.
BYTES_MAGIC = b"logcalCS"
BYTES_VERSION = 3
_HEADER = struct.Struct("<8sHBBB3xQQQQQQQQdQ")
_HEADER_FIELDS = (
    "magic",
    "version",
    "kind",
    "binning",
    "flags",
    "length",
    "n_bins",
    "n_edges",
    "n_filled",
    "n_bootstrap",
    "seed",
    "block",
    "position",
    "eps",
    "n_ranges",
)
_WEIGHTED, _BOOTSTRAP = 1, 2  # flag bits
# The replicates are dense, a few sums per bin each: their memory is capped at 3 GiB.
MAX_REPLICATE_CELLS = 2**26
_DIGEST = 16
# The slots of the summable view before the sums: the number of parts, and how many of them
# were weighted.
LIMB_HEAD = 2

# What merging states with different settings says, in the words of their owner (statistics
# name the setting; an accumulator names its bins, or its other settings, as a whole).
_MISMATCH = {
    "statistics": {
        "bins": "cannot merge statistics with different bin edges",
        "eps": "cannot merge statistics with different eps ({} and {})",
        "bootstrap": "cannot merge statistics with different bootstrap settings ({} and {})",
    },
    "accumulators": {
        "bins": "cannot merge accumulators with different bins",
        "eps": "cannot merge accumulators with different eps or bootstrap settings",
        "bootstrap": "cannot merge accumulators with different eps or bootstrap settings",
    },
}


class CalibrationState(FixedSums):
    """Settings and exact sums of calibration statistics over a set of bins.

    Settings: ``binning`` (``"uniform"``, ``"quantile"`` or ``"edges"``), ``n_bins`` (the bins
    asked for: an accumulator's equal-mass bins are chosen from a fine grid when computed, so
    its ``edges`` are those of the grid), ``edges`` [bins + 1] float64, ``eps``, ``bootstrap``
    (:class:`Bootstrap` or None), ``weighted`` (weights were given to some part) and
    ``position`` (one past the last sample in the bootstrap's stream); with a bootstrap,
    ``ranges``: the positions of the samples, as sorted, disjoint, non-adjacent (begin, end)
    pairs, so that no two parts that share a position (and so its replicate weights) are
    merged. The sums are those of :class:`FixedSums`, over the bins of ``edges``.
    """

    __slots__ = (
        "binning",
        "bootstrap",
        "edges",
        "eps",
        "n_bins",
        "position",
        "ranges",
        "weighted",
    )

    def __init__(
        self,
        *,
        binning: str,
        n_bins: int,
        edges: np.ndarray,
        eps: float,
        bootstrap: Bootstrap | None = None,
        weighted: bool = False,
        position: int = 0,
        ranges: tuple = (),
    ) -> None:
        edges = np.array(edges, dtype=np.float64)
        cells = (edges.size - 1) * (0 if bootstrap is None else bootstrap.n)
        if cells > MAX_REPLICATE_CELLS:
            raise ValueError(
                f"n_bootstrap x bins = {cells} is more than 2**26 replicate bins (48 bytes each)"
            )
        super().__init__(edges.size - 1, 0 if bootstrap is None else bootstrap.n)
        self.binning = binning
        self.n_bins = int(n_bins)
        self.edges = edges
        self.eps = float(eps)
        self.bootstrap = bootstrap
        self.weighted = bool(weighted)
        self.position = int(position)
        self.ranges = tuple(ranges) if bootstrap is not None else ()

    def add_positions(self, begin: int, end: int, what: str) -> None:
        """Records samples at positions [begin, end) of the stream: with a bootstrap they must
        be new (``what`` names the caller's argument in the message)."""
        if begin < end and self.bootstrap is not None:
            self.ranges = _union(self.ranges, ((begin, end),), what)
        self.position = max(self.position, end)

    def _stored_edges(self, fmt: str) -> np.ndarray:
        """The edges an encoding stores: none where the settings name them."""
        return (
            self.edges[:0]
            if _named_edges(fmt, self.binning, self.n_bins) is not None
            else self.edges
        )

    @property
    def inner_edges(self) -> np.ndarray | None:
        """The edges the kernel compares with; None: exact uniform bins."""
        return None if self.binning == "uniform" else self.edges[1:-1]

    def _settings(self) -> dict:
        return {
            "binning": self.binning,
            "n_bins": self.n_bins,
            "edges": self.edges,
            "eps": self.eps,
            "bootstrap": self.bootstrap,
            "weighted": self.weighted,
            "position": self.position,
            "ranges": self.ranges,
        }

    def copy(self, *, frozen: bool = False) -> CalibrationState:
        """A copy of the settings and sums; ``frozen``: with read-only arrays."""
        out = CalibrationState(**self._settings())
        for name in ("edges", *FixedSums.__slots__):
            a = np.array(getattr(self, name))
            a.flags.writeable = not frozen
            setattr(out, name, a)
        return out

    def empty(self) -> CalibrationState:
        """The same settings, no samples."""
        return CalibrationState(
            **{**self._settings(), "weighted": False, "position": 0, "ranges": ()}
        )

    # -- merging --

    def merge(self, other: CalibrationState, owners: str) -> None:
        """Adds ``other`` into this state (exact: associative and commutative, bit for bit).
        The settings must match (``owners``, ``"statistics"`` or ``"accumulators"``, words the
        messages when they do not); weights and positions combine."""
        words = _MISMATCH[owners]
        if not (
            self.binning == other.binning
            and self.n_bins == other.n_bins
            and np.array_equal(self.edges, other.edges)
        ):
            raise ValueError(words["bins"])
        if self.eps != other.eps:
            raise ValueError(words["eps"].format(self.eps, other.eps))
        if self.bootstrap != other.bootstrap:
            raise ValueError(words["bootstrap"].format(self.bootstrap, other.bootstrap))
        ranges = _union(self.ranges, other.ranges, f"cannot merge {owners}:")
        self.add(other)  # all or nothing: OverflowError past the capacity
        self.ranges = ranges
        self.weighted |= other.weighted
        self.position = max(self.position, other.position)

    # -- the summable view --

    def to_limbs(self) -> np.ndarray:
        """The sums as a flat int64 array whose plain element-wise sum over parts (ranks,
        blocks) is their exact merge (see :meth:`FixedSums.to_limbs`), after two slots: the
        number of parts (1 here) and whether weights were given. The settings, the position
        and the bootstrap's ranges are not in it: they do not add, and are checked and
        combined before (:meth:`summary` is what processes compare)."""
        head = np.array([1, int(self.weighted)], dtype=np.int64)
        return np.concatenate([head, FixedSums.to_limbs(self)])

    def limb_size(self) -> int:
        """The length of :meth:`to_limbs`."""
        return LIMB_HEAD + limb_size(self.count.size, self.boot_bins.shape[0])

    def from_limbs(
        self, limbs: Any, fmt: str, *, position: int | None = None, ranges: tuple | None = None
    ) -> CalibrationState:
        """The state of these settings with the sums of ``limbs``: one :meth:`to_limbs` array
        or the element-wise sum of several, normalised and checked like decoded bytes
        (ValueError naming what is wrong, OverflowError for sums past the capacity), ``fmt``
        the owner's format. ``position`` and ``ranges`` (default: this state's) are those of
        the merged parts."""
        limbs = np.asarray(limbs)
        if limbs.dtype != np.int64 or limbs.shape != (self.limb_size(),):
            raise ValueError(
                f"limbs must be an int64 array of shape ({self.limb_size()},) for these "
                f"settings, got {limbs.dtype} of shape {limbs.shape}"
            )
        parts, weighted = (int(x) for x in limbs[:LIMB_HEAD])
        if not 1 <= parts <= MAX_PARTS or not 0 <= weighted <= parts:
            raise ValueError(
                f"limbs hold {parts} parts ({weighted} weighted): a sum of 1 to 2**31 to_limbs "
                "arrays has as many parts, some of them weighted"
            )
        sums = FixedSums.from_limbs(limbs[LIMB_HEAD:], self.count.size, self.boot_bins.shape[0])
        settings = {
            **self._settings(),
            "weighted": weighted > 0,
            "position": self.position if position is None else position,
            "ranges": self.ranges if ranges is None else ranges,
            "edges": self._stored_edges(fmt),
        }
        bins = np.flatnonzero(sums.count)
        empty = sums.count == 0
        if sums.sums[empty].any() or sums.boot_bins[:, empty].any():
            raise ValueError("limbs: a bin with no samples has nonzero sums")
        try:
            return type(self)._from_parts(
                fmt,
                settings,
                bins,
                sums.count[bins],
                sums.sums[bins],
                sums.boot_bins[:, bins],
                sums.boot_totals,
            )
        except ValueError as exc:
            raise ValueError(f"limbs: {exc}") from None

    def summary(self) -> dict:
        """The settings that must match for a merge (the edges as a digest), and the
        bootstrap's positions: small, for comparing states held by other processes."""
        boot = self.bootstrap
        return {
            "binning": self.binning,
            "n_bins": self.n_bins,
            "edges": hashlib.blake2b(self.edges.tobytes(), digest_size=16).hexdigest(),
            "eps": self.eps,
            "bootstrap": None if boot is None else tuple(boot),
            "position": self.position,
            "ranges": self.ranges,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalibrationState):
            return NotImplemented
        mine, theirs = self._settings(), other._settings()
        return (
            np.array_equal(mine.pop("edges"), theirs.pop("edges"))
            and mine == theirs
            and self.same_sums(other)
        )

    __hash__ = None  # type: ignore[assignment]

    # -- the parts both encodings store --

    def _filled(self) -> tuple:
        """(non-empty bins, their count, sums and replicate bin sums, replicate totals)."""
        bins = np.flatnonzero(self.count)
        return (
            bins,
            self.count[bins],
            self.sums[bins],
            self.boot_bins[:, bins],
            self.boot_totals,
        )

    @classmethod
    def _from_parts(
        cls,
        fmt: str,
        settings: dict,
        bins: np.ndarray,
        count: np.ndarray,
        sums: np.ndarray,
        boot_bins: np.ndarray,
        boot_totals: np.ndarray,
    ) -> CalibrationState:
        """The state of decoded parts, every field checked (ValueError naming it): the settings
        as the constructors check them, the layout of ``fmt``'s owner, the non-empty bins, and
        sums that samples can add up to (see :func:`_check_sums`)."""
        binning = settings["binning"]
        if not isinstance(binning, str) or binning not in BINNINGS:
            raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
        n_bins = n_bins_arg(_integer(settings["n_bins"], "n_bins"))
        named = _named_edges(fmt, binning, n_bins)
        if named is not None:
            if settings["edges"] is not None and len(settings["edges"]):
                raise ValueError(f"edges are stored for binning {binning!r}, which names them")
            edges = named
        else:
            edges = edges_arg(settings["edges"])
            if n_bins != edges.size - 1:
                raise ValueError(
                    f"n_bins = {n_bins} does not match the {edges.size - 1} bins of edges"
                )
        if named is FINE_EDGES and settings["bootstrap"] is not None:
            raise ValueError("an accumulator with binning='quantile' has no bootstrap")
        boot = settings["bootstrap"]
        if boot is not None and not (
            boot.n >= 1
            and 0 <= boot.seed < 2**64
            and (boot.block is None or 1 <= boot.block <= MAX_COUNT)
        ):
            raise ValueError(f"bootstrap settings {boot} are out of range")
        position = _integer(settings["position"], "position")
        if not 0 <= position <= MAX_COUNT:
            raise ValueError(f"position must be in [0, 2**63), got {position}")
        weighted = settings["weighted"]
        if not isinstance(weighted, (bool, np.bool_)):
            raise ValueError(f"weighted must be true or false, got {weighted!r}")
        try:
            eps = eps_arg(settings["eps"])
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        ranges = _checked_ranges(settings["ranges"], position, boot is not None)
        state = cls(
            binning=binning,
            n_bins=n_bins,
            edges=edges,
            eps=eps,
            bootstrap=boot,
            weighted=weighted,
            position=position,
            ranges=ranges,
        )
        nb = edges.size - 1
        if bins.size and not (
            bins[0] >= 0 and bins[-1] < nb and (bins.size == 1 or np.all(np.diff(bins) > 0))
        ):
            raise ValueError(f"the non-empty bins must be increasing bin numbers in [0, {nb})")
        if np.any(count <= 0):
            raise ValueError("the count of a non-empty bin must be > 0")
        n = sum(count.tolist())
        if n > MAX_COUNT:
            raise ValueError(f"the counts add up to {n}, more than 2**63 - 1")
        if boot is not None and n != sum(end - begin for begin, end in ranges):
            raise ValueError(
                f"the bootstrap's positions hold {sum(e - b for b, e in ranges)} samples, the "
                f"counts {n}"
            )
        _check_sums(count, sums, boot_bins, boot_totals, weighted=bool(weighted), eps=eps)
        state.count[bins] = count
        state.sums[bins] = sums
        state.boot_bins[:, bins] = boot_bins
        state.boot_totals[...] = boot_totals
        return state

    # -- the dict --

    def to_dict(self, fmt: str) -> dict:
        """A JSON-ready dict (Python ints for the fixed-point sums), ``fmt`` its "format". The
        bins listed are the non-empty ones; "edges" is None where the settings name them."""
        bins, count, sums, boot_bins, boot_totals = self._filled()
        d = {
            "format": fmt,
            "version": DICT_VERSION,
            "binning": self.binning,
            "n_bins": self.n_bins,
            "edges": [float(e) for e in self._stored_edges(fmt)] or None,
            "eps": self.eps,
            "weighted": self.weighted,
            "position": self.position,
            "bins": bins.tolist(),
            "count": count.tolist(),
            "sums": {f: to_ints(sums[:, i]) for i, f in enumerate(FIELDS)},
            "bootstrap": None,
        }
        if self.bootstrap is not None:
            d["bootstrap"] = {
                "n_bootstrap": self.bootstrap.n,
                "seed": self.bootstrap.seed,
                "block": self.bootstrap.block,
                "ranges": [list(r) for r in self.ranges],
                "bins": {f: to_ints(boot_bins[:, :, i]) for i, f in enumerate(BOOT_BIN_FIELDS)},
                "totals": {f: to_ints(boot_totals[:, i]) for i, f in enumerate(BOOT_TOTAL_FIELDS)},
            }
        return d

    @classmethod
    def from_dict(cls, d: Any, fmt: str) -> CalibrationState:
        """Inverse of :meth:`to_dict`; ValueError naming what is missing or wrong."""
        if not isinstance(d, dict) or d.get("format") != fmt:
            raise ValueError(f"not a {fmt} dict (format/version)")
        if d.get("version") != DICT_VERSION:
            raise ValueError(
                f"not a {fmt} dict of a version this logcal reads: version "
                f"{d.get('version')!r} is not supported (this logcal reads version {DICT_VERSION})"
            )
        try:
            b = d["bootstrap"]
            if b is not None and not isinstance(b, dict):
                raise ValueError(f"bootstrap must be a dict or None, got {type(b).__name__}")
            boot = None
            if b is not None:
                block = b["block"]
                boot = Bootstrap(
                    _integer(b["n_bootstrap"], "n_bootstrap"),
                    _integer(b["seed"], "seed"),
                    None if block is None else _integer(block, "block"),
                )
                if not 1 <= boot.n <= _MAX_REPLICATES:
                    raise ValueError(f"n_bootstrap must be in [1, {_MAX_REPLICATES}], got {boot.n}")
            settings = {k: d[k] for k in ("binning", "n_bins", "edges", "eps", "position")}
            settings.update(
                bootstrap=boot,
                weighted=d["weighted"],
                ranges=None if b is None else _int_rows(b["ranges"], "ranges"),
            )
            bins = np.array(_ints(d["bins"], None, "bins", 0, MAX_COUNT), dtype=np.int64)
            k, n = bins.size, 0 if boot is None else boot.n
            count = np.array(_ints(d["count"], (k,), "count", 1, MAX_COUNT), dtype=np.int64)
            sums = _stacked(d["sums"], FIELDS, (k,), "sums")
            boot_bins = _stacked(None if b is None else b["bins"], BOOT_BIN_FIELDS, (n, k), "bins")
            totals = _stacked(None if b is None else b["totals"], BOOT_TOTAL_FIELDS, (n,), "totals")
            return cls._from_parts(fmt, settings, bins, count, sums, boot_bins, totals)
        except KeyError as exc:
            raise ValueError(f"{fmt} dict has no {exc.args[0]!r}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{fmt} dict: {exc}") from None

    # -- the bytes --

    def to_bytes(self, fmt: str) -> bytes:
        """The binary form: see the layout at the top of this module."""
        bins, count, sums, boot_bins, boot_totals = self._filled()
        boot = self.bootstrap or Bootstrap(0, 0, 0)
        ranges = np.array(self.ranges, dtype=np.int64).reshape(-1, 2)
        body = b"".join(
            np.ascontiguousarray(a, dtype=t).tobytes()
            for a, t in (
                (self._stored_edges(fmt), "<f8"),
                (bins, "<i8"),
                (count, "<i8"),
                (sums, "<u8"),
                (boot_bins, "<u8"),
                (boot_totals, "<u8"),
                (ranges, "<i8"),
            )
        )
        header = _HEADER.pack(
            BYTES_MAGIC,
            BYTES_VERSION,
            _FORMATS.index(fmt),
            BINNINGS.index(self.binning),
            (_WEIGHTED if self.weighted else 0) | (_BOOTSTRAP if self.bootstrap else 0),
            _HEADER.size + len(body) + _DIGEST,
            self.n_bins,
            self._stored_edges(fmt).size,
            bins.size,
            boot.n,
            boot.seed,
            boot.block or 0,
            self.position,
            self.eps,
            len(self.ranges),
        )
        return header + body + _digest(header + body)

    @classmethod
    def from_bytes(cls, data: Any, fmt: str) -> CalibrationState:
        """Inverse of :meth:`to_bytes`; ValueError naming what is wrong with the bytes."""
        func = f"{fmt.split('.')[-1]}.from_bytes"
        try:
            data = bytes(memoryview(data))
        except TypeError:
            raise TypeError(
                f"{func} needs bytes (or a buffer), got {type(data).__name__}"
            ) from None
        if not data.startswith(BYTES_MAGIC):
            raise ValueError(f"{func}: not logcal calibration state (no {BYTES_MAGIC!r} magic)")
        if len(data) < _HEADER.size + _DIGEST:
            raise ValueError(
                f"{func}: truncated: {len(data)} bytes, less than the header and checksum "
                f"({_HEADER.size + _DIGEST} bytes)"
            )
        h = dict(zip(_HEADER_FIELDS, _HEADER.unpack_from(data)))
        if h["version"] != BYTES_VERSION:
            raise ValueError(
                f"{func}: format version {h['version']} is not supported (this logcal reads "
                f"version {BYTES_VERSION})"
            )
        if h["length"] != len(data):
            raise ValueError(
                f"{func}: truncated or corrupt: {len(data)} bytes, the header says {h['length']}"
            )
        if _digest(data[:-_DIGEST]) != data[-_DIGEST:]:
            raise ValueError(f"{func}: checksum mismatch: the bytes are corrupt")
        if h["kind"] >= len(_FORMATS) or _FORMATS[h["kind"]] != fmt:
            what = _FORMATS[h["kind"]] if h["kind"] < len(_FORMATS) else f"kind {h['kind']}"
            raise ValueError(f"{func}: the bytes hold a {what}, not a {fmt}")
        if h["binning"] >= len(BINNINGS) or h["flags"] & ~(_WEIGHTED | _BOOTSTRAP):
            raise ValueError(f"{func}: unknown binning or flags in the header")
        has_boot = bool(h["flags"] & _BOOTSTRAP)
        n, k, e, r = h["n_bootstrap"], h["n_filled"], h["n_edges"], h["n_ranges"]
        if has_boot != (n > 0):
            raise ValueError(f"{func}: the header's bootstrap flag and n_bootstrap disagree")
        shapes = (
            ("<f8", (e,)),
            ("<i8", (k,)),
            ("<i8", (k,)),
            ("<u8", (k, len(FIELDS), 2)),
            ("<u8", (n, k, len(BOOT_BIN_FIELDS), 2)),
            ("<u8", (n, len(BOOT_TOTAL_FIELDS), 2)),
            ("<i8", (r, 2)),
        )
        if _HEADER.size + 8 * sum(math.prod(s) for _, s in shapes) + _DIGEST != len(data):
            raise ValueError(f"{func}: the header's sizes do not add up to {len(data)} bytes")
        parts, at = [], _HEADER.size
        for dtype, shape in shapes:
            size = math.prod(shape)
            parts.append(np.frombuffer(data, dtype, size, at).reshape(shape).astype(dtype[1:]))
            at += 8 * size
        edges, bins, count, sums, boot_bins, totals, ranges = parts
        settings = {
            "binning": BINNINGS[h["binning"]],
            "n_bins": h["n_bins"],
            "edges": edges,
            "eps": h["eps"],
            "bootstrap": Bootstrap(n, h["seed"], h["block"] or None) if has_boot else None,
            "weighted": bool(h["flags"] & _WEIGHTED),
            "position": h["position"],
            "ranges": [tuple(x) for x in ranges.tolist()],
        }
        try:
            return cls._from_parts(fmt, settings, bins, count, sums, boot_bins, totals)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{func}: {exc}") from None


# An encoding's replicates are checked against the memory they take, bins times replicates (as
# the constructors allocate them); beyond this many replicates a state is surely corrupt.
_MAX_REPLICATES = 2**24


def _integer(value: Any, name: str) -> int:
    """An int of a decoded state (never a bool, a float or a string), or a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _ints(
    values: Any, shape: tuple | None, name: str, lo: int | None = 0, hi: int | None = None
) -> list:
    """The flat list of a nested list of ints in [lo, hi] (None: unchecked) of ``shape``
    (None: 1-D, any length)."""
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list, got {type(values).__name__}")
    if shape is not None and len(values) != shape[0]:
        raise ValueError(f"{name} must hold {shape[0]} values, got {len(values)}")
    if shape is not None and len(shape) > 1:
        return [v for row in values for v in _ints(row, shape[1:], name, lo, hi)]
    out = [_integer(v, name) for v in values]
    bad = [v for v in out if lo is not None and not lo <= v <= hi]
    if bad:
        raise ValueError(f"{name} holds {bad[0]}, outside [{lo}, {hi}]")
    return out


def _int_rows(values: Any, name: str) -> list:
    """A list of [begin, end] pairs of ints."""
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list, got {type(values).__name__}")
    flat = _ints(values, (len(values), 2), name, 0, MAX_COUNT)
    return list(zip(flat[0::2], flat[1::2]))


def _checked_ranges(ranges: Any, position: int, with_bootstrap: bool) -> tuple:
    """The bootstrap's positions: sorted, disjoint, non-adjacent, non-empty (begin, end) pairs
    that end by ``position``; none without a bootstrap."""
    if not with_bootstrap:
        if ranges:
            raise ValueError("ranges are stored without a bootstrap")
        return ()
    ranges = tuple((int(begin), int(end)) for begin, end in ranges)
    last = -1  # the end of the previous range: the next must begin after it (not adjacent)
    for begin, end in ranges:
        if not (0 <= begin < end <= position and (begin > last or last == -1)):
            raise ValueError(
                "ranges must be increasing, non-adjacent [begin, end) positions up to position"
            )
        last = end
    return ranges


def _union(a: tuple, b: tuple, what: str) -> tuple:
    """The union of two sets of positions, coalesced; ValueError where they share one."""
    out: list = []
    for begin, end in sorted(a + b):
        if out and begin < out[-1][1]:
            raise ValueError(
                f"{what} positions [{begin}, {min(end, out[-1][1])}) of the bootstrap's stream "
                "are taken twice (each sample needs its own position, which sets its replicate "
                "weights: place parts with bootstrap_offset= or update's offset=)"
            )
        if out and begin == out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((begin, end))
    return tuple(out)


def _check_sums(
    count: np.ndarray,
    sums: np.ndarray,
    boot_bins: np.ndarray,
    boot_totals: np.ndarray,
    *,
    weighted: bool,
    eps: float,
) -> None:
    """Sums that samples can add up to. Per sample, every term is at most its weight (the
    products of c, y <= 1 round to at most w) but the NLL, at most w (-log eps) up to the
    roundings; the weight is 1 (2^64 units) without weights, below 2^30 with; a replicate weighs
    every term at most POISSON_MAX times. So per bin: weight = count 2^64 (unweighted) or at
    most count 2^94; the other sums at most the weight; nll at most (weight + count) -log(eps)
    (1 + 2^-40); and per replicate at most POISSON_MAX times the main sums."""
    counts = count.tolist()
    weight = [int(x) for x in to_ints(sums[:, WEIGHT])] if counts else []
    for c, w in zip(counts, weight):
        if w != c * FIXED_ONE if not weighted else w > c * int(MAX_WEIGHT) * FIXED_ONE:
            raise ValueError(f"a bin's weight sum, {w}, is not what its {c} samples add up to")
    for f in (CONF, CORRECT, SQ_ERROR, CONF_CORRECT, CORRECT_SQ, SPIEGELHALTER_VAR):
        if not le128(sums[:, f], sums[:, WEIGHT]).all():
            raise ValueError(f"a bin's {FIELDS[f]!r} sum is more than its weight sum")
    nll_max = Fraction(-math.log(eps) * (1.0 + 2.0**-40))
    nll_top = [(w + c * FIXED_ONE) * nll_max for c, w in zip(counts, weight)]
    if any(x > top for x, top in zip(to_ints(sums[:, NLL]) if counts else [], nll_top)):
        raise ValueError("a bin's 'nll' sum is more than -log(eps) times its weight sum")
    if boot_bins.shape[0] == 0:
        return
    if not le128(boot_bins[..., 0, :], _capped([POISSON_MAX * w for w in weight])).all():
        raise ValueError(
            f"a bootstrap replicate's bin weight is more than {POISSON_MAX} times the bin's"
        )
    for j in (1, 2):
        if not le128(boot_bins[..., j, :], boot_bins[..., 0, :]).all():
            raise ValueError(
                f"a bootstrap replicate's {BOOT_BIN_FIELDS[j]!r} sum is more than its weight sum"
            )
    for j, f in enumerate((SQ_ERROR, NLL)):
        total = sum(to_ints(sums[:, f])) if counts else 0
        if not le128(boot_totals[:, j], _capped(POISSON_MAX * total)).all():
            raise ValueError(
                f"a bootstrap replicate's {BOOT_TOTAL_FIELDS[j]!r} total is more than "
                f"{POISSON_MAX} times the sum's"
            )


def _capped(values: Any) -> np.ndarray:
    """Non-negative ints (or a list of them) as (lo, hi) words, capped at 2^128 - 1."""
    if isinstance(values, list):
        return from_ints([min(v, 2**128 - 1) for v in values]).reshape(-1, 2)
    return from_ints(min(values, 2**128 - 1))


def _named_edges(fmt: str, binning: str, n_bins: int) -> np.ndarray | None:
    """The edges that ``binning`` and ``n_bins`` determine (then encodings leave them out)."""
    if binning == "uniform":
        return uniform_edges(n_bins)
    if binning == "quantile" and fmt == ACCUMULATOR_FORMAT:
        return FINE_EDGES  # equal-mass bins are chosen from the fine grid when computed
    return None


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def _stacked(by_field: Any, fields: tuple, shape: tuple, name: str) -> np.ndarray:
    """The per-field lists of Python ints of a dict as one (*shape, fields, 2) array."""
    if by_field is None:
        return np.zeros((*shape, len(fields), 2), dtype=np.uint64)
    if not isinstance(by_field, dict):
        raise ValueError(f"{name} must be a dict of the fields {fields}")
    per_field = []
    for f in fields:
        try:
            flat = _ints(by_field[f], shape, f"{name}[{f!r}]", None) if shape[-1] else []
        except ValueError as exc:
            raise ValueError(f"{name} must hold {shape} values per field ({exc})") from None
        per_field.append(from_ints(flat).reshape(*shape, 2))
    return np.stack(per_field, axis=-2)
