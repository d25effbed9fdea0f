"""``read_logprobs``: sources (paths, file objects, parsed records), streaming and errors.

A JSONL line is decoded straight into its typed schema by msgspec (one pass, in C). Only a
line that does not fit -- malformed, of another format, or holding Python's non-standard
``NaN`` / ``Infinity`` -- takes the general path: ``json.loads``, then the schema of the kind
of record it is, whose validation error names the field.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from . import _formats as F
from ._batch import Builder, LogprobBatch
from ._hf import is_hf, read_hf
from ._merge import concat
from ._schema import BASES, DECODERS, RecordError, inner, show

# Files at least this big get a progress bar unless progress=False.
PROGRESS_BYTES = 64 * 1024 * 1024
_PROGRESS_STEP = 1 << 20  # update the bar every MiB
# Lines are cut from reads this big: a quarter of the time of the default 8 KiB reads.
READ_BUFFER = 1 << 20


class _Reader:
    """Parses records one at a time into a :class:`Builder`; remembers what was skipped."""

    def __init__(self, fmt: str, errors: str, top_k: int, eos_token_id: Any) -> None:
        self.explicit = fmt != "auto"
        self.fmt: str | None = None if fmt == "auto" else fmt
        self.kind: str | None = None  # the schema the last record had: tried first
        self.skip = errors == "skip"
        self.top_k = top_k
        self.eos_token_id = eos_token_id
        self.builder = Builder()
        self.n_records = 0
        self.n_skipped = 0
        self.first_error: str | None = None

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
                resp = inner(kind, DECODERS[kind].decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass  # the general path says what is wrong
            else:
                try:
                    self._add(index, resp, kind)
                except RecordError as exc:
                    self.fail(index, f"{name}:{index + 1}: {exc}")
                return
        where = f"{name}:{index + 1}: "
        try:
            rec = json.loads(line)
        except ValueError as exc:
            self.fail(index, f"{where}{_json_error(exc)}")
            return
        self._record(rec, index, where)

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

    def _add(self, index: int, resp: Any, kind: str) -> None:
        fmt = self.fmt if self.explicit else self._format(F.detect(kind, resp))
        self.builder.add(index, F.PARSERS[fmt](resp, BASES[kind]))

    def _hf(self, rec: Any, index: int) -> None:
        if self.fmt is None:
            self.fmt = "huggingface"
        try:
            arrays = read_hf(rec, top_k=self.top_k, eos_token_id=self.eos_token_id)
        except ValueError as exc:
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
            raise ValueError(
                f"none of the {self.n_records} records of {name} could be read; the first "
                f"error: {self.first_error}"
            )
        if self.n_skipped:
            warnings.warn(
                f"read_logprobs skipped {self.n_skipped} malformed record(s) of "
                f"{self.n_records} in {name}; the first: {self.first_error}",
                stacklevel=stacklevel,
            )


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
    return f"not valid JSON: {exc}"  # pragma: no cover


class _Counted:
    """Counts the bytes read from a stream: the progress over a compressed file's bytes."""

    def __init__(self, raw: Any, bar: _Progress) -> None:
        self.raw, self.bar = raw, bar

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bar.advance(len(data))
        return data

    def readinto(self, buf: Any) -> int:  # pragma: no cover - gzip reads with read()
        n = self.raw.readinto(buf)
        self.bar.advance(n or 0)
        return n


def _is_document_start(line: Any) -> bool | None:
    """True if a first line opens a JSON document (an array, or an object over many lines);
    False if it is a JSONL record; None if it is not JSON at all."""
    stripped = line.strip()
    if stripped[:1] in ("[", b"["):
        return True
    try:
        json.loads(line)
    except ValueError as exc:
        # An object that goes on past its first line is a pretty-printed document.
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if isinstance(exc, json.JSONDecodeError) and exc.pos >= len(text.rstrip()):
            return True
        return None
    return False


