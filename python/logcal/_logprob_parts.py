"""The calibration of logprob files part by part, each part read where it is computed.

A part is a file, or a byte range of whole lines of a large JSONL file (cut by the readers'
own splitting, :mod:`logcal.io._parallel`). :func:`read_part` reads one into what the report
needs of it -- its counts, the exact calibration state of its pairs and the counts of right
and wrong pairs per distinct confidence (for the AUROC) -- so that only these small parts of
the result travel between processes, never the pairs.

The pairs of a part take their place in the bootstrap's stream after those of the parts
before it, as one process reading the files in order would place them. Where those are not
counted yet (parts read at once by several processes), the process that read the part holds
its pairs until they are (:meth:`Read.place`); :func:`calibrate` drives any such engine in
file order, so the result is bit for bit the same whatever the parts and processes.

Token level (``logcal report`` without ``--labels``): each token's top-1 alternative's
probability against whether it is the token produced (:meth:`LogprobBatch.top1_pairs`).
Answer level: the probability of each generated sequence (the exponential of the sum of its
token log-probabilities) against its 0/1 label, as one :func:`logcal.calibration_stats` call
on all the answers (its bootstrap units sized for all of them).
"""

from __future__ import annotations

import glob
import math
import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any, NamedTuple

import numpy as np

from ._sequence import sequence_stats
from .calibration import CalibrationAccumulator, CalibrationStats, calibration_stats
from .calibration._binning import DEFAULT_EPS, auto_block

# Tokens per chunk while a part is read: about 100 MB of working memory.
READ_CHUNK = 1 << 20
# Parts read but not yet placed, per process, at most: the pairs a process holds while the
# parts before them are read elsewhere.
_HELD_PER_WORKER = 4


class Settings(NamedTuple):
    """How the parts are read and what their pairs are."""

    format: str = "auto"
    errors: str = "raise"
    answers: bool = False  # answer level (the report's --labels); else token level
    n_bins: int = 15
    binning: str | Sequence[float] = "uniform"
    eps: float = DEFAULT_EPS
    n_bootstrap: int = 0
    seed: int = 0
    ranks: bool = True  # count pairs per distinct confidence (the report's AUROC)

    def accumulator(self) -> CalibrationAccumulator:
        """An empty accumulator of these settings (checks them)."""
        return CalibrationAccumulator(
            n_bins=self.n_bins,
            binning=self.binning,
            eps=self.eps,
            n_bootstrap=self.n_bootstrap,
            seed=self.seed,
        )


class Part(NamedTuple):
    """A file (``stop`` None), or the bytes ``[start, stop)`` of one: whole lines, the first
    of them line ``first_line + 1``, read on in the format ``fmt`` of the file's first
    record, as one process reading the whole file goes on with it."""

    path: str
    file: int  # the file's index among the inputs
    start: int = 0
    stop: int | None = None
    first_line: int = 0
    fmt: str | None = None


# --- inputs -------------------------------------------------------------------------------------


