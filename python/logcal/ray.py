"""Calibration statistics of Ray datasets: one exact state per block, merged.

:func:`calibration_stats` turns each block into the bytes of a
:class:`~logcal.CalibrationAccumulator` (:meth:`~logcal.CalibrationAccumulator.to_bytes`, a few
hundred bytes for 15 bins) in a ``map_batches`` step, which Ray fuses with the map steps before
it, so only the states leave the task that made the rows; the driver merges them.
:class:`CalibrationAggregate` does the same as an aggregation for
:meth:`ray.data.Dataset.aggregate`, for datasets already materialised (Ray does not fuse an
aggregation with the maps before it: their blocks travel to it). Integer sums merge exactly in
any order, so the result is bit for bit that of one accumulator over all the rows, whatever
the blocks.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from ray.data.aggregate import AggregateFnV2
from ray.data.block import BlockAccessor

from .calibration import CalibrationAccumulator, CalibrationStats
from .calibration._binning import DEFAULT_EPS

__all__ = ["CalibrationAggregate", "calibration_stats"]

_FUNC = "logcal.ray.calibration_stats"
_AGGREGATE = "logcal.ray.CalibrationAggregate"
_STATE = "logcal_state"  # the column of the states' bytes, one row per block
_REFUSED = "logcal_refused"  # and of the error that refused a block


def calibration_stats(
    ds: Any,
    confidence: str,
    correct: str,
    *,
    weights: str | None = None,
    position: str | None = None,
    n_bins: int = 15,
    binning: str | Sequence[float] = "uniform",
    eps: float = DEFAULT_EPS,
    n_bootstrap: int = 0,
    seed: int = 0,
    bootstrap_block: int | None = None,
) -> CalibrationStats:
    """Calibration statistics of a confidence column against a correctness column of a Ray
    dataset, one exact state per block.

    A ``map_batches`` step makes each block's :class:`~logcal.CalibrationAccumulator` in the
    task that holds the block (Ray fuses it with the ``map_batches`` steps before it, e.g. the
    one that scores or generates the rows), and returns one row: the state's bytes. Only
    those move; the driver merges them as they come. The result is bit for bit that of one
    :class:`~logcal.CalibrationAccumulator` over all the rows, whatever the blocks.

    Parameters
    ----------
    ds : ray.data.Dataset
    confidence, correct : str
        The columns of confidences in [0, 1] and of correctness (bool or 0/1).
    weights : str, optional
        A column of sample weights.
    position : str, optional
        A column of integers: each row's position in the stream, for the bootstrap (a
        replicate's weight of a sample belongs to its position, and a Ray block does not know
        where it starts), e.g. the ``id`` of ``ray.data.range`` or a row index kept with the
        data. Needed with ``n_bootstrap > 0``, refused without. Positions are those of
        :meth:`~logcal.CalibrationAccumulator.update`'s ``offset=``: one accumulator fed the
        rows in position order gives the same bits, and a position given twice is refused. A
        block's rows are added one run of consecutive positions at a time (one run for a
        block in order; a shuffled block is sorted first and costs a call per run).
    n_bins, binning, eps, n_bootstrap, seed, bootstrap_block
        As for :class:`~logcal.CalibrationAccumulator`.

    Returns
    -------
    CalibrationStats
        A bad value raises ValueError naming the block and the value's index in it (with
        ``position``, its index among the rows at the positions named).

    Notes
    -----
    The states are merged by the driver: an aggregation (``Dataset.aggregate``) of the
    column of states gives the same bits, but costs a shuffle stage of its own (seconds).
    Have the ``map_batches`` step that makes the rows return Arrow (a ``pyarrow.Table``):
    Ray 2.60 infers the Arrow type of a returned numpy column value by value, which costs
    more than the statistics.

    Examples
    --------
    >>> import ray, logcal.ray  # doctest: +SKIP
    >>> ds = ray.data.from_items(
    ...     [{"conf": c, "ok": y} for c, y in [(0.9, 1), (0.8, 1), (0.3, 0), (0.6, 0)]]
    ... )  # doctest: +SKIP
    >>> logcal.ray.calibration_stats(ds, "conf", "ok", n_bins=5).ece()  # doctest: +SKIP
    0.3
    """
    settings = dict(
        n_bins=n_bins,
        binning=binning,
        eps=eps,
        n_bootstrap=n_bootstrap,
        seed=seed,
        bootstrap_block=bootstrap_block,
    )
    zero = CalibrationAccumulator(**settings)  # checks the settings here, not in a task
    return _merged_states(
        _block_states(
            ds,
            confidence,
            correct,
            weights=weights,
            position=position,
            **settings,
        ),
        zero,
        placed=position is not None,
    )


def _block_states(
    ds: Any,
    confidence: str,
    correct: str,
    *,
    weights: str | None,
    position: str | None,
    **settings: Any,
) -> Any:
    """The dataset of one row per block: the bytes of its accumulator (lazy)."""
    columns = _columns(confidence, correct, weights)
    if position is not None and not isinstance(position, str):
        raise TypeError(f"position must be a column name (str) or None, got {position!r}")
    if settings["n_bootstrap"] and position is None:
        raise ValueError(
            f"{_FUNC}: n_bootstrap > 0 needs position= (a column of each row's position in "
            "the stream: a replicate's weights belong to positions, and a Ray block does not "
            "know where it starts)"
        )
    if position is not None and not settings["n_bootstrap"]:
        raise ValueError(
            f"{_FUNC}: position= places rows for the bootstrap; pass n_bootstrap > 0 or leave "
            "it out"
        )
    read = columns if position is None else [*columns, position]
    return ds.select_columns(read).map_batches(
        partial(_block_state, columns=columns, position=position, settings=settings),
        batch_size=None,  # the whole block: one state per block
        batch_format="numpy",
        zero_copy_batch=True,
    )


def _block_state(batch: dict, *, columns: list, position: str | None, settings: dict) -> dict:
    """One block's accumulator, as a one-row batch of its bytes; or the error that refused
    the block, pickled, for the driver to raise as it is (Ray would wrap it)."""
    conf, correct = batch[columns[0]], batch[columns[1]]
    weights = batch[columns[2]] if len(columns) == 3 else None
    acc = CalibrationAccumulator(**settings)
    try:
        if position is None:
            try:
                acc.update(conf, correct, weights=weights)
            except ValueError as exc:  # its indices are the block's, which Ray chose: say so
                raise ValueError(f"{_FUNC}: a block of {len(conf)} rows: {exc}") from None
        else:
            _update_at_positions(acc, conf, correct, weights, batch[position], position)
    except (TypeError, ValueError) as exc:
        state, refused = b"", pickle.dumps(exc)
    else:
        state, refused = acc.to_bytes(), b""
    return {_STATE: np.array([state], dtype=object), _REFUSED: np.array([refused], dtype=object)}


def _update_at_positions(
    acc: CalibrationAccumulator,
    conf: np.ndarray,
    correct: np.ndarray,
    weights: np.ndarray | None,
    positions: np.ndarray,
    name: str,
) -> None:
    """Adds a block's rows at their positions, one update per run of consecutive ones."""
    if positions.dtype.kind not in "iu":
        raise TypeError(
            f"{_FUNC}: the position column {name!r} must hold integers, got dtype {positions.dtype}"
        )
    n = len(conf)
    p = positions.astype(np.int64, copy=False)  # beyond 2**63 reads negative: refused below
    if np.any(p < 0):
        raise ValueError(
            f"{_FUNC}: the position column {name!r} holds {int(p[np.argmax(p < 0)])}, "
            "positions must be >= 0"
        )
    steps = np.diff(p)
    if np.any(steps != 1):  # not one run in order: sort the rows by position, then split
        order = np.argsort(p, kind="stable")
        p, conf, correct = p[order], conf[order], correct[order]
        weights = None if weights is None else weights[order]
        steps = np.diff(p)
    bounds = [0, *(np.flatnonzero(steps != 1) + 1).tolist(), n]
    for a, b in zip(bounds[:-1], bounds[1:]):
        if a == b:  # an empty block
            continue
        w = None if weights is None else weights[a:b]
        try:
            acc.update(conf[a:b], correct[a:b], weights=w, offset=int(p[a]))
        except ValueError as exc:
            raise ValueError(
                f"{_FUNC}: a block of {n} rows, the rows at positions [{p[a]}, {p[b - 1] + 1}): "
                f"{exc}"
            ) from None


