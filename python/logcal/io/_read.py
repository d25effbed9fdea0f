"""``read_logprobs``: sources (paths, file objects, parsed records), streaming and errors.

A JSONL line is decoded straight into its typed schema by msgspec (one pass, in C). Only a
line that does not fit -- malformed, of another format, or holding Python's non-standard
``NaN`` / ``Infinity`` -- takes the general path: ``json.loads``, then the schema of the kind
of record it is, whose validation error names the field.
"""

from __future__ import annotations

import functools
import gc
import glob
import io
import json
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import numpy as np

from . import _formats as F
from ._batch import Builder, LogprobBatch
from ._chunks import CHUNK, Streams, is_chunk
from ._hf import is_hf, read_hf
from ._merge import concat
from ._schema import BASES, DECODERS, RecordError, inner, show

_PLAIN_KINDS = ("openai", "gemini")  # the kinds of record that are the response itself

# Files at least this big get a progress bar unless progress=False.
PROGRESS_BYTES = 64 * 1024 * 1024
_PROGRESS_STEP = 1 << 20  # update the bar every MiB
# Lines are cut from reads this big: a quarter of the time of the default 8 KiB reads.
READ_BUFFER = 1 << 20
# The longest JSONL line or JSON document read by default (max_record_bytes): far above any
# API response, and a bound on the memory a damaged or hostile file can take.
MAX_RECORD_BYTES = 64 << 20


class _TooDeep(ValueError):
    """JSON nested deeper than the parser can follow (Python's recursion limit)."""