def _stream(
    f: Any, name: str, reader: _Reader, chunk: int | None, bar: _Progress | None, first: int = 0
) -> Iterator[LogprobBatch]:
    """JSONL line by line (yielding a batch whenever ``chunk`` tokens are read); a JSON
    document (array, or one object over many lines) whole. ``first``: the index of the first
    line (a byte range of a file begins part way)."""
    lineno = first
    lines = iter(f)  # once: the second loop goes on where the first stopped
    if first == 0:
        for line in lines:
            lineno += 1
            if bar is not None:
                bar.advance(len(line))
            if lineno == 1:
                line = line.removeprefix(b"\xef\xbb\xbf" if isinstance(line, bytes) else "\ufeff")
            if not line.strip():
                continue
            if _is_document_start(line):
                _document(line, f, name, lineno, reader)
                return
            reader.line(line, lineno - 1, name)
            break
    for line in lines:
        lineno += 1
        if bar is not None:
            bar.advance(len(line))
        if line.isspace():  # (no copy of the line, unlike strip)
            continue
        reader.line(line, lineno - 1, name)
        if chunk is not None and reader.builder.size >= chunk:
            yield reader.take()


def _document(first: Any, f: Any, name: str, lineno: int, reader: _Reader) -> None:
    """A whole JSON document: held in memory, as any JSON parser must."""
    text = first + f.read()
    try:
        value = json.loads(text)
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
        if _is_gzip(f):  # progress over the compressed bytes
            try:
                with gzip.GzipFile(fileobj=_Counted(f, bar), mode="rb") as z:
                    yield from _stream(z, name, reader, chunk, None)
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise ValueError(f"{name}: not a readable gzip file ({exc})") from None
        else:
            yield from _stream(f, name, reader, chunk, bar)
    finally:
        bar.close()


def _read_path(
    path: str, reader: _Reader, chunk: int | None, progress: bool | None, workers: int
) -> Iterator[LogprobBatch]:
    if workers > 1:
        from ._parallel import read_ranges

        plan = read_ranges(path, reader, chunk, progress, workers)
        if plan is not None:
            yield from plan
            return
    with open(path, "rb", buffering=READ_BUFFER) as raw:
        yield from _read_file(raw, path, reader, chunk, progress)


def _file_name(f: Any) -> str:
    name = getattr(f, "name", None)
    return name if isinstance(name, str) else "<file>"


def _batches(source: Any, reader: _Reader, chunk: int | None, progress: Any, workers: int):
    """The batches of a source, each ending at a record, then the end-of-source checks."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        yield from _read_path(name, reader, chunk, progress, workers)
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
    last = reader.take()
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
) -> LogprobBatch | Iterator[LogprobBatch]:
    """Read token log-probabilities from model API outputs into flat arrays.

    Parameters
    ----------
    source : path, file object, dict, list of dicts, or a Hugging Face ``generate`` output
        A path (``str`` or ``os.PathLike``) to a JSONL file (one response per line), a JSON
        file (one response, or an array of them), either of them gzip-compressed; an open file
        object (text or binary) holding the same; already-parsed responses (a dict or a list
        of dicts); or the output of ``model.generate(..., return_dict_in_generate=True,
        output_logits=True)`` (or a dict with ``sequences`` and ``logits`` or ``scores``).
        Batch-API lines (OpenAI ``{"response": {"body": ...}}``, Gemini and Vertex
        ``{"response": ...}``) are unwrapped.
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
        Processes decoding a JSONL file given by its path in parallel, each a range of
        lines; the result is the same as with one process, in file order. Gzip files (a
        stream cannot be split), JSON documents and other sources are read by this process.

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
    pipe works), each line decoded into typed msgspec schemas in one pass, the values
    packed into growing numpy arrays, so memory is the result (about 9 bytes per value) and
    not the text; with ``chunk_tokens``, one chunk. A JSON
    document (an array of responses, or one object over many lines) is parsed whole, as any
    JSON parser must; write big outputs as JSONL. ``errors="skip"`` skips records: a file
    that is not JSON at all, or a JSON document that does not parse, always raises.

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
    reader = _Reader(format, errors, top_k, eos_token_id)
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
