"""``read_logprobs``: sources (paths, file objects, parsed records), streaming and errors."""

from __future__ import annotations

import gzip
import json
import os
import warnings
from collections.abc import Iterable
from typing import Any

from . import _formats as F
from ._batch import Builder, LogprobBatch
from ._hf import is_hf, read_hf

# Files at least this big get a progress bar unless progress=False.
PROGRESS_BYTES = 64 * 1024 * 1024
_PROGRESS_STEP = 1 << 20  # update the bar every MiB

_MAIN_KEY = {
    "openai_chat": ("choices", "an OpenAI chat completion"),
    "openai_completions": ("choices", "an OpenAI completion"),
    "vllm_chat": ("choices", "a vLLM chat completion"),
    "vllm_completions": ("choices", "a vLLM completion"),
    "gemini": ("candidates", "a Gemini generateContent response"),
}


class _Reader:
    """Parses records one at a time into a :class:`Builder`; remembers what was skipped."""

    def __init__(self, fmt: str, errors: str, top_k: int, eos_token_id: Any) -> None:
        self.explicit = fmt != "auto"
        self.fmt = None if fmt == "auto" else fmt
        self.skip = errors == "skip"
        self.top_k = top_k
        self.eos_token_id = eos_token_id
        self.builder = Builder()
        self.n_records = 0
        self.first_error: str | None = None

    def fail(self, index: int, message: str) -> None:
        if not self.skip:
            raise ValueError(message)
        self.builder.skip(index)
        if self.first_error is None:
            self.first_error = message

    def bad_line(self, index: int, message: str) -> None:
        """A line that is not a JSON record at all."""
        self.n_records += 1
        self.fail(index, message)

    def record(self, rec: Any, index: int, where: str) -> None:
        self.n_records += 1
        try:
            # transformers' GenerateOutput is a dict too (an OrderedDict of its fields)
            if self.fmt in (None, "huggingface") and is_hf(rec):
                self._hf(rec, index)
                return
            if not isinstance(rec, dict):
                raise F.RecordError("", f"a record must be a JSON object, got {F.show(rec)}")
            inner, base = F.unwrap(rec)
            fmt = self._format(inner, base)
            self.builder.add(index, F.PARSERS[fmt](inner, base))
        except F.RecordError as exc:
            self.fail(index, f"{where}{exc}")

    def _hf(self, rec: Any, index: int) -> None:
        if self.fmt is None:
            self.fmt = "huggingface"
        try:
            arrays = read_hf(rec, top_k=self.top_k, eos_token_id=self.eos_token_id)
        except ValueError as exc:
            raise F.RecordError("", str(exc)) from None
        self.builder.add_arrays(index, *arrays)

    def _format(self, rec: dict, base: str) -> str:
        if self.explicit:
            if self.fmt == "huggingface":
                raise F.RecordError(
                    "",
                    f"this record is not a Hugging Face generate output (no 'sequences' with "
                    f"'logits' or 'scores'); got keys {sorted(rec)[:8]}",
                )
            key, what = _MAIN_KEY[self.fmt]
            if key not in rec:
                raise F.RecordError(
                    f"{base}{key}", f"is missing: format={self.fmt!r} expects {what}"
                )
            return self.fmt
        found = F.detect(rec)
        if found is None and self.fmt is not None:
            return self.fmt  # its parser says which field is wrong
        if found is None:
            raise F.RecordError(
                "",
                f"cannot tell the format of this record: {F.EXPECTED}; got keys {sorted(rec)[:8]}",
            )
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
        raise F.RecordError(
            "", f"this is a {found} record, but the source began with {self.fmt} records"
        )

    def finish(self, name: str) -> LogprobBatch:
        b = self.builder
        if self.n_records == 0:
            raise ValueError(f"{name} holds no records")
        if len(b.skipped) == self.n_records:
            raise ValueError(
                f"none of the {self.n_records} records of {name} could be read; the first "
                f"error: {self.first_error}"
            )
        if b.skipped:
            warnings.warn(
                f"read_logprobs skipped {len(b.skipped)} malformed record(s) of "
                f"{self.n_records} in {name}; the first: {self.first_error}",
                stacklevel=3,
            )
        return b.finish(self.fmt)


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

    def advance(self, n: int, position: int | None = None) -> None:
        if self.bar is None:
            return
        self.done = position if position is not None else self.done + n
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


def _stream(f: Any, name: str, reader: _Reader, bar: _Progress, raw: Any) -> None:
    """JSONL line by line; a JSON document (array, or one object over many lines) whole."""
    lineno = 0
    pos_of = raw.tell if raw is not None else None
    lines = iter(f)  # once: the second loop goes on where the first stopped
    for line in lines:
        lineno += 1
        bar.advance(len(line), pos_of() if pos_of is not None else None)
        if lineno == 1:
            line = line.removeprefix(b"\xef\xbb\xbf" if isinstance(line, bytes) else "\ufeff")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[:1] in ("[", b"["):
            _document(line, f, name, lineno, reader)
            return
        try:
            rec = json.loads(line)
        except ValueError as exc:
            # An object that goes on past its first line is a pretty-printed document.
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            if isinstance(exc, json.JSONDecodeError) and exc.pos >= len(text.rstrip()):
                _document(line, f, name, lineno, reader)
                return
            reader.bad_line(lineno - 1, f"{name}:{lineno}: {_json_error(exc)}")
            break
        reader.record(rec, lineno - 1, f"{name}:{lineno}: ")
        break
    for line in lines:
        lineno += 1
        if pos_of is not None:
            bar.advance(0, pos_of())
        else:
            bar.advance(len(line))
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            reader.bad_line(lineno - 1, f"{name}:{lineno}: {_json_error(exc)}")
            continue
        reader.record(rec, lineno - 1, f"{name}:{lineno}: ")


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


def _read_path(path: str, reader: _Reader, progress: bool | None) -> None:
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        bar = _Progress(progress, size, os.path.basename(path))
        try:
            if raw.peek(2)[:2] == b"\x1f\x8b":  # gzip: progress over the compressed bytes
                with gzip.GzipFile(fileobj=raw) as f:
                    _stream(f, path, reader, bar, raw)
            else:
                _stream(raw, path, reader, bar, None)
        finally:
            bar.close()


def _read_file(f: Any, reader: _Reader, progress: bool | None) -> str:
    name = getattr(f, "name", None)
    name = name if isinstance(name, str) else "<file>"
    bar = _Progress(progress, _size(f), os.path.basename(name))
    try:
        _stream(f, name, reader, bar, None)
    finally:
        bar.close()
    return name


# --- the public function ---------------------------------------------------------------------


def read_logprobs(
    source: Any,
    *,
    format: str = "auto",
    errors: str = "raise",
    progress: bool | None = None,
    top_k: int = 5,
    eos_token_id: Any = None,
) -> LogprobBatch:
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
    JSONL is streamed: one line in memory at a time, the values packed into growing numpy
    arrays, so memory is the result (about 9 bytes per value) and not the text. A JSON
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
    reader = _Reader(format, errors, top_k, eos_token_id)

    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        _read_path(name, reader, progress)
    elif isinstance(source, dict) or is_hf(source):
        name = "the record"
        reader.record(source, 0, "")
    elif hasattr(source, "read"):
        name = _read_file(source, reader, progress)
    elif isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray)):
        name = "the records"
        for i, rec in enumerate(source):
            reader.record(rec, i, f"record {i}: ")
    else:
        raise TypeError(
            f"source must be a path, a file object, a dict, a list of dicts or a Hugging Face "
            f"generate output, got {type(source).__name__}"
        )
    return reader.finish(name)