def input_files(paths: Any, func: str) -> list[str]:
    """The files that ``paths`` names: a path, a glob (its matches, sorted) or a sequence of
    paths and globs; ``func`` begins the errors."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    for p in paths:
        name = os.fspath(p)
        if glob.has_magic(name):
            found = sorted(glob.glob(name))
            if not found:
                raise FileNotFoundError(f"{func}: no file matches {name!r}")
            files += found
        else:
            files.append(name)
    if not files:
        raise ValueError(f"{func}: paths is empty")
    return files


def split(files: list[str], settings: Settings, step: int | None) -> list[Part]:
    """The parts of ``files`` in order: a plain JSONL file longer than ``step`` bytes in byte
    ranges of about ``step`` (whole lines; each range at least ``step``), every other file
    whole (gzip, a JSON document: a stream that cannot be cut); ``step`` None: whole files."""
    from .io._parallel import _first_format, _ranges
    from .io._read import _is_gzip, _Reader

    parts: list[Part] = []
    for index, path in enumerate(files):
        whole = Part(path, index)
        if step is None or os.path.getsize(path) <= step:
            parts.append(whole)
            continue
        with open(path, "rb") as f:
            if _is_gzip(f):
                parts.append(whole)
                continue
            jsonl, fmt = _first_format(f, _Reader(settings.format, settings.errors, 5, None))
            if not jsonl:
                parts.append(whole)
                continue
            size = os.fstat(f.fileno()).st_size
            parts += [
                Part(path, index, start, stop, first, fmt)
                for start, stop, first in _ranges(f, size, step)
            ]
    return parts


def range_step(files: list[str], pieces: int, smallest: int, largest: int) -> int:
    """Bytes per range for about ``pieces`` ranges over all the files, within
    [``smallest``, ``largest``]."""
    total = sum(os.path.getsize(f) for f in files)
    return min(max(total // max(pieces, 1), smallest), largest)


# --- one part -----------------------------------------------------------------------------------


class RankCounts:
    """Right and wrong pairs counted per distinct confidence: exact, mergeable in any order,
    in memory bounded by the distinct confidences, not the pairs; the AUROC of all of them is
    bit for bit that of :func:`logcal.selective`."""

    def __init__(self) -> None:
        self.values = np.empty(0)
        self.right = np.empty(0, dtype=np.int64)
        self.total = np.empty(0, dtype=np.int64)

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        values, where = np.unique(confidence, return_inverse=True)
        right = np.bincount(where[np.asarray(correct, bool)], minlength=values.size)
        total = np.bincount(where, minlength=values.size)
        self._join(values, right.astype(np.int64), total.astype(np.int64))

    def merge(self, other: RankCounts) -> None:
        self._join(other.values, other.right, other.total)

    def _join(self, values: np.ndarray, right: np.ndarray, total: np.ndarray) -> None:
        both, where = np.unique(np.concatenate([self.values, values]), return_inverse=True)
        mine, theirs = where[: self.values.size], where[self.values.size :]
        sums = []
        for a, b in ((self.right, right), (self.total, total)):
            out = np.zeros(both.size, dtype=np.int64)
            out[mine] += a  # each side's values are distinct: no index repeats within a side
            out[theirs] += b
            sums.append(out)
        self.values, (self.right, self.total) = both, sums

    def auroc(self) -> float:
        """Probability that a right pair is more confident than a wrong one, ties half (the
        Mann-Whitney statistic, computed as :func:`logcal.selective` does: twice U as an
        exact integer, then one division)."""
        wrong = self.total - self.right
        n_right, n_wrong = int(self.right.sum()), int(wrong.sum())
        if n_right == 0 or n_wrong == 0:
            return math.nan
        below = np.cumsum(wrong) - wrong
        twice_u = sum(
            r * (2 * b + w)
            for r, b, w in zip(self.right.tolist(), below.tolist(), wrong.tolist())
            if r
        )
        return float(twice_u) / (2.0 * float(n_right) * float(n_wrong))


class Summary(NamedTuple):
    """What the report counts of a part (small: it travels)."""

    file: int
    ranged: bool  # a byte range: the file's reader checks are made over all its ranges
    n_records: int
    n_skipped: int
    first_error: str | None
    warnings: tuple  # a whole file's reader warnings, said again where the results are
    fmt: str | None
    n_sequences: int
    n_tokens: int
    skipped: int
    k: int
    n_pairs: int


class Placed(NamedTuple):
    """A part's pairs in the bootstrap's stream: the bytes of their state (a
    :class:`CalibrationAccumulator`'s, or at answer level a :class:`CalibrationStats`'; None
    without pairs) and their :class:`RankCounts` (None unless asked for)."""

    state: bytes | None
    ranks: RankCounts | None


class Read:
    """A part read: its :class:`Summary`, and its pairs, held until they are placed (or
    placed as they were read, where the place was known)."""

    def __init__(self, summary: Summary, pairs: tuple, placed: Placed | None, offset: int | None):
        self.summary = summary
        self._pairs = pairs
        self._placed = placed
        self._offset = offset

    def place(
        self, offset: int, settings: Settings, labels: np.ndarray | None = None, total: int = 0
    ) -> Placed:
        """The part's state with its pairs from position ``offset`` of the stream; at answer
        level ``labels`` are those of its answers and ``total`` the answers of all parts."""
        if self._placed is not None:
            if offset != self._offset:  # an engine that placed it elsewhere: a bug, not input
                raise RuntimeError(f"a part read at {self._offset} placed at {offset}")
            return self._placed
        confidence, correct = self._pairs[0], self._pairs[1] if labels is None else labels
        ranks = None
        if settings.ranks:
            ranks = RankCounts()
            ranks.add(confidence, correct)
        if confidence.size == 0:
            return Placed(None, ranks)
        if settings.answers:
            state = calibration_stats(
                confidence,
                correct,
                n_bins=settings.n_bins,
                binning=settings.binning,
                eps=settings.eps,
                n_bootstrap=settings.n_bootstrap,
                seed=settings.seed,
                # the units of one call on all the answers
                bootstrap_block=auto_block(total) if settings.n_bootstrap else None,
                bootstrap_offset=offset,
            ).to_bytes()
        else:
            state = settings.accumulator().update(confidence, correct, offset=offset).to_bytes()
        return Placed(state, ranks)


def read_part(part: Part, settings: Settings, offset: int | None = None) -> Read:
    """Read a part. At token level with ``offset`` given, its pairs are placed there as they
    are read (memory: one chunk); else they are held until :meth:`Read.place`."""
    streamed = offset is not None and not settings.answers
    acc = settings.accumulator() if streamed else None
    ranks = RankCounts() if streamed and settings.ranks else None
    held: list = []
    n_sequences = n_tokens = skipped = k = n_pairs = 0
    fmt = None
    batches, counts = _batches(part, settings)
    for batch in batches:
        n_sequences += batch.n_sequences
        n_tokens += batch.n_tokens
        skipped += batch.skipped
        k = max(k, batch.k)
        fmt = batch.format
        pairs = _answers(batch) if settings.answers else batch.top1_pairs()
        if pairs[0].size == 0:
            continue
        if streamed:
            acc.update(*pairs, offset=offset + n_pairs)
            if ranks is not None:
                ranks.add(*pairs)
        else:
            held.append(pairs)
        n_pairs += pairs[0].size
    n_records, n_skipped, first_error, caught, range_fmt = counts()
    summary = Summary(
        part.file,
        part.stop is not None,
        n_records,
        n_skipped,
        first_error,
        caught,
        range_fmt if part.stop is not None else fmt,
        n_sequences,
        n_tokens,
        skipped,
        k,
        n_pairs,
    )
    if streamed:
        placed = Placed(acc.to_bytes() if n_pairs else None, ranks)
        return Read(summary, (), placed, offset)
    pairs = (
        np.concatenate([p[0] for p in held] or [np.empty(0)]),
        np.concatenate([p[1] for p in held] or [np.empty(0, bool)]),
    )
    return Read(summary, pairs, None, None)


def _answers(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities of a batch's generated sequences (no labels yet: placeholders)."""
    if batch.n_sequences == 0:
        return np.empty(0), np.empty(0, bool)
    generated = np.flatnonzero(np.asarray(batch.choice) >= 0)
    sums = sequence_stats(batch.token_logprob, batch.offsets).sum
    confidence = np.exp(np.asarray(sums, dtype=np.float64)[generated])
    return confidence, np.zeros(confidence.size, bool)