def _merged_states(
    states: Any, merged: CalibrationAccumulator, *, placed: bool
) -> CalibrationStats:
    """The statistics of the states' bytes of a dataset merged into ``merged``, read as they
    come."""
    for batch in states.iter_batches(batch_size=None, batch_format="numpy"):
        for data, refused in zip(batch[_STATE], batch[_REFUSED]):
            if refused:
                raise pickle.loads(refused) from None
            try:
                merged.merge(CalibrationAccumulator.from_bytes(data))
            except ValueError as exc:  # two blocks at one position of the bootstrap
                raise ValueError(f"{_FUNC}: {exc}") from None
    if not placed:
        _as_one_stream(merged)
    return merged.compute()


def _as_one_stream(merged: CalibrationAccumulator) -> None:
    """Sets the position of a merge of blocks each placed at position 0 (a block does not know
    where it starts) to that of one accumulator fed every row: the number of rows. The merge's
    own position would be that of the longest block, which depends on how Ray cut the rows;
    without a bootstrap a position only marks the end of the stream."""
    merged._state.position = merged.n


def _columns(confidence: Any, correct: Any, weights: Any) -> list:
    """The column names read, checked."""
    for what, column in (("confidence", confidence), ("correct", correct)):
        if not isinstance(column, str):
            raise TypeError(f"{what} must be a column name (str), got {column!r}")
    if weights is not None and not isinstance(weights, str):
        raise TypeError(f"weights must be a column name (str) or None, got {weights!r}")
    return [c for c in (confidence, correct, weights) if c is not None]


