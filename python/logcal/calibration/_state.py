"""The one state of calibration statistics: settings and exact integer sums, their merge, and
their encodings (a JSON-ready dict and a versioned, checksummed binary form).

:class:`CalibrationStats` and :class:`CalibrationAccumulator` each hold a
:class:`CalibrationState` and delegate merging and serialisation to it. Both encodings store
the non-empty bins only (an accumulator's fine grid is mostly empty); that is all that tells
a sparse encoding from a dense one, the state itself is always dense.
"""

from __future__ import annotations

import hashlib
import struct
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
from ._fixed import BOOT_BIN_FIELDS, BOOT_TOTAL_FIELDS, FIELDS, FixedSums, from_ints, to_ints

STATS_FORMAT = "logcal.CalibrationStats"
ACCUMULATOR_FORMAT = "logcal.CalibrationAccumulator"
_FORMATS = (STATS_FORMAT, ACCUMULATOR_FORMAT)
DICT_VERSION = 2

# The binary form, all little-endian: the header, then edges f8[n_edges] (none where the settings
# name them: uniform bins, an accumulator's fine grid), the non-empty bins
# i8[n_filled], their count i8[n_filled] and sums u8[n_filled, 7, 2], the replicates' bin sums
# u8[n_bootstrap, n_filled, 3, 2] and totals u8[n_bootstrap, 2, 2] (128-bit sums as (lo, hi)
# words), and last a BLAKE2b digest of everything before it.
BYTES_MAGIC = b"logcalCS"
BYTES_VERSION = 1
_HEADER = struct.Struct("<8sHBBB3xQQQQQQQQd")
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
)
_WEIGHTED, _BOOTSTRAP = 1, 2  # flag bits
_DIGEST = 16

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
    ``position`` (one past the last sample in the bootstrap's stream). The sums are those of
    :class:`FixedSums`, over the bins of ``edges``.
    """

    __slots__ = ("binning", "bootstrap", "edges", "eps", "n_bins", "position", "weighted")

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
    ) -> None:
        edges = np.array(edges, dtype=np.float64)
        super().__init__(edges.size - 1, 0 if bootstrap is None else bootstrap.n)
        self.binning = binning
        self.n_bins = int(n_bins)
        self.edges = edges
        self.eps = float(eps)
        self.bootstrap = bootstrap
        self.weighted = bool(weighted)
        self.position = int(position)

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
        return CalibrationState(**{**self._settings(), "weighted": False, "position": 0})

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
        self.add(other)
        self.weighted |= other.weighted
        self.position = max(self.position, other.position)

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
        """The state of decoded parts, checked as far as they can be (the settings as the
        constructors check them, the layout of ``fmt``'s owner, the non-empty bins)."""
        binning = settings["binning"]
        if binning not in BINNINGS:
            raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
        n_bins = n_bins_arg(settings["n_bins"])
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
        if boot is not None and not (boot.n >= 1 and 0 <= boot.seed < 2**64 and boot.block >= 1):
            raise ValueError(f"bootstrap settings {boot} are out of range")
        position = int(settings["position"])
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        state = cls(
            binning=binning,
            n_bins=n_bins,
            edges=edges,
            eps=eps_arg(settings["eps"]),
            bootstrap=boot,
            weighted=settings["weighted"],
            position=position,
        )
        nb = edges.size - 1
        if bins.size and not (
            bins[0] >= 0 and bins[-1] < nb and (bins.size == 1 or np.all(np.diff(bins) > 0))
        ):
            raise ValueError(f"the non-empty bins must be increasing bin numbers in [0, {nb})")
        if np.any(count <= 0):
            raise ValueError("the count of a non-empty bin must be > 0")
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
                "bins": {f: to_ints(boot_bins[:, :, i]) for i, f in enumerate(BOOT_BIN_FIELDS)},
                "totals": {f: to_ints(boot_totals[:, i]) for i, f in enumerate(BOOT_TOTAL_FIELDS)},
            }
        return d

    @classmethod
    def from_dict(cls, d: Any, fmt: str) -> CalibrationState:
        """Inverse of :meth:`to_dict`; ValueError naming what is missing or wrong."""
        if not isinstance(d, dict) or d.get("format") != fmt or d.get("version") != DICT_VERSION:
            raise ValueError(f"not a {fmt} dict (format/version)")
        try:
            b = d["bootstrap"]
            boot = None if b is None else Bootstrap(b["n_bootstrap"], b["seed"], b["block"])
            settings = {k: d[k] for k in ("binning", "n_bins", "edges", "eps", "position")}
            settings.update(bootstrap=boot, weighted=bool(d["weighted"]))
            bins = np.array(d["bins"], dtype=np.int64).reshape(-1)
            count = np.array(d["count"], dtype=np.int64).reshape(bins.size)
            k, n = bins.size, 0 if boot is None else boot.n
            sums = _stacked(d["sums"], FIELDS, (k,), "sums")
            boot_bins = _stacked(None if b is None else b["bins"], BOOT_BIN_FIELDS, (n, k), "bins")
            totals = _stacked(None if b is None else b["totals"], BOOT_TOTAL_FIELDS, (n,), "totals")
        except KeyError as exc:
            raise ValueError(f"{fmt} dict has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{fmt} dict: {exc}") from None
        return cls._from_parts(fmt, settings, bins, count, sums, boot_bins, totals)

    # -- the bytes --

    def to_bytes(self, fmt: str) -> bytes:
        """The binary form: see the layout at the top of this module."""
        bins, count, sums, boot_bins, boot_totals = self._filled()
        boot = self.bootstrap or Bootstrap(0, 0, 0)
        body = b"".join(
            np.ascontiguousarray(a, dtype=t).tobytes()
            for a, t in (
                (self._stored_edges(fmt), "<f8"),
                (bins, "<i8"),
                (count, "<i8"),
                (sums, "<u8"),
                (boot_bins, "<u8"),
                (boot_totals, "<u8"),
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
            boot.block,
            self.position,
            self.eps,
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
        n, k, e = h["n_bootstrap"], h["n_filled"], h["n_edges"]
        if has_boot != (n > 0):
            raise ValueError(f"{func}: the header's bootstrap flag and n_bootstrap disagree")
        shapes = (
            ("<f8", (e,)),
            ("<i8", (k,)),
            ("<i8", (k,)),
            ("<u8", (k, len(FIELDS), 2)),
            ("<u8", (n, k, len(BOOT_BIN_FIELDS), 2)),
            ("<u8", (n, len(BOOT_TOTAL_FIELDS), 2)),
        )
        if _HEADER.size + 8 * sum(int(np.prod(s)) for _, s in shapes) + _DIGEST != len(data):
            raise ValueError(f"{func}: the header's sizes do not add up to {len(data)} bytes")
        parts, at = [], _HEADER.size
        for dtype, shape in shapes:
            size = int(np.prod(shape))
            parts.append(np.frombuffer(data, dtype, size, at).reshape(shape).astype(dtype[1:]))
            at += 8 * size
        edges, bins, count, sums, boot_bins, totals = parts
        settings = {
            "binning": BINNINGS[h["binning"]],
            "n_bins": h["n_bins"],
            "edges": edges,
            "eps": h["eps"],
            "bootstrap": Bootstrap(n, h["seed"], h["block"]) if has_boot else None,
            "weighted": bool(h["flags"] & _WEIGHTED),
            "position": h["position"],
        }
        try:
            return cls._from_parts(fmt, settings, bins, count, sums, boot_bins, totals)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{func}: {exc}") from None


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
    try:
        return np.stack([from_ints(by_field[f]).reshape(*shape, 2) for f in fields], axis=-2)
    except ValueError as exc:
        raise ValueError(f"{name} must hold {shape} values per field ({exc})") from None