def _batches(part: Part, settings: Settings) -> tuple[Iterator, Callable[[], tuple]]:
    """The batches of a part, and a function that says, once they are read, what the reader
    counted: (records, records skipped, the first error, warnings, the range's format)."""
    if part.stop is None:
        return _file_batches(part, settings)
    from .io._batch import unpack
    from .io._parallel import _read_task, _Unsplittable
    from .io._read import MAX_RECORD_BYTES

    explicit = settings.format != "auto"
    options = (explicit, settings.errors, 5, None, MAX_RECORD_BYTES)
    task = (part.path, part.start, part.stop, part.first_line, part.fmt, options, READ_CHUNK)
    try:
        fields, counts = _read_task(task)
    except _Unsplittable as exc:  # a stream of chunks may go on in the next range
        raise ValueError(
            f"{part.path}:{exc.args[0] + 1}: streaming chunks after other records; a file "
            "that mixes them is read whole, by one process (workers=1)"
        ) from None
    n_records, n_skipped, first_error, fmt = counts[:4]
    return map(unpack, fields), lambda: (n_records, n_skipped, first_error, (), fmt)


def _file_batches(part: Part, settings: Settings) -> tuple[Iterator, Callable[[], tuple]]:
    """A whole file read by :func:`logcal.io.read_logprobs`, chunk by chunk; its warnings
    caught, to be said where the results are gathered (another process, maybe)."""
    from .io import read_logprobs

    caught: list = []

    def batches() -> Iterator:
        chunks = read_logprobs(
            part.path, format=settings.format, errors=settings.errors, chunk_tokens=READ_CHUNK
        )
        while True:
            # around the reader only, not across the yield: the caller's warnings are its own
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                batch = next(chunks, None)
            caught.extend(str(w.message) for w in said)
            if batch is None:
                return
            yield batch

    return batches(), lambda: (0, 0, None, tuple(caught), None)


