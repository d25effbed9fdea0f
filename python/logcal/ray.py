"""Calibration statistics of Ray datasets: one exact state per block, merged by Ray.

:class:`CalibrationAggregate` is an aggregation for :meth:`ray.data.Dataset.aggregate` (and
``groupby(...).aggregate``): each block becomes a :class:`~logcal.CalibrationAccumulator` on its
worker, and only its bytes (:meth:`~logcal.CalibrationAccumulator.to_bytes`, a few hundred bytes
for 15 bins) travel between tasks to be merged. Integer sums merge exactly in any order, so the
result is bit for bit that of one accumulator over all the rows, whatever the blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.data.aggregate import AggregateFnV2
from ray.data.block import BlockAccessor

from .calibration import CalibrationAccumulator, CalibrationStats
from .calibration._binning import DEFAULT_EPS

__all__ = ["CalibrationAggregate"]

_FUNC = "logcal.ray.CalibrationAggregate"


class CalibrationAggregate(AggregateFnV2):
    """Calibration statistics of a confidence column against a correctness column, as an
    aggregation of :meth:`ray.data.Dataset.aggregate`.

    The accumulator Ray moves and merges is the bytes of a
    :class:`~logcal.CalibrationAccumulator` (its exact integer sums), never the rows.

    There is no bootstrap here: a replicate's weights belong to a sample's position in the
    whole stream, and a Ray block does not know where it starts. For bootstrap intervals use
    :func:`logcal.dask.calibration_stats` or accumulators placed with ``offset=``.

    For ``Dataset.aggregate``, not ``groupby(...).aggregate``: Ray (2.60) prunes a grouped
    dataset to its keys and one column per aggregation, which would drop ``correct``; filter
    the dataset per group instead.

    Where the rows travel is Ray's choice: its aggregation is a stage of its own, not fused
    with the ``map_batches`` before it, so the blocks go through the object store to the
    aggregating task. Ray 2.60's default shuffle (``SHUFFLE_V2``) then joins the blocks of a
    node, up to ``DataContext.shuffle_input_batch_bytes`` (1 GiB), before one
    :meth:`aggregate_block`; ``DataContext.get_current().shuffle_strategy =
    ShuffleStrategy.SORT_SHUFFLE_PULL_BASED`` aggregates each block in its own task. The
    result is the same bits either way; only states are merged.

    Parameters
    ----------
    confidence, correct : str
        The columns of confidences in [0, 1] and of correctness (bool or 0/1).
    weights : str, optional
        A column of sample weights.
    n_bins, binning, eps
        As for :class:`~logcal.CalibrationAccumulator`.
    name : str
        The key of the result in the dict that ``aggregate`` returns.

    Returns
    -------
    CalibrationStats
        Under ``name`` in ``Dataset.aggregate``'s dict (a bad value raises ValueError there,
        naming the block's size and the value's index in the block).

    Examples
    --------
    >>> import numpy as np, ray, logcal.ray  # doctest: +SKIP
    >>> ds = ray.data.from_items(
    ...     [{"conf": c, "ok": y} for c, y in [(0.9, 1), (0.8, 1), (0.3, 0), (0.6, 0)]]
    ... )  # doctest: +SKIP
    >>> ds.aggregate(logcal.ray.CalibrationAggregate("conf", "ok", n_bins=5))[
    ...     "calibration"
    ... ].ece()  # doctest: +SKIP
    0.3
    """

    def __init__(
        self,
        confidence: str,
        correct: str,
        *,
        weights: str | None = None,
        n_bins: int = 15,
        binning: str | Sequence[float] = "uniform",
        eps: float = DEFAULT_EPS,
        name: str = "calibration",
    ) -> None:
        for what, column in (("confidence", confidence), ("correct", correct)):
            if not isinstance(column, str):
                raise TypeError(f"{what} must be a column name (str), got {column!r}")
        if weights is not None and not isinstance(weights, str):
            raise TypeError(f"weights must be a column name (str) or None, got {weights!r}")
        self._columns = [c for c in (confidence, correct, weights) if c is not None]
        self._settings = dict(n_bins=n_bins, binning=binning, eps=eps)
        zero = CalibrationAccumulator(**self._settings).to_bytes()  # checks the settings
        # No target column (``on``): this reads two or three, and Ray prunes a dataset to the
        # one column an aggregation names. Not ignore_nulls: a null confidence or label is bad
        # input, refused by the update.
        super().__init__(name, lambda: zero, on=None, ignore_nulls=False)

    def aggregate_block(self, block: Any) -> bytes:
        """The bytes of one block's accumulator."""
        cols = BlockAccessor.for_block(block).to_numpy(self._columns)
        acc = CalibrationAccumulator(**self._settings)
        weights = cols[self._columns[2]] if len(self._columns) == 3 else None
        try:
            acc.update(cols[self._columns[0]], cols[self._columns[1]], weights=weights)
        except ValueError as exc:  # its indices are the block's, which Ray chose: say so
            raise ValueError(
                f"{_FUNC}: a block of {len(cols[self._columns[0]])} rows: {exc}"
            ) from None
        return acc.to_bytes()

    def combine(self, current_accumulator: bytes, new: bytes) -> bytes:
        """The bytes of the merge of two accumulators' bytes."""
        merged = CalibrationAccumulator.from_bytes(current_accumulator)
        return merged.merge(CalibrationAccumulator.from_bytes(new)).to_bytes()

    def finalize(self, accumulator: bytes) -> CalibrationStats:
        """The statistics of the merged accumulator."""
        merged = CalibrationAccumulator.from_bytes(accumulator)
        # Each block's rows were placed at position 0 (a block does not know where it starts),
        # so the merge's position is that of the longest block, which depends on how Ray cut
        # and gathered the rows. Without a bootstrap a position only marks the end of the
        # stream: that of one accumulator fed every row is the number of rows.
        merged._state.position = merged.n
        return merged.compute()
