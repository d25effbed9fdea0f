"""Calibration and token statistics of Dask arrays, and calibration over many logprob files.

:func:`token_stats` runs :func:`logcal.token_stats` on each block of rows;
:func:`read_calibration` builds one state per file or byte range of a large JSONL file. For
calibration, each block becomes a :class:`~logcal.CalibrationStats` on its worker, placed at its
position in the whole array (so a bootstrap's replicates are those of one call on all the
data); only its bytes (:meth:`~logcal.CalibrationStats.to_bytes`, a few hundred bytes for 15
bins) travel, merged ``split_every`` at a time. Integer sums merge exactly in any order, so the
result is bit for bit that of :func:`logcal.calibration_stats` on the concatenated data,
whatever the chunks or workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from ._logprob_parts import (
    Placed,
    Read,
    Settings,
    Summary,
    check_files,
    input_files,
    merged,
    read_part,
    split,
)
from ._token import TokenStats
from ._token import token_stats as _token_stats
from .calibration import CalibrationAccumulator, CalibrationStats
from .calibration import calibration_stats as _calibration_stats
from .calibration._binning import DEFAULT_EPS, auto_block

__all__ = ["calibration_stats", "read_calibration", "token_stats"]

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


def token_stats(
    logits: Any,
    targets: Any = None,
    *,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    candidate_ids: Any = None,
) -> TokenStats:
    """:func:`logcal.token_stats` of a Dask array, block by block of rows (lazily).

    Each block of rows is one :func:`logcal.token_stats` call on its worker; a position's
    statistics depend on its row only, so every field is bit for bit that of one call on the
    whole array, whatever the chunks.

    Parameters
    ----------
    logits : dask.array.Array or array, shape ``[..., V]``
        Chunked along the leading axes as you like; the vocabulary axis is made one chunk
        (a rechunk that moves data when it is split: chunk by rows to avoid it).
    targets : dask.array.Array or array of shape ``[...]``, optional
        Rechunked to the logits' rows.
    top_k, temperature, ignore_index
        As for :func:`logcal.token_stats`.
    candidate_ids : array of shape ``[C]`` or ``[..., C]``, optional
        ``[C]``: sent whole to every block; ``[..., C]``: rechunked to the logits' rows.

    Returns
    -------
    TokenStats
        A record of **Dask arrays** (not computed: the statistics are as long as the rows,
        and often feed further Dask work, e.g. :func:`calibration_stats`), chunked like the
        logits' rows. Compute the fields together, ``dask.compute(*stats.values())``, so that
        each block's call runs once. Bad arguments (``top_k``, ``temperature``,
        ``candidate_ids``, dtypes) raise here; bad values (a target out of range) when computed.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, logcal.dask
    >>> logits = da.from_array(np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])), chunks=1)
    >>> stats = logcal.dask.token_stats(logits, np.array([0, 1]))
    >>> np.exp(dask.compute(stats.target_logprob)[0]).round(3)
    array([0.5, 0.1])
    """
    x = da.asarray(logits)
    if x.ndim == 0:  # the one-shot call's error
        _token_stats(np.zeros(()))
    x = x.rechunk({x.ndim - 1: -1})
    lead = x.chunks[:-1]
    if any(np.isnan(c) for chunks in lead for c in chunks):
        raise ValueError(
            "logcal.dask.token_stats: logits has blocks of unknown size "
            "(call compute_chunk_sizes() first)"
        )
    rows = [x]
    if targets is not None:
        t = da.asarray(targets)
        if t.shape != x.shape[:-1]:
            raise ValueError(
                f"targets must have the logits' leading shape {x.shape[:-1]}, got {t.shape}"
            )
        rows.append(t.rechunk(lead))
    per_row = candidate_ids is not None and np.ndim(candidate_ids) > 1
    if per_row:
        c = da.asarray(candidate_ids)
        rows.append(c.rechunk((*lead, -1)) if c.ndim == x.ndim else c)
    settings = dict(top_k=top_k, temperature=temperature, ignore_index=ignore_index)
    if candidate_ids is not None and not per_row:
        settings["candidate_ids"] = np.asarray(candidate_ids)
    # The arguments are checked, and the fields' dtypes and trailing shapes found, on one row.
    meta = _token_stats(
        np.zeros((1, x.shape[-1]), x.dtype),
        None if targets is None else np.zeros(1, rows[1].dtype),
        **settings,
        **({"candidate_ids": np.zeros((1, rows[-1].shape[-1]), rows[-1].dtype)} if per_row else {}),
    )
    parts = [a.to_delayed().reshape(x.numblocks[:-1]) for a in rows]
    fields = {name: np.empty(x.numblocks[:-1], object) for name in meta}
    for index in np.ndindex(*x.numblocks[:-1]):
        shape = tuple(chunks[i] for chunks, i in zip(lead, index))
        block = dask.delayed(_block_token_stats)(
            *(p[index] for p in parts),
            shape=shape,
            has_targets=targets is not None,
            settings=settings,
        )
        for name, value in meta.items():
            fields[name][index] = da.from_delayed(
                block[name], shape + value.shape[1:], dtype=value.dtype
            )
    return TokenStats(**{name: _assembled(blocks) for name, blocks in fields.items()})


def _block_token_stats(
    logits: np.ndarray, *rest: np.ndarray, shape: tuple, has_targets: bool, settings: dict
) -> dict:
    """The fields of one block's token statistics (an empty block: empty fields, as the
    one-shot call refuses empty logits)."""
    if 0 in shape:
        meta = _block_token_stats(
            np.zeros((1, logits.shape[-1]), logits.dtype),
            *(np.zeros((1, *r.shape[len(shape) :]), r.dtype) for r in rest),
            shape=(1,),
            has_targets=has_targets,
            settings=settings,
        )
        return {k: np.empty(shape + v.shape[1:], v.dtype) for k, v in meta.items()}
    targets = rest[0] if has_targets else None
    candidates = {"candidate_ids": rest[-1]} if len(rest) > has_targets else {}
    return dict(_token_stats(logits, targets, **settings, **candidates))


def _assembled(blocks: np.ndarray, index: tuple = ()) -> Any:
    """One Dask array of an array of blocks (concatenated axis by axis)."""
    if len(index) == blocks.ndim:
        return blocks[index]
    return da.concatenate(
        [_assembled(blocks, (*index, i)) for i in range(blocks.shape[len(index)])],
        axis=len(index),
    )


def read_calibration(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    format: str = "auto",
    errors: str = "raise",
    n_bins: int = 15,
    binning: str | Sequence[float] = "uniform",
    eps: float = DEFAULT_EPS,
    n_bootstrap: int = 0,
    seed: int = 0,
    blocksize: int | None = 64 << 20,
    split_every: int = 8,
    compute: bool = True,
) -> Any:
    """Token-level calibration of many logprob files (JSON or JSONL, .gz too), one task per
    file or byte range of a large JSONL file, merged up a tree: the numbers of
    ``logcal report`` on all of them, concatenated.

    As ``logcal report`` without ``--labels``: each token's confidence is the probability of
    its top-1 alternative, correct when that alternative is the token produced; tokens without
    alternatives are left out. Each part's pairs are placed after those of the parts before
    it in the bootstrap's stream, so the result is bit for bit that of one
    :class:`~logcal.CalibrationAccumulator` fed the files in order, whatever the parts and
    workers.

    Parameters
    ----------
    paths : str, path or sequence of them
        Files; a string with ``*``, ``?`` or ``[`` is a glob (its matches in sorted order).
    format, errors
        As for :func:`logcal.io.read_logprobs`.
    n_bins, binning, eps, n_bootstrap, seed
        As for :class:`~logcal.CalibrationAccumulator`.
    blocksize : int or None
        A plain JSONL file longer than this many bytes is read in byte ranges of about as many
        (whole lines: the readers' own splitting), one task each; gzip files and JSON
        documents are read whole. None: one task per file.
    split_every : int
        How many states each merge task combines, at least 2.
    compute : bool
        True: compute now and return the statistics; False: a ``dask.delayed`` of them.

    Returns
    -------
    CalibrationStats or dask.delayed.Delayed

    Notes
    -----
    A part's pairs (9 bytes a token) stay in its worker's memory until the parts before it
    are counted, which places them in the bootstrap's stream; only counts and states (a few
    hundred bytes each) move between processes. The files are opened here to be cut (a
    look at the first record, the line ends counted in a map of the file) and read by the
    workers: they must see them at the same paths. The readers' warnings (records skipped)
    are said by the task that computes the result, so on a cluster they reach the workers'
    logs.

    Examples
    --------
    >>> import logcal.dask  # doctest: +SKIP
    >>> stats = logcal.dask.read_calibration("logs/*.jsonl", n_bootstrap=200)  # doctest: +SKIP
    >>> stats.ece(), stats.interval("ece")  # doctest: +SKIP
    """
    files = _files(paths)
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    if blocksize is not None and (
        isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1
    ):
        raise ValueError(f"blocksize must be a positive integer or None, got {blocksize!r}")
    settings = Settings(
        format=format,
        errors=errors,
        n_bins=n_bins,
        binning=binning,
        eps=eps,
        n_bootstrap=n_bootstrap,
        seed=seed,
        ranks=False,
    )
    settings.accumulator()  # checks the settings before any file is read
    offset: Any = 0
    placed, summaries = [], []
    for part in split(files, settings, blocksize):
        read = dask.delayed(read_part, pure=True)(part, settings)
        summary = dask.delayed(_summary, pure=True)(read)
        placed.append(dask.delayed(_placed, pure=True)(read, offset, settings))
        summaries.append(summary)
        offset = dask.delayed(_after, pure=True)(offset, summary)
    while len(placed) > 1:
        placed = [
            dask.delayed(merged)(placed[i : i + split_every], settings)
            for i in range(0, len(placed), split_every)
        ]
    result = dask.delayed(_file_statistics)(placed[0], summaries, files, settings)
    return result.compute() if compute else result


def _files(paths: Any) -> list[str]:
    """The files that ``paths`` names (a glob expanded, in sorted order)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return input_files(paths, "logcal.dask.read_calibration")


def _summary(read: Read) -> Summary:
    return read.summary


def _placed(read: Read, offset: int, settings: Settings) -> Placed:
    return read.place(offset, settings)


def _after(offset: int, summary: Summary) -> int:
    """Where the next part's pairs begin."""
    return offset + summary.n_pairs


def _file_statistics(
    placed: Placed, summaries: list, files: list, settings: Settings
) -> CalibrationStats:
    """The statistics of the merged parts, after the readers' checks of each file (refused
    when no file had a top-1 alternative)."""
    check_files(files, summaries, settings)
    if placed.state is None:
        raise ValueError(
            f"logcal.dask.read_calibration: no tokens with top_logprobs in {len(files)} file(s) "
            f"({files[0]}{', ...' if len(files) > 1 else ''})"
        )
    return CalibrationAccumulator.from_bytes(placed.state).compute()


class _ClientEngine:
    """The parts of ``logcal report --scheduler`` read on a Dask cluster, for
    :func:`logcal._logprob_parts.calibrate`: each part read by a task whose result (its held
    pairs) stays on its worker; its summary, then its placed state, come back."""

    def __init__(self, client: Any, parts: list, settings: Settings, workers: int) -> None:
        from dask.distributed import as_completed

        self.client, self.parts, self.settings = client, parts, settings
        self.ahead = 4 * workers
        self.reads: dict = {}
        self.what: dict = {}  # future key -> (kind, part)
        self.done = as_completed(loop=client.loop)

    def _submit(self, kind: str, i: int, func: Any, *args: Any, **kw: Any) -> Any:
        future = self.client.submit(func, *args, pure=False, **kw)
        self.what[future.key] = (kind, i)
        self.done.add(future)
        return future

    def read(self, i: int, offset: int | None) -> None:
        read = self.client.submit(read_part, self.parts[i], self.settings, offset, pure=False)
        self.reads[i] = read
        self._submit("summary", i, _summary, read)

    def place(self, i: int, offset: int, labels: Any, total: int) -> None:
        # before the reads still waiting: a placement frees the pairs its worker holds
        self._submit(
            "placed", i, _place_on_worker, self.reads.pop(i), offset, self.settings, labels,
            total, priority=1,
        )  # fmt: skip

    def next(self) -> tuple:
        future = next(self.done)
        kind, i = self.what.pop(future.key)
        try:
            return kind, i, future.result()
        except Exception as exc:  # calibrate raises the first in file order
            return "error", i, exc

    def close(self) -> None:
        self.client.cancel([*self.reads.values(), *self.done.futures])
        self.reads.clear()


def _place_on_worker(
    read: Read, offset: int, settings: Settings, labels: Any, total: int
) -> Placed:
    return read.place(offset, settings, labels, total)