# --- all the parts ------------------------------------------------------------------------------


class Result(NamedTuple):
    """The merged parts: every part's summary in order, the merged state (None without any
    pair) and rank counts."""

    summaries: list
    state: CalibrationAccumulator | CalibrationStats | None
    ranks: RankCounts | None


def merged(placed: Sequence[Placed], settings: Settings) -> Placed:
    """The merge of placed parts (exact, any order)."""
    kind = CalibrationStats if settings.answers else CalibrationAccumulator
    states = [kind.from_bytes(p.state) for p in placed if p.state is not None]
    state = None
    if states:
        state = states[0]
        for s in states[1:]:
            state = state.merge(s)
    ranks = None
    if settings.ranks:
        ranks = RankCounts()
        for p in placed:
            ranks.merge(p.ranks)
    return Placed(None if state is None else state.to_bytes(), ranks)


def check_files(files: list[str], summaries: Sequence[Summary], settings: Settings) -> None:
    """The readers' end-of-file checks, in file order: a whole file's warnings said again; a
    file read in byte ranges checked over all of them, as one reader would (ValueError where
    no record could be read, a warning of the records skipped)."""
    from .io._read import _Reader

    by_file: dict = {}
    for s in summaries:
        by_file.setdefault(s.file, []).append(s)
    for index, parts in sorted(by_file.items()):
        for s in parts:
            for message in s.warnings:
                warnings.warn(message, stacklevel=3)
        if parts[0].ranged:
            reader = _Reader(settings.format, settings.errors, 5, None)
            reader.n_records = sum(s.n_records for s in parts)
            reader.n_skipped = sum(s.n_skipped for s in parts)
            reader.first_error = next((s.first_error for s in parts if s.first_error), None)
            reader.check(files[index], stacklevel=3)


def file_format(summaries: Sequence[Summary]) -> str | None:
    """The format of a file's parts, as its one reader would say it."""
    from .io._merge import merged_format

    return merged_format([s.fmt for s in summaries])


class InProcess:
    """The parts read one after the other by this process (each placed as it is read)."""

    def __init__(self, parts: list[Part], settings: Settings) -> None:
        self.parts, self.settings = parts, settings
        self.reads: dict = {}
        self.events: deque = deque()

    def read(self, i: int, offset: int | None) -> None:
        self.events.append(("read", i, offset))

    def place(self, i: int, offset: int, labels: Any, total: int) -> None:
        self.events.append(("place", i, (offset, labels, total)))

    def next(self) -> tuple:
        kind, i, args = self.events.popleft()
        try:
            if kind == "read":
                self.reads[i] = read_part(self.parts[i], self.settings, args)
                return "summary", i, self.reads[i].summary
            return "placed", i, self.reads.pop(i).place(args[0], self.settings, *args[1:])
        except Exception as exc:  # handed to calibrate, which orders errors
            return "error", i, exc

    def close(self) -> None:
        self.reads.clear()

    ahead = 1  # each part read once the one before it is placed: its place is known


