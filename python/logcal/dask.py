"""Calibration statistics of Dask arrays: one exact state per block, merged up a tree.

Each block becomes a :class:`~logcal.CalibrationStats` on its worker, placed at its position
in the whole array (so a bootstrap's replicates are those of one call on all the data); only
its bytes (:meth:`~logcal.CalibrationStats.to_bytes`, a few hundred bytes for 15 bins) travel,
merged ``split_every`` at a time. Integer sums merge exactly in any order, so the result is bit
for bit that of :func:`logcal.calibration_stats` on the concatenated data, whatever the chunks
or workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from .calibration import CalibrationStats
from .calibration import calibration_stats as _calibration_stats
from .calibration._binning import DEFAULT_EPS, auto_block

__all__ = ["calibration_stats"]

_FUNC = "logcal.dask.calibration_stats"


def calibration_stats(
    confidence: Any,
    correct: Any,
    *,
    n_bins: int = 15,
    binning: str | Sequence[float] = "uniform",
    weights: Any = None,
    eps: float = DEFAULT_EPS,
    n_bootstrap: int = 0,
    seed: int = 0,
    bootstrap_block: int | None = None,
    split_every: int = 8,
    compute: bool = True,
) -> Any:
    """:func:`logcal.calibration_stats` of Dask arrays, computed per block and merged.

    Parameters
    ----------
    confidence, correct, weights : dask.array.Array or array
        As for :func:`logcal.calibration_stats`, flattened in C order; ``correct`` and
        ``weights`` are rechunked to ``confidence``'s blocks.
    n_bins, binning, eps, n_bootstrap, seed, bootstrap_block
        As for :func:`logcal.calibration_stats`; not ``binning="quantile"`` (its edges need
        all the data at once).
    split_every : int
        How many states each merge task combines (the tree's fan-in), at least 2.
    compute : bool
        True: compute now (on the current scheduler or ``dask.distributed`` client) and return
        the statistics; False: return a ``dask.delayed`` object of them.

    Returns
    -------
    CalibrationStats or dask.delayed.Delayed

    Examples
    --------
    >>> import dask.array as da, numpy as np, logcal.dask
    >>> conf = da.from_array(np.array([0.9, 0.8, 0.3, 0.6]), chunks=2)
    >>> correct = da.from_array(np.array([1, 1, 0, 0]), chunks=2)
    >>> logcal.dask.calibration_stats(conf, correct, n_bins=5).ece()
    0.3
    """
    if isinstance(binning, str) and binning == "quantile":
        raise ValueError(
            f"{_FUNC}: binning='quantile' needs all the data at once; pass 'uniform' or edges"
        )
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    conf = da.asarray(confidence).ravel()
    if any(np.isnan(c) for c in conf.chunks[0]):
        raise ValueError(
            f"{_FUNC}: confidence has blocks of unknown size (call compute_chunk_sizes() first)"
        )
    others = [da.asarray(a).ravel() for a in (correct, weights) if a is not None]
    for name, a in zip(("correct", "weights"), others):
        if a.shape != conf.shape:
            raise ValueError(
                f"{name} must have as many values as confidence ({conf.shape[0]}), got {a.shape[0]}"
            )
    others = [a.rechunk(conf.chunks) for a in others]
    settings = dict(
        n_bins=n_bins,
        binning=binning,
        eps=eps,
        n_bootstrap=n_bootstrap,
        seed=seed,
        bootstrap_block=bootstrap_block,
    )
    sizes = conf.chunks[0]
    if n_bootstrap and bootstrap_block is None:
        # the resampling unit the one-shot call sizes for all the samples, not for one block
        settings["bootstrap_block"] = auto_block(int(sum(sizes)))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    blocks = [a.to_delayed().ravel().tolist() for a in (conf, *others)]
    states = [
        dask.delayed(_block_state)(
            *parts, weighted=weights is not None, offset=offsets[i], settings=settings
        )
        for i, parts in enumerate(zip(*blocks))
        if sizes[i] > 0  # an empty block adds nothing (and the one-shot call needs a sample)
    ]
    if not states:  # no samples at all: the error of the one-shot call
        _calibration_stats(np.zeros(0), np.zeros(0, bool), **settings)
    while len(states) > 1:
        states = [
            dask.delayed(_merged)(*states[i : i + split_every])
            for i in range(0, len(states), split_every)
        ]
    result = dask.delayed(CalibrationStats.from_bytes)(states[0])
    return result.compute() if compute else result


def _block_state(
    conf: np.ndarray, *rest: np.ndarray, weighted: bool, offset: int, settings: dict
) -> bytes:
    """The bytes of one block's statistics, at its position in the whole array."""
    correct, weights = rest[0], rest[1] if weighted else None
    try:
        stats = _calibration_stats(
            conf, correct, weights=weights, bootstrap_offset=offset, **settings
        )
    except ValueError as exc:  # its indices are the block's: say where the block starts
        raise ValueError(f"{_FUNC}: the block from position {offset}: {exc}") from None
    return stats.to_bytes()


def _merged(*states: bytes) -> bytes:
    """The bytes of the merge of several states' bytes."""
    out = CalibrationStats.from_bytes(states[0])
    for s in states[1:]:
        out = out.merge(CalibrationStats.from_bytes(s))
    return out.to_bytes()
