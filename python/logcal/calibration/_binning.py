"""The settings of calibration statistics: checks of ``n_bins``, ``binning``/edges, ``eps`` and
the bootstrap arguments; uniform, equal-mass and explicit bin edges; the accumulator's fine
equal-mass grid; the size of a bootstrap resampling unit."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from .._arrays import int_arg

DEFAULT_EPS = 1e-12
# Every bin costs memory and time whether or not a sample lands in it (the state is dense: 128
# bytes a bin, and 48 more per bootstrap replicate), so their number is capped.
MAX_BINS = 2**17
_MAX_AUTO_UNITS = 2**12
BINNINGS = ("uniform", "quantile", "edges")


class Bootstrap(NamedTuple):
    """The bootstrap settings: replicates, seed, and samples per resampling unit (None: units
    that grow with the position in the stream, see :func:`growing_units`)."""

    n: int
    seed: int
    block: int | None


def n_bins_arg(n_bins: Any) -> int:
    n = int_arg(n_bins, "n_bins")
    if n < 1:
        raise ValueError(f"n_bins must be >= 1, got {n}")
    if n > MAX_BINS:
        raise ValueError(f"n_bins must be <= 2**17, got {n}")
    return n


def eps_arg(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    e = float(eps)
    if not 1e-300 <= e < 0.5:
        raise ValueError(f"eps must be in [1e-300, 0.5), got {eps!r}")
    return e


def edges_arg(binning: Any) -> np.ndarray:
    try:
        edges = np.asarray(binning, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "binning must be 'uniform', 'quantile' or an array of bin edges, got "
            f"{type(binning).__name__}"
        ) from exc
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(
            f"bin edges must be a 1-D array of at least 2 values, got shape {edges.shape}"
        )
    if edges.size - 1 > MAX_BINS:
        raise ValueError(f"bin edges must make at most 2**17 bins, got {edges.size - 1}")
    if edges[0] != 0.0 or edges[-1] != 1.0:
        raise ValueError(
            f"bin edges must start at 0 and end at 1, got {float(edges[0])!r} ... "
            f"{float(edges[-1])!r}"
        )
    bad = np.flatnonzero(~(np.diff(edges) >= 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"bin edges must be non-decreasing, got edges[{i}] = {float(edges[i])!r} > "
            f"edges[{i + 1}] = {float(edges[i + 1])!r}"
        )
    return edges


def uniform_edges(n_bins: int) -> np.ndarray:
    return np.arange(n_bins + 1, dtype=np.float64) / n_bins


def quantile_edges(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass edges [0, e_1, ..., 1] from the data: e_j = the value at sorted position
    floor(j N / n_bins), deduplicated, and dropped when not above the minimum. Bins are
    [e_j, e_{j+1}), so a run of equal values always lands in one bin, and no bin is empty."""
    x = np.asarray(conf, dtype=np.float64)
    n = x.size
    ranks = sorted({(j * n) // n_bins for j in range(1, n_bins)})
    vals = np.partition(x, ranks)[ranks] if ranks else np.empty(0)  # partition copies
    lowest = x.min() if n else 0.0
    inner = np.unique(vals[vals > lowest])
    return np.concatenate([[0.0], inner, [1.0]])


def _fine_inner_edges() -> np.ndarray:
    """The accumulator's fine grid for equal-mass bins: in u = c below 1/2 and u = 1 - c above,
    32 bins per octave of u from 2^-30 to 1/2 (relative width 1/32 in c near 0 and in 1 - c near
    1; at most 1/128 wide in the middle), plus one bin for u < 2^-30 at each end. Every edge is an
    exact double, and bins are [e_j, e_{j+1}) like all others."""
    low = [2.0**e * (1.0 + j / 32.0) for e in range(-30, -1) for j in range(32)]
    high = [1.0 - u for u in reversed(low)]
    return np.array([*low, 0.5, *high], dtype=np.float64)


FINE_INNER = _fine_inner_edges()
FINE_EDGES = np.concatenate([[0.0], FINE_INNER, [1.0]])
FINE_BINS = FINE_INNER.size + 1  # 1858


def fine_quantile_edges(count: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass edges from the sample counts of the fine grid: edge j is the lower edge of the
    fine bin holding sorted position floor(j N / n_bins), deduplicated, and dropped when not above
    the lowest filled fine bin (as :func:`quantile_edges` does with the values)."""
    n = int(count.sum())
    lower = FINE_EDGES[:-1]
    if n == 0:
        inner = np.empty(0)
    else:
        cum = np.cumsum(count)
        pos = np.array([(j * n) // n_bins for j in range(1, n_bins)], dtype=np.int64)
        cand = lower[np.searchsorted(cum, pos, side="right")]
        first = int(np.flatnonzero(count)[0])
        inner = np.unique(cand[cand > lower[first]])
    return np.concatenate([[0.0], inner, [1.0]])


def binning_plan(binning: Any, n_bins: int, conf: np.ndarray | None) -> tuple:
    """(name, full edges, inner edges or None for exact uniform)."""
    if isinstance(binning, str):
        if binning == "uniform":
            return "uniform", uniform_edges(n_bins), None
        if binning == "quantile":
            if conf is None:
                raise ValueError("binning='quantile' needs the data")
            edges = quantile_edges(conf, n_bins)
            return "quantile", edges, edges[1:-1]
        raise ValueError(
            f"binning must be 'uniform', 'quantile' or an array of edges, got {binning!r}"
        )
    edges = edges_arg(binning)
    return "edges", edges, edges[1:-1]


def auto_block(n: int) -> int:
    """Bootstrap unit for N samples: single samples up to 2^12 of them, then the smallest power
    of two that leaves at most 2^12 units (plenty for percentile intervals: the variance of
    the sum is then estimated with 4095 degrees of freedom), at most 4096."""
    block = 1
    while block < 4096 and (n + block - 1) // block > _MAX_AUTO_UNITS:
        block *= 2
    return block


# A stream's units grow with the position, so that any length of stream has enough of them (a
# fixed unit leaves few for a short stream, and costs a pass per replicate for a long one):
# positions [0, 2^13) are one unit each; then each doubling [2^k, 2^(k+1)) is 2^12 units of
# 2^(k-12) samples, up to units of 4096 samples from 2^24 on. Unit numbers count up through the
# segments, so every unit has its own Poisson weights.
_GROWING_FIRST = 2**13
_GROWING_LAST = 2**24


def growing_units(begin: int, end: int) -> list[tuple[int, int, int, int]]:
    """The parts of positions [begin, end) in the growing units' segments, as (part begin, part
    end, block, offset): the kernel's unit ``(offset + i) // block`` of the part's sample i is
    the unit number of position ``part begin + i``."""
    parts = []
    at = begin
    while at < end:
        if at < _GROWING_FIRST:
            seg, seg_end, block, first_unit = 0, _GROWING_FIRST, 1, 0
        else:
            k = min(at.bit_length() - 1, _GROWING_LAST.bit_length() - 1)
            seg = 2**k
            seg_end = 2 ** (k + 1) if seg < _GROWING_LAST else end
            block = 2 ** (k - 12)
            first_unit = _GROWING_FIRST + _MAX_AUTO_UNITS * (k - 13)
        stop = min(end, seg_end)
        parts.append((at, stop, block, first_unit * block + (at - seg)))
        at = stop
    return parts


def units_spanned(ranges: list, block: int | None) -> int:
    """The number of resampling units of the positions ``ranges`` (disjoint (begin, end)
    pairs; a unit split between two ranges counts twice)."""
    total = 0
    for begin, end in ranges:
        parts = [(begin, end, block, begin)] if block is not None else growing_units(begin, end)
        for part_begin, part_end, g, offset in parts:
            total += (offset + part_end - part_begin - 1) // g - offset // g + 1
    return total


def bootstrap_args(
    n_bootstrap: Any, seed: Any, block: Any, offset: Any, n: int, *, streaming: bool
) -> tuple[Bootstrap | None, int]:
    """(bootstrap settings or None for ``n_bootstrap == 0``, offset); ``block=None`` takes
    units that grow along the stream (``streaming``), or sizes the unit for ``n`` samples
    (:func:`auto_block`)."""
    nb = int_arg(n_bootstrap, "n_bootstrap")
    if nb < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {nb}")
    s = int_arg(seed, "seed")
    if not 0 <= s < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {s}")
    off = offset_arg(offset)
    if nb == 0:
        return None, off
    if block is None:
        if streaming:
            return Bootstrap(nb, s, None), off
        block = auto_block(n)
    block = int_arg(block, "bootstrap_block")
    if block < 1:
        raise ValueError(f"bootstrap_block must be >= 1, got {block}")
    return Bootstrap(nb, s, block), off


def offset_arg(offset: Any) -> int:
    off = int_arg(offset, "bootstrap_offset")
    if off < 0:
        raise ValueError(f"bootstrap_offset must be >= 0, got {off}")
    return off