def _loads(text: Any) -> Any:
    """``json.loads``, with nesting too deep for it a ValueError like any malformed text."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _TooDeep("nested too deeply to parse") from None


class _Reader:
    """Parses records one at a time into a :class:`Builder`; remembers what was skipped."""

    def __init__(
        self,
        fmt: str,
        errors: str,
        top_k: int,
        eos_token_id: Any,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.explicit = fmt != "auto"
        self.fmt: str | None = None if fmt == "auto" else fmt
        self.kind: str | None = None  # the schema the last record had: tried first
        self.skip = errors == "skip"
        self.top_k = top_k
        self.eos_token_id = eos_token_id
        self.builder = Builder()
        self.streams = Streams()  # OpenAI streaming chunks, joined
        self.n_records = 0
        self.n_skipped = 0
        self.first_error: str | None = None
        self.max_record_bytes = max_record_bytes
        self.damage: list[str] = []  # files cut short, read up to the cut (errors="skip")

    def fail(self, index: int, message: str) -> None:
        if not self.skip:
            raise ValueError(message)
        self.builder.skip(index)
        self.n_skipped += 1
        if self.first_error is None:
            self.first_error = message

    def line(self, line: Any, index: int, name: str) -> None:
        """One JSONL line (not blank), line ``index + 1`` of the file ``name``."""
        self.n_records += 1
        kind = self.kind
        if kind is not None:
            try:
                resp = DECODERS[kind].decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                pass  # the general path says what is wrong
            else:
                try:
                    self._add(index, resp if kind in _PLAIN_KINDS else inner(kind, resp), kind)
                except RecordError as exc:
                    self.fail(index, f"{name}:{index + 1}: {exc}")
                return
        where = f"{name}:{index + 1}: "
        try:
            rec = _loads(line)
        except ValueError as exc:
            self.fail(index, f"{where}{_json_error(exc)}")
            return
        self._record(rec, index, where)

    def too_long(self, index: int, name: str) -> None:
        """Line ``index + 1`` of ``name`` is longer than ``max_record_bytes``."""
        self.n_records += 1
        self.fail(
            index,
            f"{name}:{index + 1}: the record is longer than max_record_bytes "
            f"({self.max_record_bytes:,} bytes)",
        )

    def record(self, rec: Any, index: int, where: str) -> None:
        """One parsed record."""
        self.n_records += 1
        self._record(rec, index, where)

    def _record(self, rec: Any, index: int, where: str) -> None:
        try:
            # transformers' GenerateOutput is a dict too (an OrderedDict of its fields)
            if self.fmt in (None, "huggingface") and is_hf(rec):
                self._hf(rec, index)
                return
            if not isinstance(rec, dict):
                raise RecordError("", f"a record must be a JSON object, got {show(rec)}")
            kind = F.record_kind(rec)
            if self.explicit:
                F.check_explicit(self.fmt, kind, rec)
            elif kind is None:
                if self.fmt is None:
                    raise RecordError(
                        "",
                        f"cannot tell the format of this record: {F.EXPECTED}; got keys "
                        f"{sorted(rec)[:8]}",
                    )
                kind = "gemini" if self.fmt == "gemini" else "openai"  # its schema says why
            self._add(index, inner(kind, F.typed(rec, kind)), kind)
            self.kind = kind
        except RecordError as exc:
            self.fail(index, f"{where}{exc}")
        except RecursionError:  # a parsed record nested deeper than it can be walked
            self.fail(index, f"{where}the record is nested too deeply to read")

    def _add(self, index: int, resp: Any, kind: str) -> None:
        if self.explicit:
            fmt = self.fmt
        else:
            fmt = F.detect(kind, resp)
            if fmt != self.fmt:
                fmt = self._format(fmt)
        # (most records say they are whole completions: no call to tell)
        if kind == "openai" and resp.object != "chat.completion" and is_chunk(resp):
            for record, sequences in self._chunk(index, resp):
                self.builder.add(record, sequences)
            return
        self.builder.add(index, F.PARSERS[fmt](resp, BASES[kind]))

    def _chunk(self, index: int, resp: Any) -> list:
        """A streaming chunk: the streams it ends (see ``_chunks``)."""
        if not self.fmt.endswith("_chat"):
            raise RecordError("object", f"is {CHUNK!r}, but format={self.fmt!r}")
        return self.streams.add(index, resp)

    def end(self) -> None:
        """At the end of the source: the streams still open go to the builder."""
        for record, sequences in self.streams.close():
            self.builder.add(record, sequences)

    def _hf(self, rec: Any, index: int) -> None:
        if self.fmt is None:
            self.fmt = "huggingface"
        try:
            arrays = read_hf(rec, top_k=self.top_k, eos_token_id=self.eos_token_id)
        except (ValueError, TypeError) as exc:  # the kernel's TypeError: a dtype it refuses
            raise RecordError("", str(exc)) from None
        self.builder.add_arrays(index, *arrays)

    def _format(self, found: str) -> str:
        if self.fmt is None or found == self.fmt:
            self.fmt = found
            return found
        # vLLM's responses extend OpenAI's: a file may mix both (prompt logprobs asked for
        # on some requests only); the batch is then vLLM's.
        kinds = {self.fmt.split("_", 1)[-1], found.split("_", 1)[-1]}
        if len(kinds) == 1 and "gemini" not in (found, self.fmt):
            if found.startswith("vllm"):
                self.fmt = found
            return found
        raise RecordError(
            "", f"this is a {found} record, but the source began with {self.fmt} records"
        )

    def take(self) -> LogprobBatch:
        """The batch read so far; the reader goes on with an empty one."""
        batch = self.builder.finish(self.fmt)
        self.builder = Builder()
        return batch

    def check(self, name: str, stacklevel: int = 4) -> None:
        """At the end: something was read, and what was skipped is said."""
        if self.n_records == 0:
            raise ValueError(f"{name} holds no records")
        if self.n_skipped == self.n_records:
            damage = "".join(f"; {d}" for d in self.damage)
            raise ValueError(
                f"none of the {self.n_records} records of {name} could be read; the first "
                f"error: {self.first_error}{damage}"
            )
        if self.n_skipped:
            warnings.warn(
                f"read_logprobs skipped {self.n_skipped} malformed record(s) of "
                f"{self.n_records} in {name}; the first: {self.first_error}",
                stacklevel=stacklevel,
            )
        if self.streams.unfinished:
            warnings.warn(
                f"read_logprobs: {self.streams.unfinished} stream(s) of chunks in {name} end "
                f"without a finish_reason (cut short?); their tokens were read",
                stacklevel=stacklevel,
            )
        for damage in self.damage:
            warnings.warn(damage, stacklevel=stacklevel)


# --- files -----------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar over bytes read, or nothing."""

    def __init__(self, show: bool | None, total: int | None, desc: str) -> None:
        self.bar = None
        self.done = 0
        self.reported = 0
        want = show if show is not None else (total is not None and total >= PROGRESS_BYTES)
        if not want:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            if show:
                raise
            return
        self.bar = tqdm(
            total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False
        )

    def shown(self) -> _Progress | None:
        """This bar, or None where nothing is shown (no call a line to make)."""
        return None if self.bar is None else self

    def advance(self, n: int) -> None:
        if self.bar is None:
            return
        self.done += n
        if self.done - self.reported >= _PROGRESS_STEP:
            self.bar.update(self.done - self.reported)
            self.reported = self.done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.done - self.reported)
            self.bar.close()