class CalibrationAggregate(AggregateFnV2):
    """Calibration statistics of a confidence column against a correctness column, as an
    aggregation of :meth:`ray.data.Dataset.aggregate`.

    The accumulator Ray moves and merges is the bytes of a
    :class:`~logcal.CalibrationAccumulator` (its exact integer sums), never the rows.

    There is no bootstrap here: a replicate's weights belong to a sample's position in the
    whole stream, and a Ray block does not know where it starts. For bootstrap intervals use
    :func:`calibration_stats` with a position column.

    For ``Dataset.aggregate``, not ``groupby(...).aggregate``: Ray (2.60) prunes a grouped
    dataset to its keys and one column per aggregation, which would drop ``correct``; filter
    the dataset per group instead.

    Where the rows travel is Ray's choice: its aggregation is a stage of its own, not fused
    with the ``map_batches`` before it, so the blocks go through the object store to the
    aggregating task (:func:`calibration_stats` makes the states where the rows are made, and
    moves only them: use it for rows that a pipeline computes). Ray 2.60's default shuffle
    (``SHUFFLE_V2``) then joins the blocks of a node, up to
    ``DataContext.shuffle_input_batch_bytes`` (1 GiB), before one :meth:`aggregate_block`;
    ``DataContext.get_current().shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED``
    aggregates each block in its own task. The result is the same bits either way; only
    states are merged.

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
        self._columns = _columns(confidence, correct, weights)
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
                f"{_AGGREGATE}: a block of {len(cols[self._columns[0]])} rows: {exc}"
            ) from None
        return acc.to_bytes()

    def combine(self, current_accumulator: bytes, new: bytes) -> bytes:
        """The bytes of the merge of two accumulators' bytes."""
        merged = CalibrationAccumulator.from_bytes(current_accumulator)
        return merged.merge(CalibrationAccumulator.from_bytes(new)).to_bytes()

    def finalize(self, accumulator: bytes) -> CalibrationStats:
        """The statistics of the merged accumulator."""
        merged = CalibrationAccumulator.from_bytes(accumulator)
        _as_one_stream(merged)
        return merged.compute()