def calibrate(
    files: list[str],
    parts: list[Part],
    settings: Settings,
    engine: Any,
    labels_for: Callable[[list], np.ndarray] | None = None,
) -> Result:
    """Read and merge all the parts with ``engine`` (reads and placements started with
    ``read(i, offset)`` and ``place(i, offset, labels, total)``, their results taken one at a
    time from ``next()``; at most ``engine.ahead`` parts read ahead of the first one not
    placed), each part placed after the pairs of the parts before it. At answer level
    ``labels_for(summaries)`` gives the labels of all the answers once every part is
    counted (their number is the sum of the summaries' ``n_pairs``).

    The first error in file order is raised, whatever order the engine met them in."""
    n = len(parts)
    summaries: list = [None] * n
    placed: list = [None] * n
    errors: dict = {}
    counted = 0  # parts 0 .. counted-1 are summarised
    offsets = [0]  # the pairs before each part counted so far
    started = placed_from = 0
    busy = 0
    try:
        while True:
            # Reads: in file order, a window of parts held ahead of the first one unplaced
            # (answers are small: held all); a part whose place is known is placed as read.
            while (
                started < n
                and not errors
                and (settings.answers or started - placed_from < engine.ahead)
            ):
                known = offsets[started] if started < len(offsets) else None
                engine.read(started, None if settings.answers else known)
                started += 1
                busy += 1
            if not busy:
                break
            kind, i, value = engine.next()
            busy -= 1
            if kind == "error":
                errors[i] = value
            elif kind == "summary":
                summaries[i] = value
                while counted < n and summaries[counted] is not None:
                    offsets.append(offsets[-1] + summaries[counted].n_pairs)
                    counted += 1
                    if not settings.answers and not errors:
                        engine.place(counted - 1, offsets[counted - 1], None, 0)
                        busy += 1
            else:
                placed[i] = value
                while placed_from < n and placed[placed_from] is not None:
                    placed_from += 1
            first_error = min(errors, default=None)
            if first_error is not None and first_error <= counted:
                raise errors[first_error]
        if errors:
            raise errors[min(errors)]
        check_files(files, summaries, settings)
        if settings.answers:
            total = offsets[-1]
            labels = labels_for(summaries)
            for i in range(n):
                engine.place(i, offsets[i], labels[offsets[i] : offsets[i + 1]], total)
            for _ in range(n):
                kind, i, value = engine.next()
                if kind == "error":
                    raise value
                placed[i] = value
    finally:
        engine.close()
    whole = merged(placed, settings)
    state = None
    if whole.state is not None:
        kind = CalibrationStats if settings.answers else CalibrationAccumulator
        state = kind.from_bytes(whole.state)
    return Result(summaries, state, whole.ranks)


# --- local processes ----------------------------------------------------------------------------


def _serve(conn: Any, parts: list[Part], settings: Settings) -> None:
    """A worker process: reads parts and holds their pairs until it is told where to place
    them; only summaries and placed states go back."""
    from ._native import set_num_threads

    set_num_threads(1)  # one process a CPU: the kernels' own threads would only compete
    reads: dict = {}
    while True:
        message = conn.recv()
        if message is None:
            return
        kind, i, args = message
        try:
            if kind == "read":
                reads[i] = read_part(parts[i], settings, args)
                reply = ("summary", i, reads[i].summary)
            else:
                reply = ("placed", i, reads.pop(i).place(args[0], settings, *args[1:]))
        except Exception as exc:  # the main process raises it, in file order
            reply = ("error", i, exc)
        try:
            conn.send(reply)
        except Exception:  # an error that does not pickle: its words do
            conn.send(("error", i, RuntimeError(f"{type(reply[2]).__name__}: {reply[2]}")))


class LocalProcesses:
    """The parts read by ``workers`` local processes. Each process has at most one request
    at a time, so none waits on a pipe the other end is not reading."""

    def __init__(self, parts: list[Part], settings: Settings, workers: int) -> None:
        # fork where there is one: a process starts in milliseconds and needs no importable
        # __main__ (a script calling logcal.cli.main); the kernels' thread pool is made anew
        # in a forked child (pthread_atfork).
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.ahead = _HELD_PER_WORKER * workers
        self.conns: list = []
        self.procs: list = []
        for _ in range(workers):
            mine, theirs = context.Pipe()
            proc = context.Process(target=_serve, args=(theirs, parts, settings), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)
        self.holder: dict = {}  # part -> the worker holding its pairs
        self.queued: list = [deque() for _ in range(workers)]  # placements, per worker
        self.reads: deque = deque()  # reads not started, any worker
        self.idle = set(range(workers))

    def read(self, i: int, offset: int | None) -> None:
        self.reads.append((i, offset))
        self._send()

    def place(self, i: int, offset: int, labels: Any, total: int) -> None:
        self.queued[self.holder[i]].append(("place", i, (offset, labels, total)))
        self._send()

    def _send(self) -> None:
        for w in sorted(self.idle):
            if self.queued[w]:  # placements first: they free the pairs held
                message = self.queued[w].popleft()
            elif self.reads:
                i, offset = self.reads.popleft()
                self.holder[i] = w
                message = ("read", i, offset)
            else:
                continue
            self.conns[w].send(message)
            self.idle.discard(w)

    def next(self) -> tuple:
        while True:
            for conn in wait(self.conns):
                w = self.conns.index(conn)
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    raise RuntimeError(
                        f"a worker process of logcal report ended unexpectedly (exit code "
                        f"{self.procs[w].exitcode})"
                    ) from None
                self.idle.add(w)
                self._send()
                return reply

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():  # still reading a part after an error elsewhere
                proc.terminate()
                proc.join()
        for conn in self.conns:
            conn.close()