def _json_error(exc: ValueError, document: bool = False) -> str:
    if isinstance(exc, json.JSONDecodeError):
        # a JSONL record is one line: its column is the position in the line, even when
        # the error is found at the line's end
        column = exc.colno if document else min(exc.pos, len(exc.doc.rstrip())) + 1
        return f"not valid JSON: {exc.msg} (column {column})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, _TooDeep):
        return "JSON nested too deeply to parse"
    return f"not valid JSON: {exc}"  # pragma: no cover


class _Cut(Exception):
    """A gzip stream that ends without its end-of-stream marker (errors="raise")."""


class _Gunzip(io.RawIOBase):
    """The text of a gzip stream, for an ``io.BufferedReader`` to cut into lines.

    Unlike ``gzip.GzipFile`` it never makes more text than it is asked for at a time (a
    small file that expands to one huge line stays bounded by ``max_record_bytes``), and a
    stream cut short ends the text where the cut is -- so that the lines before it are read
    with ``errors="skip"`` -- instead of losing the last buffer in an ``EOFError``. Members
    follow one another, and zero padding after one is ignored, as gzip allows.
    """

    def __init__(self, source: Any, bar: _Progress, strict: bool) -> None:
        self.source, self.bar, self.strict = source, bar, strict
        self.z = zlib.decompressobj(wbits=31)
        self.read_bytes = 0  # compressed bytes read
        self.lines = 0  # line ends made
        self.cut: int | None = None  # where a stream cut short ends, in compressed bytes

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes:
        data = self.source.read(READ_BUFFER)
        self.read_bytes += len(data)
        self.bar.advance(len(data))
        return data

    def where(self) -> str:
        return (
            f"its gzip stream ends at byte {self.read_bytes:,}, in line {self.lines + 1:,}, "
            f"without its end-of-stream marker"
        )

    def readinto(self, buf: Any) -> int:
        while True:
            if self.z.eof:
                rest = self.z.unused_data.lstrip(b"\0")
                while not rest:
                    more = self._more()
                    if not more:
                        return 0
                    rest = more.lstrip(b"\0")
                self.z = zlib.decompressobj(wbits=31)  # the next member
                data = rest
            elif self.z.unconsumed_tail:
                data = self.z.unconsumed_tail
            else:
                data = self._more()
                if not data:
                    self.cut = self.read_bytes
                    if self.strict:
                        raise _Cut(self.where())
                    return 0
            text = self.z.decompress(data, len(buf))
            if text:
                buf[: len(text)] = text
                self.lines += text.count(b"\n")
                return len(text)


