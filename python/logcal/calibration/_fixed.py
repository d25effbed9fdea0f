"""The fixed-point integers behind every calibration statistic, and the arrays that hold them.

A sum is kept as ``floor(value * 2**64)`` in 128 bits: a (..., 2) uint64 array of (lo, hi)
words, hi being the integer part. Integer addition does not depend on order, which is what
makes the statistics the same bits however the data is chunked, threaded or merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Field order of the per-bin sums: logcal::calib::Field in cpp/include/logcal/core/calibration.h.
FIELDS = (
    "weight",
    "conf",
    "correct",
    "sq_error",
    "conf_correct",
    "correct_sq",
    "nll",
    "spiegelhalter_var",
)
WEIGHT, CONF, CORRECT, SQ_ERROR, CONF_CORRECT, CORRECT_SQ, NLL, SPIEGELHALTER_VAR = range(
    len(FIELDS)
)
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

    # -- the summable view --

    def to_limbs(self) -> np.ndarray:
        """The sums as one flat int64 array whose element-wise sum with other such arrays is
        their exact merge, once normalised by :meth:`from_limbs`: every integer split into
        32-bit limbs (least significant first), the counts in 2, each 128-bit sum in 4."""
        words = (
            np.stack([self.count.astype(np.uint64), np.zeros_like(self.count, np.uint64)], -1),
            self.sums,
            self.boot_bins,
            self.boot_totals,
        )
        out = []
        for w, n in zip(words, (COUNT_LIMBS, SUM_LIMBS, SUM_LIMBS, SUM_LIMBS)):
            lo, hi = w[..., 0], w[..., 1]
            limbs = (lo & _LIMB, lo >> _SHIFT, hi & _LIMB, hi >> _SHIFT)[:n]
            out.append(np.stack(limbs, axis=-1).astype(np.int64).reshape(-1))
        return np.concatenate(out)

    @classmethod
    def from_limbs(cls, limbs: Any, n_bins: int, n_bootstrap: int = 0) -> FixedSums:
        """The sums of a :meth:`to_limbs` array, or of an element-wise sum of up to
        :data:`MAX_PARTS` of them (normalised here). ValueError for an array of another
        layout or with negative limbs; OverflowError, naming the sum, for a merge that does not
        fit, as :meth:`add` does."""
        out = cls(n_bins, n_bootstrap)
        size = limb_size(n_bins, n_bootstrap)
        limbs = np.asarray(limbs)
        if limbs.dtype != np.int64 or limbs.shape != (size,):
            raise ValueError(
                f"limbs must be an int64 array of shape ({size},) for {n_bins} bins and "
                f"{n_bootstrap} bootstrap replicates, got {limbs.dtype} of shape {limbs.shape}"
            )
        if np.any(limbs < 0):
            raise ValueError("limbs must be >= 0 (a sum of to_limbs arrays)")
        sizes = [n_bins * COUNT_LIMBS] + [
            getattr(out, name).size // 2 * SUM_LIMBS for name in ("sums", "boot_bins")
        ]
        count, sums, boot_bins, boot_totals = np.split(limbs, np.cumsum(sizes))
        count = _normalised(count.reshape(n_bins, COUNT_LIMBS))
        if np.any(count[:, 1:] > 0) or np.any(count[:, 0] > MAX_COUNT):
            raise OverflowError(f"the sample count of a bin would exceed {MAX_COUNT} (2**63 - 1)")
        out.count = count[:, 0].astype(np.int64)
        for name, fields, part in (
            ("sums", FIELDS, sums),
            ("boot_bins", BOOT_BIN_FIELDS, boot_bins),
            ("boot_totals", BOOT_TOTAL_FIELDS, boot_totals),
        ):
            shape = getattr(out, name).shape
            words = _normalised(part.reshape(*shape[:-1], SUM_LIMBS))
            wrapped = words[..., 2] > 0
            if wrapped.any():
                whose = "the" if name == "sums" else "a bootstrap replicate's"
                raise overflow_error(f"{whose} {fields[int(np.argwhere(wrapped)[0][-1])]!r} sum")
            setattr(out, name, np.ascontiguousarray(words[..., :2]))
        return out


# The summable view. Collectives and metric frameworks can only add tensors element-wise; a
# 128-bit sum split into 32-bit limbs, each in an int64 slot, leaves 31 bits of headroom, so up
# to 2**31 such arrays (ranks, blocks, partitions) add without wrapping, and carrying each
# limb's excess into the next afterwards gives exactly the merged sums.
LIMB_BITS = 32
COUNT_LIMBS, SUM_LIMBS = 2, 4  # a count is below 2**63, a sum below 2**128
MAX_PARTS = 2**31
_LIMB = np.uint64((1 << LIMB_BITS) - 1)
_SHIFT = np.uint64(LIMB_BITS)


def limb_size(n_bins: int, n_bootstrap: int = 0) -> int:
    """The length of :meth:`FixedSums.to_limbs` for these bins and replicates."""
    per_bin = COUNT_LIMBS + SUM_LIMBS * (len(FIELDS) + n_bootstrap * len(BOOT_BIN_FIELDS))
    return n_bins * per_bin + n_bootstrap * SUM_LIMBS * len(BOOT_TOTAL_FIELDS)


def _normalised(limbs: np.ndarray) -> np.ndarray:
    """(..., n) summed limbs (each below 2**63) as (..., 3) uint64: the (lo, hi) words of the
    value modulo 2**128 and what it carries beyond (nonzero: it does not fit in 128 bits)."""
    carry = np.zeros(limbs.shape[:-1], dtype=np.uint64)
    digits = []
    for k in range(SUM_LIMBS):
        # below 2**63 + 2**32, so no wrap in uint64
        v = carry + (limbs[..., k].astype(np.uint64) if k < limbs.shape[-1] else np.uint64(0))
        digits.append(v & _LIMB)
        carry = v >> _SHIFT
    return np.stack(
        [digits[0] | (digits[1] << _SHIFT), digits[2] | (digits[3] << _SHIFT), carry], axis=-1
    )
