"""Files read by several processes: large JSONL files in byte ranges that end at line ends,
the others whole.

The main process cuts each large JSONL file into ranges of whole lines, counting their lines
as it goes (so each range knows the number of its first line, for ``record`` and for error
messages), and hands the ranges and the other files to a pool of worker processes; their
batches come back in file order, a few tasks ahead at most, so memory is bounded by the tasks
in flight and not by the files. Each worker starts with the format of the source's first
record, as one process would have gone on with it (where that is not known yet, the files
before are waited for): the result is the same as one process's. Streaming chunks are joined
across lines (``_chunks``), which a range cannot do alone: a file that begins with them is read
whole, and where a range meets one, this process reads on from that range's start.
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
    _read_file,
    _Reader,
    _stream,
    tag_file,
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


class _TaskReader(_Reader):
    """A worker's reader: its batches are packed, to be sent back. A range (not a whole
    file) cannot join streaming chunks."""

    split = False

    def _chunk(self, index: int, resp: Any) -> list:
        if self.split:
            raise _Unsplittable(index)
        return super()._chunk(index, resp)

    def take(self) -> dict:
        fields = self.builder.packed(self.fmt)
        self.builder = Builder()
        return fields


def _read_task(task: tuple) -> tuple:
    """In a worker: the packed batches of a range of a file, or of a whole file (``start``
    None), and what its reader counted."""
    path, start, stop, first, fmt, options, chunk = task
    explicit, errors, top_k, eos_token_id, cap = options
    reader = _TaskReader(fmt if explicit else "auto", errors, top_k, eos_token_id, cap)
    reader.fmt = fmt
    reader.split = start is not None
    with open(path, "rb", buffering=READ_BUFFER) as f, _gc_paused():
        if reader.split:
            parts = list(_stream(_RangeLines(f, start, stop), path, reader, chunk, None, first))
        else:
            parts = list(_read_file(f, path, reader, chunk, False))
            reader.end()
        parts.append(reader.take())
    fields = [p for p in parts if len(p["offsets"]) > 1 or p["skipped"]]
    counts = (reader.n_records, reader.n_skipped, reader.first_error, reader.fmt,
              reader.damage, reader.streams.unfinished)  # fmt: skip
    return fields, counts


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


def read_files(
    paths: list, reader: Any, chunk: int | None, progress: Any, workers: int, many: bool
) -> Iterator[LogprobBatch] | None:
    """The batches of the files read by ``workers`` processes, in file order (with their
    ``file`` where ``many``); None for one file that cannot be split (gzip, a JSON document,
    streaming chunks) or is too small to gain from it: this process reads it."""
    plans = [_plan(path, reader, workers) for path in paths[:1]]
    if not many and plans[0] is None:
        return None
    sizes = [os.path.getsize(path) for path in paths]
    bar = _Progress(progress, sum(sizes), paths[0] if len(paths) == 1 else f"{len(paths)} files")
    return _Tasks(paths, reader, chunk, workers, many, bar).run(plans[0])


def _plan(path: str, reader: Any, workers: int) -> tuple | None:
    """``(step, format)`` to split a JSONL file into ranges of ``step`` bytes, or None where
    it is read whole."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < 2 * _MIN_RANGE or _is_gzip(f):
            return None
        jsonl, fmt = _first_format(f, reader)
    if not jsonl:
        return None
    # 8 ranges a worker: the last range, run alone, is short
    return min(max(size // (8 * workers), _MIN_RANGE), _MAX_RANGE), fmt


class _Tasks:
    """The ranges and files in flight, their results taken in order."""

    def __init__(self, paths, reader, chunk, workers, many, bar) -> None:
        self.paths, self.reader, self.chunk, self.workers = paths, reader, chunk, workers
        self.many, self.bar = many, bar
        self.window: deque = deque()  # (file, (path, start, stop, first line), future)
        self.parts: list = []  # packed parts (chunk None: all of them, joined at the end)
        self.abandoned: set = set()  # files whose rest this process read (a range met a chunk)
        errors = "skip" if reader.skip else "raise"
        self.options = (reader.explicit, errors, reader.top_k, reader.eos_token_id,
                        reader.max_record_bytes)  # fmt: skip

    def run(self, first_plan: tuple | None) -> Iterator[LogprobBatch]:
        pool = ProcessPoolExecutor(self.workers, mp_context=_context())
        try:
            for i, path in enumerate(self.paths):
                plan = first_plan if i == 0 else _plan(path, self.reader, self.workers)
                if plan is not None and self.reader.fmt is None:
                    self.reader.fmt = plan[1]
                while self.reader.fmt is None and self.window:
                    # the source's format comes from the files before: wait for them
                    yield from self._next()
                if plan is None:
                    yield from self._submit(pool, i, (path, None, None, 0))
                    continue
                with open(path, "rb") as f:
                    ranges = _ranges(f, os.fstat(f.fileno()).st_size, plan[0])
                    for start, stop, first in ranges:
                        if i in self.abandoned:
                            break
                        yield from self._submit(pool, i, (path, start, stop, first))
                    ranges.close()  # (unmaps the file)
            while self.window:
                yield from self._next()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.bar.close()
        if self.chunk is None and self.parts:
            yield concat_packed(self.parts)

    def _submit(self, pool, i: int, where: tuple) -> Iterator[LogprobBatch]:
        task = (*where, self.reader.fmt, self.options, self.chunk)
        self.window.append((i, where, pool.submit(_read_task, task)))
        while len(self.window) > self.workers:
            yield from self._next()

    def _next(self) -> Iterator[LogprobBatch]:
        """The next task's parts: kept, or with ``chunk`` handed on."""
        i, (path, start, stop, first), future = self.window.popleft()
        if i in self.abandoned:
            future.cancel()
            return
        try:
            fields, counts = future.result()
        except _Unsplittable:
            yield from self._rest(i, start, first)
            return
        reader = self.reader
        n_records, n_skipped, first_error, fmt, damage, unfinished = counts
        reader.n_records += n_records
        reader.n_skipped += n_skipped
        if reader.first_error is None:
            reader.first_error = first_error
        reader.fmt = merged_format([reader.fmt, fmt])
        reader.damage += damage
        reader.streams.unfinished += unfinished
        self.bar.advance(os.path.getsize(path) if start is None else stop - start)
        yield from self._hand_on([self._tagged(p, i) for p in fields])

    def _rest(self, i: int, start: int, first: int) -> Iterator[LogprobBatch]:
        """The rest of file ``i``, from a range that met a streaming chunk, read here."""
        self.abandoned.add(i)
        reader, path = self.reader, self.paths[i]
        with open(path, "rb", buffering=READ_BUFFER) as f:
            size = os.fstat(f.fileno()).st_size
            lines = _RangeLines(f, start, size)
            for batch in _stream(lines, path, reader, self.chunk, self.bar.shown(), first):
                yield tag_file(batch, i) if self.many else batch
        reader.end()
        fields = reader.builder.packed(reader.fmt)
        reader.builder = Builder()
        yield from self._hand_on([self._tagged(fields, i)])

    def _tagged(self, fields: dict, i: int) -> dict:
        if self.many:
            fields["file"] = np.full(len(fields["offsets"]) - 1, i, dtype=np.int64)
            fields["skipped_files"] = np.full(fields["skipped"], i, dtype=np.int64)
        return fields

    def _hand_on(self, parts: list) -> Iterator[LogprobBatch]:
        if self.chunk is None:
            self.parts += parts
        else:
            yield from (unpack(p) for p in parts if len(p["offsets"]) > 1 or p["skipped"])


def _context() -> Any:
    # fork starts a worker in milliseconds and the workers run no threaded kernels (JSONL
    # only); elsewhere, spawn.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
