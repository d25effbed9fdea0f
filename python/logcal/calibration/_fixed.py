"""The fixed-point integers behind every calibration statistic, and the arrays that hold them.

A sum is kept as ``floor(value * 2**64)`` in 128 bits: a (..., 2) uint64 array of (lo, hi)
words, hi being the integer part. Integer addition does not depend on order, which is what
makes the statistics the same bits however the data is chunked, threaded or merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Field order of the per-bin sums: logcal::calib::Field in cpp/include/logcal/calibration.h.
FIELDS = ("weight", "conf", "correct", "sq_error", "conf_correct", "correct_sq", "nll")
WEIGHT, CONF, CORRECT, SQ_ERROR, CONF_CORRECT, CORRECT_SQ, NLL = range(len(FIELDS))
# Replicate sums: per bin (weight, conf, correct); totals (sq_error, nll).
BOOT_BIN_FIELDS = ("weight", "conf", "correct")
BOOT_TOTAL_FIELDS = ("sq_error", "nll")

FIXED_FRAC_BITS = 64  # a sum is stored as floor(value * 2^64), in 128 bits
FIXED_ONE = 2**FIXED_FRAC_BITS
# The capacity of a sum: values below 2^64, i.e. integers below 2^128. Every add is checked
# against it (:meth:`FixedSums.add`, and ``_kernel.add_pairs`` before the kernel adds).
CAPACITY = 2.0**64
MAX_WEIGHT = 2.0**30
# Nonzero weights below this are refused: the sums' resolution of 2^-64 is then at most 2^-40
# of any sample's weight, so the metrics (ratios of sums) do not depend on the weights' scale.
MIN_WEIGHT = 2.0**-24
# The largest Poisson weight of a bootstrap replicate: logcal::calib::kPoissonMax.
POISSON_MAX = 20
MAX_COUNT = 2**63 - 1  # samples per bin (int64)
_WORD = 0xFFFFFFFFFFFFFFFF


def add128(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise a + b of (..., 2) uint64 arrays of (lo, hi) words, mod 2^128, and where
    the sum wrapped (reached 2^128)."""
    lo = a[..., 0] + b[..., 0]
    carry = (lo < a[..., 0]).astype(np.uint64)
    partial = a[..., 1] + b[..., 1]
    hi = partial + carry
    wrapped = (partial < a[..., 1]) | (hi < partial)
    return np.stack([lo, hi], axis=-1), wrapped


def le128(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise a <= b of (..., 2) uint64 arrays of (lo, hi) words."""
    return (a[..., 1] < b[..., 1]) | ((a[..., 1] == b[..., 1]) & (a[..., 0] <= b[..., 0]))


def overflow_error(what: str) -> OverflowError:
    return OverflowError(
        f"{what} would exceed the capacity of the fixed-point sums (values below 2**64)"
    )


def to_ints(a: np.ndarray) -> Any:
    """(..., 2) uint64 pairs as (nested lists of) Python ints."""
    if a.ndim == 1:
        return (int(a[1]) << 64) | int(a[0])
    return [to_ints(x) for x in a]


def from_ints(values: Any) -> np.ndarray:
    """Nested lists of non-negative Python ints (< 2^128) as (..., 2) uint64 pairs."""
    arr = np.asarray(values, dtype=object)
    flat = arr.reshape(-1)
    out = np.empty((flat.size, 2), dtype=np.uint64)
    for i, v in enumerate(flat):
        v = int(v)
        if not 0 <= v < 2**128:
            raise ValueError(f"fixed-point sum {v} is outside [0, 2**128)")
        out[i, 0] = v & _WORD
        out[i, 1] = v >> 64
    return out.reshape((*arr.shape, 2))


def to_float(a: np.ndarray) -> np.ndarray:
    """(..., 2) fixed-point sums as float64 values (hi is the integer part): to ~1e-16."""
    return a[..., 1].astype(np.float64) + a[..., 0].astype(np.float64) * 2.0**-64


def ratio(num: int, den: int) -> float:
    """``num / den`` correctly rounded (int / int is), NaN for ``den == 0``."""
    return float("nan") if den == 0 else num / den


class FixedSums:
    """The integer sums of a set of bins: ``count`` [n_bins] int64 samples per bin, ``sums``
    [n_bins, FIELDS, 2] and the bootstrap replicates' ``boot_bins`` [B, n_bins,
    BOOT_BIN_FIELDS, 2] and ``boot_totals`` [B, BOOT_TOTAL_FIELDS, 2]. The kernel adds into
    these arrays; :meth:`add` adds another set exactly."""

    __slots__ = ("boot_bins", "boot_totals", "count", "sums")

    def __init__(self, n_bins: int, n_bootstrap: int = 0) -> None:
        self.count = np.zeros(n_bins, dtype=np.int64)
        self.sums = np.zeros((n_bins, len(FIELDS), 2), dtype=np.uint64)
        self.boot_bins = np.zeros((n_bootstrap, n_bins, len(BOOT_BIN_FIELDS), 2), dtype=np.uint64)
        self.boot_totals = np.zeros((n_bootstrap, len(BOOT_TOTAL_FIELDS), 2), dtype=np.uint64)

    def add(self, other: FixedSums) -> None:
        """Adds ``other``'s sums into these (exact), bootstrap replicates included; all or
        nothing: OverflowError naming the sum when one would pass the capacity."""
        count = self.count + other.count  # counts are > 0, so a wrap turns one negative
        if np.any(count < self.count):
            raise OverflowError(f"the sample count of a bin would exceed {MAX_COUNT} (2**63 - 1)")
        added = []
        for name, fields in (
            ("sums", FIELDS),
            ("boot_bins", BOOT_BIN_FIELDS),
            ("boot_totals", BOOT_TOTAL_FIELDS),
        ):
            total, wrapped = add128(getattr(self, name), getattr(other, name))
            if wrapped.any():
                field = fields[int(np.argwhere(wrapped)[0][-1])]
                whose = "the" if name == "sums" else "a bootstrap replicate's"
                raise overflow_error(f"{whose} {field!r} sum")
            added.append(total)
        self.count = count
        self.sums, self.boot_bins, self.boot_totals = added

    def same_sums(self, other: FixedSums) -> bool:
        return all(
            np.array_equal(a, b)
            for a, b in (
                (self.count, other.count),
                (self.sums, other.sums),
                (self.boot_bins, other.boot_bins),
                (self.boot_totals, other.boot_totals),
            )
        )
