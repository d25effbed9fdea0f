"""One JSONL file read by several processes: byte ranges that end at line ends.

The main process cuts the file into ranges of whole lines, counting their lines as it goes
(so each range knows the number of its first line, for ``record`` and for error messages),
and hands them to a pool of worker processes; their batches come back in file order, a few
ranges ahead at most, so memory is bounded by the ranges in flight and not by the file.
Each worker starts with the format of the file's first record, as one process would have
gone on with it: the result is the same as one process's. Streaming chunks are joined across
lines (``_chunks``), which a range cannot do alone: a file that begins with them is read by one
process, and where a range meets one, this process reads on from that range's start.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from ._batch import Builder, LogprobBatch, unpack
from ._merge import concat_packed, merged_format
from ._read import (
    READ_BUFFER,
    _cut_short,
    _first_line,
    _gc_paused,
    _is_gzip,
    _lines,
    _loads,
    _Progress,
    _Reader,
    _stream,
)

_MIN_RANGE = 1 << 20
_MAX_RANGE = 64 << 20
_COUNT_BLOCK = 8 << 20


def _ranges(f: Any, size: int, step: int) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, first line index)`` of ranges of about ``step`` bytes of whole lines.

    The lines are counted in the mapped file by numpy: no copy of the text, a few hundredths
    of a second per 100 MB of this process's time, which the workers would otherwise share.
    A range ends after the first line end found in the map past ``step`` bytes: a line is
    never read whole here, however long."""
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        text = np.frombuffer(mapped, dtype=np.uint8)
        try:
            start = line = 0
            while start < size:
                end = mapped.find(b"\n", min(start + step, size))
                stop = size if end < 0 else end + 1
                yield start, stop, line
                for block in range(start, stop, _COUNT_BLOCK):
                    end = min(block + _COUNT_BLOCK, stop)
                    line += int(np.count_nonzero(text[block:end] == 10))
                start = stop
        finally:
            del text  # the map cannot close while an array views it (also when closed early)


class _RangeLines:
    """The lines of ``[start, stop)`` of a binary file (a range ends at a line end)."""

    def __init__(self, f: Any, start: int, stop: int) -> None:
        f.seek(start)
        self.f, self.left = f, stop - start

    def readline(self, size: int) -> bytes:
        if self.left <= 0:
            return b""
        line = self.f.readline(size)
        self.left -= len(line)
        return line


class _Unsplittable(Exception):
    """A range holds a streaming chunk, whose stream may go on in the next range."""


class _RangeReader(_Reader):
    """A worker's reader: its batches are packed, to be sent back."""

    def _chunk(self, index: int, resp: Any) -> list:
        raise _Unsplittable(index)

    def take(self) -> dict:
        fields = self.builder.packed(self.fmt)
        self.builder = Builder()
        return fields


def _read_range(task: tuple) -> tuple:
    """In a worker: the packed batches of one range (see ``Builder.packed``), and what its
    reader counted."""
    path, start, stop, first, fmt, explicit, errors, chunk, cap = task
    reader = _RangeReader(fmt if explicit else "auto", errors, 5, None, cap)
    reader.fmt = fmt
    with open(path, "rb", buffering=READ_BUFFER) as f, _gc_paused():
        parts = list(_stream(_RangeLines(f, start, stop), path, reader, chunk, None, first))
        parts.append(reader.take())
    fields = [p for p in parts if len(p["offsets"]) > 1 or p["skipped"]]
    return fields, reader.n_records, reader.n_skipped, reader.first_error, reader.fmt, stop - start


def _first_format(f: Any, reader: Any) -> tuple[bool, str | None]:
    """Whether the file is JSONL, and the format of its first record (None if unknown).
    A first line that is not a whole record (a document, or damaged) is left to one
    process, which says what it is."""
    cap = reader.max_record_bytes
    for line in _lines(f, cap):
        line = line.removeprefix(b"\xef\xbb\xbf")
        if _cut_short(line, cap):
            return False, None
        if not line.strip():
            continue
        if _first_line(line) != "record":
            return False, None
        if reader.explicit:
            return True, reader.fmt
        probe = type(reader)("auto", "skip", 5, None)
        try:
            probe.record(_loads(line), 0, "")
        except ValueError:
            return False, None
        return not probe.streams.open, probe.fmt
    return False, None


def read_ranges(
    path: str, reader: Any, chunk: int | None, progress: Any, workers: int
) -> Iterator[LogprobBatch] | None:
    """The batches of ``path`` read by ``workers`` processes, or None where the file cannot
    be split (gzip, a JSON document) or is too small to gain from it."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < 2 * _MIN_RANGE or _is_gzip(f):
            return None
        jsonl, fmt = _first_format(f, reader)
    if not jsonl:
        return None
    # 8 ranges a worker: the last range, run alone, is short
    step = min(max(size // (8 * workers), _MIN_RANGE), _MAX_RANGE)
    return _run(path, reader, chunk, workers, fmt, step, _Progress(progress, size, path))


def _run(path, reader, chunk, workers, fmt, step, bar) -> Iterator[LogprobBatch]:
    """The parts in file order: each as it comes with ``chunk``; else one batch of all. From
    a range that meets a streaming chunk on, the file is read by this process."""
    errors = "skip" if reader.skip else "raise"
    parts: list = []
    rest = None  # (start, first line) of the range from which this process reads on
    pool = ProcessPoolExecutor(workers, mp_context=_context())
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            window: deque = deque()
            ranges = _ranges(f, size, step)
            for start, stop, first in ranges:
                task = (path, start, stop, first, fmt, reader.explicit, errors, chunk,
                        reader.max_record_bytes)  # fmt: skip
                window.append((start, first, pool.submit(_read_range, task)))
                if len(window) > workers:
                    rest = _next_part(window, parts, reader, bar)
                    if rest is not None:
                        break
                    if chunk is not None:
                        yield from map(unpack, parts)
                        parts = []
            ranges.close()  # (unmaps the file)
            while window and rest is None:
                rest = _next_part(window, parts, reader, bar)
        pool.shutdown(wait=True, cancel_futures=True)  # the ranges after a chunk's: not needed
        if chunk is not None:
            yield from map(unpack, parts)
        elif parts:
            yield concat_packed(parts)
        if rest is not None:
            with open(path, "rb", buffering=READ_BUFFER) as f:
                start, first = rest
                yield from _stream(
                    _RangeLines(f, start, size), path, reader, chunk, bar.shown(), first
                )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _next_part(window: deque, parts: list, reader: Any, bar: Any) -> tuple | None:
    """The parts of the next range in order added to ``parts``; or, if that range meets a
    streaming chunk, where it starts (the start, the index of its first line)."""
    start, first, future = window.popleft()
    try:
        result = future.result()
    except _Unsplittable:
        return start, first
    parts += _collect(result, reader, bar)
    return None


def _collect(result: tuple, reader: Any, bar: Any) -> list:
    """The packed parts of a range; what its reader counted added to ``reader``."""
    fields, n_records, n_skipped, first_error, fmt, n_bytes = result
    reader.n_records += n_records
    reader.n_skipped += n_skipped
    if reader.first_error is None:
        reader.first_error = first_error
    reader.fmt = merged_format([reader.fmt, fmt])
    bar.advance(n_bytes)
    return fields


def _context() -> Any:
    # fork starts a worker in milliseconds and the workers run no threaded kernels (JSONL
    # only); elsewhere, spawn.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