class _Source(io.RawIOBase):
    """Any object with ``read(n)`` returning bytes, for an ``io.BufferedReader``: lines,
    and a look at the first bytes (is it gzip?) that reads nothing twice."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.f.read(len(buf)) or b""
        if isinstance(data, str):
            raise TypeError(
                "source: a file object's read() must return bytes, or the file be an "
                "io.TextIOBase (a file opened in text mode)"
            )
        buf[: len(data)] = data
        return len(data)


class _LineSource:
    """A file object known by its lines only (iterated, never ``read()`` whole): its lines
    in pieces of at most ``size``, as :func:`_lines` gives those of a file."""

    def __init__(self, f: Any, size: int) -> None:
        self.lines, self.size = iter(f), size
        self.rest: Any = None  # what is left of the current line

    def __iter__(self) -> _LineSource:
        return self

    def __next__(self) -> Any:
        if not self.rest:
            self.rest = next(self.lines)
        piece, self.rest = self.rest[: self.size], self.rest[self.size :]
        return piece

    def read(self, n: int) -> Any:
        """At most ``n`` more characters (or bytes): the rest of a JSON document."""
        parts: list = []
        have = 0
        for piece in self:
            parts.append(piece)
            have += len(piece)
            if have >= n:
                break
        return parts[0][:0].join(parts) if parts else ""


def _buffered(f: Any, cap: int) -> Any:
    """A file object to cut lines from, bounded by ``cap``: files and text files as they
    are, raw and in-memory binary streams buffered (so that they can ``peek``: gzip?),
    any other object by its lines."""
    if isinstance(f, io.TextIOBase) or hasattr(f, "peek"):
        return f
    if isinstance(f, (io.RawIOBase, io.BufferedIOBase)):
        return io.BufferedReader(_Source(f), READ_BUFFER)
    return _LineSource(f, cap + 1)


def _lines(f: Any, cap: int) -> Iterator[Any]:
    """The lines of ``f``, a line longer than ``cap`` coming in pieces of ``cap + 1``
    (see :func:`_cut_short`): no line is ever held whole whatever its length."""
    if isinstance(f, _LineSource):
        return f
    return iter(functools.partial(f.readline, cap + 1), "" if isinstance(f, io.TextIOBase) else b"")


def _cut_short(line: Any, cap: int) -> bool:
    """A piece of a line longer than ``cap`` (a line within it ends with its line end)."""
    return len(line) > cap and line[-1:] not in (b"\n", "\n")


def _skip_rest(lines: Iterator[Any], bar: _Progress | None) -> None:
    """Read past the rest of a line too long to hold, a piece at a time."""
    for piece in lines:
        if bar is not None:
            bar.advance(len(piece))
        if piece[-1:] in (b"\n", "\n"):
            return


def _first_line(line: Any) -> str:
    """What the first line of a file says of it: ``"document"`` (it opens a JSON array),
    ``"record"`` (a JSONL record, whole or malformed), or ``"open"``: it does not parse, and
    stops where JSON goes on (after ``{``, ``[``, ``,`` or ``:``) -- the start of a
    pretty-printed document, or a record cut there; the next line tells (:func:`_stream`)."""
    stripped = line.strip()
    if stripped[:1] in ("[", b"["):
        return "document"
    try:
        _loads(line)
    except ValueError:
        last = stripped[-1:]
        return "open" if last in ("{", "[", ",", ":", b"{", b"[", b",", b":") else "record"
    return "record"


def _is_record(line: Any) -> bool:
    """A line that is a JSON object by itself: a JSONL record, never a line of a document
    (which, pretty-printed, is a part of an object)."""
    try:
        return isinstance(_loads(line), dict)
    except ValueError:
        return False


def _stream(
    f: Any, name: str, reader: _Reader, chunk: int | None, bar: _Progress | None, first: int = 0
) -> Iterator[LogprobBatch]:
    """JSONL line by line (yielding a batch whenever ``chunk`` tokens are read); a JSON
    document (array, or one object over many lines) whole. ``first``: the index of the first
    line (a byte range of a file begins part way)."""
    cap = reader.max_record_bytes
    lineno = first
    lines = _lines(f, cap)  # once: the second loop goes on where the first stopped
    held: list = []  # the first non-blank line, and the next one where it takes two to tell
    if first == 0:
        blanks = []  # between the two: part of a document's text
        for line in lines:
            lineno += 1
            if bar is not None:
                bar.advance(len(line))
            if lineno == 1:
                line = line.removeprefix(b"\xef\xbb\xbf" if isinstance(line, bytes) else "\ufeff")
            if _cut_short(line, cap):
                if held:
                    _document([held[0][1], *blanks, line], f, name, held[0][0], reader)
                    return
                if line.lstrip()[:1] in ("[", b"["):
                    _document([line], f, name, lineno, reader)
                    return
                held.append((lineno, line))
                break
            if not line.strip():
                if held:
                    blanks.append(line)
                continue
            if held:  # the first line was "open": this one tells
                if not _is_record(line):
                    _document([held[0][1], *blanks, line], f, name, held[0][0], reader)
                    return
                held.append((lineno, line))
                break
            kind = _first_line(line)
            if kind == "document":
                _document([line], f, name, lineno, reader)
                return
            held.append((lineno, line))
            if kind == "record":
                break
    for n, line in held:
        if _cut_short(line, cap):
            reader.too_long(n - 1, name)
            _skip_rest(lines, bar)
        else:
            reader.line(line, n - 1, name)
    for line in lines:
        lineno += 1
        if bar is not None:
            bar.advance(len(line))
        if len(line) > cap and _cut_short(line, cap):
            reader.too_long(lineno - 1, name)
            _skip_rest(lines, bar)
            continue
        if line.isspace():  # (no copy of the line, unlike strip)
            continue
        reader.line(line, lineno - 1, name)
        if chunk is not None and reader.builder.size >= chunk:
            yield reader.take()


def _document(parts: list, f: Any, name: str, lineno: int, reader: _Reader) -> None:
    """A whole JSON document, ``parts`` its lines read so far (the first is line
    ``lineno``): held in memory, as any JSON parser must, up to ``max_record_bytes``."""
    cap = reader.max_record_bytes
    text = parts[0][:0].join(parts)
    if len(text) <= cap:
        text += f.read(cap + 1 - len(text))
    if len(text) > cap:
        raise ValueError(
            f"{name}: the JSON document is longer than max_record_bytes ({cap:,} bytes); "
            f"pass a larger max_record_bytes, or write the records as JSONL (one a line)"
        )
    try:
        value = _loads(text)
    except ValueError as exc:
        line = lineno + exc.lineno - 1 if isinstance(exc, json.JSONDecodeError) else lineno
        raise ValueError(f"{name}:{line}: {_json_error(exc, document=True)}") from None
    del text
    if isinstance(value, list):
        for i, rec in enumerate(value):
            reader.record(rec, i, f"{name}: record {i}: ")
    else:
        reader.record(value, 0, f"{name}: ")


def _size(f: Any) -> int | None:
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _is_gzip(f: Any) -> bool:
    peek = getattr(f, "peek", None)
    return peek is not None and peek(2)[:2] == b"\x1f\x8b"


def _read_file(
    f: Any, name: str, reader: _Reader, chunk: int | None, progress: bool | None
) -> Iterator[LogprobBatch]:
    """A file object: gzip (read as a stream: pipes work) or plain, with the progress bar."""
    bar = _Progress(progress, _size(f), os.path.basename(name))
    try:
        f = _buffered(f, reader.max_record_bytes)
        if not _is_gzip(f):
            yield from _stream(f, name, reader, chunk, bar.shown())
            return
        text = _Gunzip(f, bar, strict=not reader.skip)  # progress over the compressed bytes
        try:
            yield from _stream(io.BufferedReader(text, READ_BUFFER), name, reader, chunk, None)
        except _Cut as exc:
            raise ValueError(f"{name}: not a readable gzip file (truncated: {exc})") from None
        except zlib.error as exc:
            raise ValueError(f"{name}: not a readable gzip file ({exc})") from None
        if text.cut is not None:
            if reader.n_records == 0:
                raise ValueError(f"{name}: not a readable gzip file (truncated: {text.where()})")
            reader.damage.append(
                f"{name} is truncated: {text.where()}; the lines before it were read"
            )
    finally:
        bar.close()


def _read_paths(
    paths: list, reader: _Reader, chunk: int | None, progress: Any, workers: int, many: bool
) -> Iterator[LogprobBatch]:
    """Files one after the other, as one source; with ``many``, each batch says its file."""
    if workers > 1:
        from ._parallel import read_files

        plan = read_files(paths, reader, chunk, progress, workers, many)
        if plan is not None:
            yield from plan
            return
    for i, path in enumerate(paths):
        with open(path, "rb", buffering=READ_BUFFER) as raw:
            for batch in _read_file(raw, path, reader, chunk, progress):
                yield tag_file(batch, i) if many else batch
        if many:
            reader.end()  # (a stream does not go on in the next file)
            yield tag_file(reader.take(), i)


def tag_file(batch: LogprobBatch, i: int) -> LogprobBatch:
    """The batch of file ``i`` of many, with its ``file`` and ``skipped_files``."""
    return LogprobBatch(
        **batch,
        file=np.full(batch.n_sequences, i, dtype=np.int64),
        skipped_files=np.full(batch.skipped, i, dtype=np.int64),
    )


def _paths(source: Any) -> list | None:
    """The files of a list of paths or a glob pattern (in sorted order), or None."""
    if isinstance(source, str) and not os.path.exists(source) and any(c in source for c in "*?["):
        found = sorted(glob.glob(source, recursive=True))
        if not found:
            raise ValueError(f"source: no file matches the pattern {source!r}")
        return found
    if (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(p, (str, os.PathLike)) for p in source)
    ):
        return [os.fspath(p) for p in source]
    return None


def _file_name(f: Any) -> str:
    name = getattr(f, "name", None)
    return name if isinstance(name, str) else "<file>"


def _batches(source: Any, reader: _Reader, chunk: int | None, progress: Any, workers: int):
    """The batches of a source, each ending at a record, then the end-of-source checks."""
    paths = _paths(source)
    if paths is not None:
        pattern = isinstance(source, str)
        name = f"the pattern {source!r}" if pattern else f"the list of {len(paths)} files"
        yield from _read_paths(paths, reader, chunk, progress, workers, True)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        yield from _read_paths([name], reader, chunk, progress, workers, False)
    elif isinstance(source, dict) or is_hf(source):
        name = "the record"
        reader.record(source, 0, "")
    elif hasattr(source, "read"):
        name = _file_name(source)
        yield from _read_file(source, name, reader, chunk, progress)
    else:
        name = "the records"
        for i, rec in enumerate(source):
            reader.record(rec, i, f"record {i}: ")
            if chunk is not None and reader.builder.size >= chunk:
                yield reader.take()
    reader.end()
    last = reader.take()
    if paths is not None:
        last = tag_file(last, len(paths) - 1)  # (empty after the last file's own)
    reader.check(name, stacklevel=4)
    if chunk is None or last.n_sequences or last.skipped:
        yield last


# --- the public function ---------------------------------------------------------------------


def read_logprobs(
    source: Any,
    *,
    format: str = "auto",
    errors: str = "raise",
    progress: bool | None = None,
    top_k: int = 5,
    eos_token_id: Any = None,
    chunk_tokens: int | None = None,
    workers: int = 1,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> LogprobBatch | Iterator[LogprobBatch]:
    """Read token log-probabilities from model API outputs into flat arrays.

    Parameters
    ----------
    source : path, paths or glob pattern, file object, dict, list of dicts, or generate output
        A path (``str`` or ``os.PathLike``) to a JSONL file (one response per line), a JSON
        file (one response, or an array of them), either of them gzip-compressed; a list of
        such paths, or a glob pattern (``"logs/*.jsonl.gz"``, ``**`` for subfolders; a path
        that exists is always read as a path), read as one source in the list's order or the
        pattern's matches sorted (the batch then says each sequence's ``file``); an open file
        object (text or binary) holding the same; already-parsed responses (a dict or a list
        of dicts); or the output of ``model.generate(..., return_dict_in_generate=True,
        output_logits=True)`` (or a dict with ``sequences`` and ``logits`` or ``scores``).
        Batch-API lines (OpenAI ``{"response": {"body": ...}}``, Gemini and Vertex
        ``{"response": ...}``) are unwrapped, and OpenAI streaming chunks
        (``chat.completion.chunk`` lines) are joined into the sequences of their streams.
    format : str
        ``"auto"`` (from the keys of the records; the first one sets the format),
        ``"openai_chat"``, ``"openai_completions"``, ``"vllm_chat"``, ``"vllm_completions"``
        (the OpenAI shapes plus ``prompt_logprobs``), ``"gemini"`` or ``"huggingface"``.
    errors : {"raise", "skip"}
        What to do with a malformed record: raise ``ValueError`` naming the line and the
        field, or skip it; skipped records are counted in ``skipped`` (and listed in
        ``skipped_records``) and summed up in a warning.
    progress : bool, optional
        Show a progress bar (tqdm, over the bytes read). By default only for files of 64 MiB
        or more.
    top_k : int
        Hugging Face outputs only: how many of the most likely tokens to keep per step.
    eos_token_id : int or list of int, optional
        Hugging Face outputs only: a row ends at its first end-of-sequence token (the steps
        after it are padding). Without it every row keeps all steps.
    chunk_tokens : int, optional
        Stream: return an iterator of batches instead of one batch. Each batch holds whole
        records and is handed over once it holds ``chunk_tokens`` tokens or more (so fewer
        than ``chunk_tokens`` plus one record's tokens), the last one with what is left;
        ``record`` keeps counting across batches. Memory is then bounded by the chunk, not
        the file. The checks of the whole source (nothing read, every record malformed, the
        warning of skipped records) come when the iterator ends.
    workers : int
        Processes decoding files given by their paths in parallel: a large JSONL file split
        into ranges of lines, the other files (gzip, JSON documents, small files, a file
        that begins with streaming chunks) each read whole by one worker; the result is the
        same as with one process, in file order. A single file that cannot be split, and
        sources other than paths, are read by this process.
    max_record_bytes : int
        The longest record read from a file or file object, in bytes (characters for a
        file opened in text mode): a JSONL line (its line end not counted), or a whole JSON
        document. Default 64 MiB. A longer line is never held whole: it is a malformed record
        (a ``ValueError`` naming its line, or with ``errors="skip"`` a counted skip); a longer
        document raises ``ValueError``. It bounds the memory a damaged file, or a small gzip
        file that expands to one huge line, can take.

    Returns
    -------
    LogprobBatch
        ``token_logprob`` ``[T]``, ``offsets`` ``[S+1]`` (one sequence per choice or
        candidate, plus one per vLLM prompt), ``top_logprobs`` ``[T, k]``, ``tokens``,
        ``top_tokens``, ``prompt``, ``record``, ``choice``, ``format`` and ``skipped``; see
        :class:`LogprobBatch` for the conventions (NaN for ``null``, ``-inf`` for sentinels,
        top lists of k+1 entries).

    Notes
    -----
    JSONL is streamed: one line in memory at a time (a gzip file too, without seeking, so a
    pipe works), each line decoded into typed msgspec schemas in one pass, its values taken
    into columns by one compiled call and packed into growing numpy arrays, so memory is
    the result (about 9 bytes per value) and not the text; with ``chunk_tokens``, one chunk.
    Streaming chunks are held until their stream ends (every choice with its
    ``finish_reason``, or the chunk of ``usage``), and the streams go in the order of their
    first chunks, the ``record`` of the first; a stream still open at the end of its file is
    read as it is, with a warning. A JSON
    document (an array of responses, or one object over many lines) is parsed whole, as any
    JSON parser must; write big outputs as JSONL. ``errors="skip"`` skips records: a file
    that is not JSON at all, or a JSON document that does not parse, always raises. A gzip
    file cut short is read up to the cut with ``errors="skip"`` (its damaged last line a
    counted skip, and a warning naming the byte where the stream ends); with
    ``errors="raise"`` it raises ``ValueError`` naming that byte.

    Examples
    --------
    >>> import logcal
    >>> response = {"choices": [{"index": 0, "logprobs": {"content": [
    ...     {"token": "Paris", "logprob": -0.01, "bytes": [80, 97, 114, 105, 115],
    ...      "top_logprobs": [{"token": "Paris", "logprob": -0.01, "bytes": None},
    ...                       {"token": "Lyon", "logprob": -4.7, "bytes": None}]}]}}]}
    >>> batch = logcal.io.read_logprobs(response)
    >>> batch.format, batch.n_sequences, batch.n_tokens, batch.k
    ('openai_chat', 1, 1, 2)
    >>> batch.token_logprob, batch.top_tokens
    (array([-0.01]), array([['Paris', 'Lyon']], dtype=object))
    """
    if not isinstance(format, str) or format not in ("auto", *F.FORMATS):
        raise ValueError(
            f"format must be 'auto' or one of {', '.join(map(repr, F.FORMATS))}, got {format!r}"
        )
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {type(progress).__name__}")
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if chunk_tokens is not None:
        if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int):
            raise TypeError(f"chunk_tokens must be an int, got {type(chunk_tokens).__name__}")
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, got {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if isinstance(max_record_bytes, bool) or not isinstance(max_record_bytes, int):
        raise TypeError(f"max_record_bytes must be an int, got {type(max_record_bytes).__name__}")
    if max_record_bytes < 1:
        raise ValueError(f"max_record_bytes must be >= 1, got {max_record_bytes}")
    if not (
        isinstance(source, (str, os.PathLike, dict))
        or is_hf(source)
        or hasattr(source, "read")
        or (isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray)))
    ):
        raise TypeError(
            f"source must be a path, a file object, a dict, a list of dicts or a Hugging Face "
            f"generate output, got {type(source).__name__}"
        )
    reader = _Reader(format, errors, top_k, eos_token_id, max_record_bytes)
    batches = _batches(source, reader, chunk_tokens, progress, workers)
    if chunk_tokens is not None:
        return _collecting_paused(batches)
    with _gc_paused():
        return concat(list(batches))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused: a read allocates millions of small containers
    that hold no cycles, and would set off a collection every few hundred of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _collecting_paused(batches: Iterator[LogprobBatch]) -> Iterator[LogprobBatch]:
    """The batches, the collector paused while each is read (not while the caller runs)."""
    while True:
        with _gc_paused():
            batch = next(batches, None)
        if batch is None:
            return
        yield batch
