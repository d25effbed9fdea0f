"""Streaming calibration statistics: an accumulator of exact, mergeable state."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._arrays import host_only, int_arg, view
from ._binning import (
    DEFAULT_EPS,
    FINE_EDGES,
    binning_plan,
    bootstrap_args,
    eps_arg,
    fine_quantile_edges,
    n_bins_arg,
)
from ._fixed import FIELDS, MAX_COUNT, FixedSums, from_ints, to_ints
from ._inputs import pairs
from ._kernel import (
    DevicePart,
    add_pairs_checked,
    confidence_from_max_logprob,
    gpu_unsupported,
    is_cuda,
)
from ._state import ACCUMULATOR_FORMAT, CalibrationState
from ._stats import CalibrationStats


class CalibrationAccumulator:
    """Streaming calibration statistics: ``update`` with chunks, ``merge`` accumulators (from
    other threads, processes or machines), ``compute`` a :class:`CalibrationStats`.

    The state is the exact fixed-point sums of :class:`CalibrationStats` (a few integers per
    bin), so any chunking and any merge order give bitwise the same result as one call of
    :func:`calibration_stats` on all the data (for uniform or explicit bins; equal-mass bins
    come from a fine grid here, see :class:`CalibrationStats`).

    Parameters
    ----------
    n_bins, binning, eps
        As for :func:`calibration_stats`.
    n_bootstrap, seed, bootstrap_block
        Poisson bootstrap replicates kept alongside (not with ``binning="quantile"``).
        Resampling units are ``bootstrap_block`` consecutive samples of the stream; by default
        they grow with the position, so that a stream of any length has enough of them at a
        small cost: positions below 2**13 are one unit each, then each doubling of the position
        (``[2**k, 2**(k+1))``) is 2**12 units, up to units of 4096 samples from 2**24 on.
        ``update`` places each chunk after the previous one, or at ``offset=``; with a
        bootstrap, no position may be added twice (in an update or a merge): it would reuse
        its replicate weights.

    Notes
    -----
    Safe to share between threads: updates, merges and reads take the accumulator's lock.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> acc = logcal.CalibrationAccumulator(n_bins=10)
    >>> acc.update(np.array([0.9, 0.3]), np.array([1, 0]))
    CalibrationAccumulator(n=2, n_bins=10, binning='uniform')
    >>> other = logcal.CalibrationAccumulator(n_bins=10).update(np.array([0.8]), np.array([0]))
    >>> acc.merge(other).compute().ece()
    0.4
    """

    def __init__(
        self,
        n_bins: int = 15,
        binning: str | Sequence[float] = "uniform",
        *,
        eps: float = DEFAULT_EPS,
        n_bootstrap: int = 0,
        seed: int = 0,
        bootstrap_block: int | None = None,
    ) -> None:
        n_bins = n_bins_arg(n_bins)
        eps = eps_arg(eps)
        if isinstance(binning, str) and binning == "quantile":
            name, edges = "quantile", FINE_EDGES  # equal-mass bins are chosen when computed
        else:
            name, edges, _ = binning_plan(binning, n_bins, None)
            n_bins = edges.size - 1  # explicit edges say how many bins there are
        boot, _ = bootstrap_args(n_bootstrap, seed, bootstrap_block, 0, 0, streaming=True)
        if boot is not None and name == "quantile":
            raise ValueError(
                "n_bootstrap > 0 is not available with binning='quantile' in an accumulator "
                "(the replicates would need the fine grid); use uniform or explicit bins"
            )
        self._hold(
            CalibrationState(binning=name, n_bins=n_bins, edges=edges, eps=eps, bootstrap=boot)
        )

    def _hold(self, state: CalibrationState) -> None:
        # Updates read, add to and replace the state in several steps: one at a time.
        self._lock = threading.RLock()
        self._state = state
        # The sums of CUDA updates, kept on their device until they are read. Their samples of
        # update() are already counted in the position; those of update_from_logits() are not.
        self._device = DevicePart(state.count.size, state.inner_edges)

    @classmethod
    def _of(cls, state: CalibrationState) -> CalibrationAccumulator:
        acc = cls.__new__(cls)
        acc._hold(state)
        return acc

    def _flush_device(self) -> None:
        """Adds the device part of the state into the host state (exact; synchronises). The
        caller holds the lock."""
        taken = self._device.take()
        if taken is None:
            return
        sums, counted = taken
        self._state.add(sums)
        self._state.position += int(sums.count.sum()) - counted

    def _read(self) -> CalibrationState:
        """The whole state, the device part included (a copy: safe to read outside the lock)."""
        with self._lock:
            self._flush_device()
            return self._state.copy()

    @property
    def n(self) -> int:
        """Samples added so far (reads any state kept on a GPU: synchronises)."""
        with self._lock:
            self._flush_device()
            return int(self._state.count.sum())

    @property
    def position(self) -> int:
        """Where the next chunk goes in the bootstrap's stream (one past the last sample)."""
        with self._lock:
            self._flush_device()
            return self._state.position

    def update(
        self, confidence: Any, correct: Any, *, weights: Any = None, offset: int | None = None
    ) -> CalibrationAccumulator:
        """Adds a chunk (an empty chunk is allowed and adds nothing). ``offset`` places the
        chunk in the bootstrap's stream (default: after everything added so far).

        CUDA arrays are binned on their GPU into state kept there (bitwise the state the CPU
        would build) until :meth:`compute`, :meth:`merge`, :meth:`to_dict` or :attr:`n` reads
        it; validating the chunk waits for one 8-byte read. Not with weights or bootstrap."""
        with self._lock:
            return self._update(confidence, correct, weights, offset)

    def _update(
        self, confidence: Any, correct: Any, weights: Any, offset: int | None
    ) -> CalibrationAccumulator:
        state = self._state
        if is_cuda(confidence):
            func = "CalibrationAccumulator.update"
            if weights is not None:
                raise gpu_unsupported(func, "weights=")
            if state.bootstrap is not None:
                raise gpu_unsupported(func, "an accumulator with n_bootstrap > 0")
            start = state.position if offset is None else int_arg(offset, "offset")
            n = self._device.add_pairs(confidence, correct, eps=state.eps, func=func)
            state.position = max(state.position, start + n)
            return self
        p = pairs(confidence, correct, weights, "CalibrationAccumulator.update", allow_empty=True)
        start = state.position if offset is None else int_arg(offset, "offset")
        if start < 0:
            raise ValueError(f"offset must be >= 0, got {start}")
        end = start + p.conf.size
        if end > MAX_COUNT:
            raise ValueError(f"offset + samples must be below 2**63, got {end}")
        boot = state.bootstrap
        # the positions first: a chunk over positions already added is refused before any work
        ranges, position = state.ranges, state.position
        state.add_positions(start, end, "CalibrationAccumulator.update:")
        try:
            scratch = FixedSums(state.count.size, 0 if boot is None else boot.n)
            add_pairs_checked(
                p, scratch, inner_edges=state.inner_edges, eps=state.eps, boot=boot, offset=start
            )
            state.add(scratch)  # only once the whole chunk is valid, and fits
        except BaseException:
            state.ranges, state.position = ranges, position
            raise
        state.weighted |= p.weights is not None
        return self

    def update_from_logits(
        self, logits: Any, targets: Any, *, temperature: float = 1.0, ignore_index: int = -100
    ) -> CalibrationAccumulator:
        """Adds the token positions of ``logits`` ``[..., V]``: confidence = the largest
        probability (``exp(max_logprob)`` of :func:`token_stats`), correct = (argmax ==
        target). Positions whose target is ``ignore_index``, and rows whose statistics are NaN
        (NaN, ``+inf`` or all ``-inf`` logits), are skipped.

        On a GPU this is one pass over the logits (the token statistics) and a small binning
        kernel, and the state stays on the device until it is read: no synchronisation except
        the range check of CUDA ``targets`` (one 8-byte read). The state is bitwise what
        :meth:`update` builds on the CPU from the same confidences, which are computed from
        the stored ``max_logprob`` by an exponential with the same bits on every device."""
        from .._token import _temperature, token_stats

        func = "CalibrationAccumulator.update_from_logits"
        if targets is None:
            raise TypeError(f"{func} needs targets (the token each position should predict)")
        temperature = _temperature(temperature)
        ignore_index = int_arg(ignore_index, "ignore_index")
        if is_cuda(logits):
            with self._lock:
                if self._state.bootstrap is not None:
                    raise gpu_unsupported(func, "an accumulator with n_bootstrap > 0")
                self._device.add_logits(
                    logits,
                    targets,
                    temperature=temperature,
                    ignore_index=ignore_index,
                    eps=self._state.eps,
                    func=func,
                )
            return self
        # One read of the caller's targets: a private copy, checked by the token kernel as it
        # reads it, then compared with the argmax.
        t = np.array(host_only(view(targets, "targets"), "targets", func))
        st = token_stats(logits, t, temperature=temperature, ignore_index=ignore_index)
        lp = np.ascontiguousarray(np.asarray(st.max_logprob).reshape(-1))
        am = np.asarray(st.argmax).reshape(-1)
        t = t.reshape(-1)
        keep = ~np.isnan(lp) & (am >= 0) & (t != ignore_index)
        conf = confidence_from_max_logprob(lp)
        return self.update(conf[keep], (am == t)[keep])

    def merge(self, other: CalibrationAccumulator) -> CalibrationAccumulator:
        """Adds another accumulator's state into this one (exact); returns self."""
        if not isinstance(other, CalibrationAccumulator):
            raise TypeError(f"can only merge a CalibrationAccumulator, got {type(other).__name__}")
        theirs = other._read()  # a copy: only one lock is held at a time, so none can deadlock
        with self._lock:
            self._flush_device()
            self._state.merge(theirs, "accumulators")
        return self

    def reset(self) -> None:
        with self._lock:
            self._state = self._state.empty()
            self._device = DevicePart(self._state.count.size, self._state.inner_edges)

    def compute(self) -> CalibrationStats:
        """The statistics of everything added so far (reads GPU state: synchronises)."""
        state = self._read()
        if state.binning != "quantile":
            return CalibrationStats(state)
        return CalibrationStats(self._equal_mass_state(state))

    @staticmethod
    def _equal_mass_state(fine: CalibrationState) -> CalibrationState:
        """The state of the equal-mass bins: whole fine bins, summed into the coarse ones."""
        edges = fine_quantile_edges(fine.count, fine.n_bins)
        coarse = CalibrationState(
            binning="quantile",
            n_bins=edges.size - 1,
            edges=edges,
            eps=fine.eps,
            weighted=fine.weighted,
            position=fine.position,
        )
        group = np.searchsorted(edges[1:-1], FINE_EDGES[:-1], side="right")  # of each fine bin
        sums_int = [[0] * len(FIELDS) for _ in range(coarse.count.size)]
        nz = np.flatnonzero(fine.count)
        fine_ints = to_ints(fine.sums[nz]) if nz.size else []
        for j, f in enumerate(nz.tolist()):
            g = int(group[f])
            coarse.count[g] += fine.count[f]
            row = sums_int[g]
            for k in range(len(FIELDS)):
                row[k] += fine_ints[j][k]
        coarse.sums = from_ints(sums_int)
        return coarse

    def to_dict(self) -> dict:
        """A JSON-ready dict of the exact state, the encoding of
        :meth:`CalibrationStats.to_dict`; :meth:`from_dict` restores it."""
        return self._read().to_dict(ACCUMULATOR_FORMAT)

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationAccumulator:
        """Inverse of :meth:`to_dict`."""
        return cls._of(CalibrationState.from_dict(d, ACCUMULATOR_FORMAT))

    def to_bytes(self) -> bytes:
        """The exact state as versioned, checksummed bytes (little-endian, fixed layout; the
        non-empty bins only), for other processes and machines; :meth:`from_bytes` restores it.

        Examples
        --------
        >>> import numpy as np, logcal
        >>> acc = logcal.CalibrationAccumulator(n_bins=4).update(np.array([0.9]), np.array([1]))
        >>> back = logcal.CalibrationAccumulator.from_bytes(acc.to_bytes())
        >>> back.merge(acc).n
        2
        """
        return self._read().to_bytes(ACCUMULATOR_FORMAT)

    @classmethod
    def from_bytes(cls, data: bytes) -> CalibrationAccumulator:
        """Inverse of :meth:`to_bytes`; corrupt, truncated or foreign bytes (or those of a
        :class:`CalibrationStats`) raise ValueError naming what is wrong."""
        return cls._of(CalibrationState.from_bytes(data, ACCUMULATOR_FORMAT))

    def __repr__(self) -> str:
        return (
            f"CalibrationAccumulator(n={self.n}, n_bins={self._state.n_bins}, "
            f"binning={self._state.binning!r})"
        )
