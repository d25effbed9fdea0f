"""``LogprobBatch``, the flat record the readers return, and the builder that fills it.

The builder streams: each record's values are taken into columns as it is added (C doubles,
interned codes), packed every few thousand tokens into numpy buffers that grow by doubling in
place (``ndarray.resize``) and are trimmed in place at the end, so the result arrays are the
buffers themselves and no second copy of the data is ever made. Token strings are interned:
each distinct string is stored once and the buffers hold int32 codes into the table until
the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core_cpu import io_add_tokens
from .._record import Record
from ._formats import _text_or_id

_ARRAYS = (
    "token_logprob",
    "offsets",
    "top_logprobs",
    "tokens",
    "top_tokens",
    "token_ids",
    "top_token_ids",
    "token_bytes",
    "prompt",
    "record",
    "choice",
    "skipped_records",
    "file",
    "skipped_files",
)
_SCALARS = ("format", "skipped")
_FIELDS = _ARRAYS + _SCALARS
_ID_FIELDS = ("token_ids", "top_token_ids")


class LogprobBatch(Record):
    """Token log-probabilities read from model outputs: an immutable record of flat arrays.

    ``T`` tokens in ``S`` sequences (one per choice or candidate, plus one per vLLM prompt),
    sequence ``s`` being rows ``offsets[s]:offsets[s+1]``; ``k`` is the widest top list met.

    Attributes
    ----------
    format : str
        The format read: ``"openai_chat"``, ``"openai_completions"``, ``"vllm_chat"``,
        ``"vllm_completions"``, ``"gemini"`` or ``"huggingface"``.
    token_logprob : float64 ``[T]``
        Log-probability of each token. ``NaN`` where the provider gives ``null`` (the first
        token of a prompt has no log-probability); ``-inf`` where it gives ``-inf`` or a
        sentinel ``<= -9999`` (OpenAI and vLLM write ``-9999.0`` for "below the top 20").
        A value above 0 by at most 1e-5 is rounding and reads as 0; more is an error.
    offsets : int64 ``[S+1]``
        CSR offsets: sequence ``s`` is tokens ``offsets[s]`` to ``offsets[s+1]``.
    top_logprobs : float64 ``[T, k]``
        The alternatives the provider lists, best first (``top_logprobs[:, 0]`` is the most
        likely token). Lists are kept whole: where OpenAI legacy completions or vLLM add the
        sampled token to a top-k list it did not make (k+1 entries), it stays, last. ``NaN``
        pads shorter lists and rows without a list; sentinels are ``-inf`` as above.
    tokens : ``[T]``
        The tokens as text (an object array of ``str``; ``None`` where only an id is known),
        or, when the source gives ids and no text at all, the int64 ids.
    top_tokens : ``[T, k]``
        The tokens of ``top_logprobs``, of the same kind as ``tokens`` (``None`` / ``-1``
        where absent).
    token_ids, top_token_ids : int64 ``[T]``, ``[T, k]``
        Only when the source gives token ids (vLLM ``prompt_logprobs`` keys and
        ``prompt_token_ids``, ``"token_id:N"`` tokens of ``return_tokens_as_token_ids``,
        Gemini ``tokenId``, Hugging Face); ``-1`` where unknown.
    token_bytes : object ``[T]``
        Only when the source gives them (OpenAI chat ``bytes``): the UTF-8 bytes of each token
        (``None`` where not given), which rebuild characters split across tokens; see
        :meth:`text`.
    prompt : bool ``[T]``
        True for prompt tokens (vLLM ``prompt_logprobs``), False for generated ones.
    record, choice : int64 ``[S]``
        Where each sequence comes from: the 0-based record (JSONL line number - 1, or the
        position in a JSON array or list) and the choice / candidate index; ``-1`` for a
        sequence that holds a vLLM prompt. The sequences of joined streaming chunks have the
        record of their stream's first chunk.
    file : int64 ``[S]``
        Only when many files are read (a list of paths, or a glob pattern): the index of each
        sequence's file in that list (the pattern's matches in sorted order); ``record``
        counts within the file.
    skipped : int
        Records skipped as malformed with ``errors="skip"``; ``skipped_records`` (int64) says
        which (and ``skipped_files``, of many files, in which file).

    Fields that the source does not give do not exist: reading one raises ``AttributeError``
    saying so. The record is also a read-only mapping of the fields it has.
    """

    __slots__ = ()
    _FIELDS = _FIELDS

    def _missing(self, name: str) -> str:
        fmt = self._fields.get("format")
        if name in _ID_FIELDS:
            return f"LogprobBatch has no {name}: this {fmt} source gives no token ids"
        if name == "token_bytes":
            return f"LogprobBatch has no token_bytes: this {fmt} source gives no token bytes"
        if name in ("file", "skipped_files"):
            return f"LogprobBatch has no {name}: it was read from one source, not many files"
        return super()._missing(name)

    @property
    def n_tokens(self) -> int:
        """Number of tokens ``T``."""
        return int(self._fields["token_logprob"].shape[0])

    @property
    def n_sequences(self) -> int:
        """Number of sequences ``S``."""
        return int(self._fields["offsets"].shape[0] - 1)

    @property
    def k(self) -> int:
        """Width of ``top_logprobs``: the longest top list in the source (0 if none)."""
        return int(self._fields["top_logprobs"].shape[1])

    def top1_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Token-level calibration pairs: the probability of each token's top-1 alternative,
        and whether that alternative is the token produced (teacher-forced prompt tokens and
        sampled tokens alike); tokens without alternatives are left out. The rule of
        ``logcal report``.

        Examples
        --------
        >>> import logcal
        >>> batch = logcal.read_logprobs(logcal.io.demo_path("pokemon_logprobs.jsonl"))
        >>> confidence, correct = batch.top1_pairs()
        >>> confidence.shape == correct.shape
        True
        """
        if self.k == 0:
            return np.empty(0), np.empty(0, bool)
        top = self.top_logprobs[:, 0]
        has_top = np.isfinite(top)
        return np.exp(top[has_top]), (self.tokens == self.top_tokens[:, 0])[has_top].astype(bool)

    def text(self, s: int) -> str:
        """The text of sequence ``s``, rebuilt from the token bytes where the source gives them.

        A character split over several tokens (each token's ``bytes`` holding part of its
        UTF-8 encoding) comes out whole; bytes that never complete a character become U+FFFD.
        """
        tokens = self._fields["tokens"]
        if tokens.dtype != object:
            raise ValueError("tokens are token ids here; decode them with the model's tokenizer")
        lo, hi = (int(x) for x in self._fields["offsets"][s : s + 2])
        raw = self._fields.get("token_bytes")
        parts = []
        for t in range(lo, hi):
            b = None if raw is None else raw[t]
            if b is None:
                tok = tokens[t]
                b = b"" if tok is None else tok.encode("utf-8")
            parts.append(b)
        return b"".join(parts).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return (
            f"LogprobBatch(format={self._fields['format']!r}, n_sequences={self.n_sequences}, "
            f"n_tokens={self.n_tokens}, k={self.k}, skipped={self._fields['skipped']})"
        )


# --- the builder --------------------------------------------------------------------------

# Tokens packed into numpy at a time: enough to spread the cost of a packing's twenty-odd
# numpy calls; the columns waiting for it are C arrays (about 100 bytes a token with top-5).
_FLUSH_TOKENS = 4096
# OpenAI and vLLM write -9999.0 for a log-probability they do not report; any value at or
# below this (and -inf) reads as -inf: "less likely than anything listed".
SENTINEL = -9999.0


class _Grow:
    """A numpy buffer of rows that doubles in place; trimmed in place by :meth:`finish`."""

    __slots__ = ("arr", "fill", "n")

    def __init__(self, dtype: Any, fill: Any, width: int | None = None, cap: int = 1024):
        shape = (cap,) if width is None else (cap, width)
        self.arr = np.full(shape, fill, dtype=dtype)
        self.fill = fill
        self.n = 0

    def reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = self.arr.shape[0]
        if need <= cap:
            return
        new_cap = max(need, 2 * cap)
        old_size = self.arr.size
        # realloc in place (glibc moves large blocks with mremap, without copying)
        self.arr.resize((new_cap, *self.arr.shape[1:]), refcheck=False)
        self.arr.reshape(-1)[old_size:] = self.fill

    def widen(self, width: int) -> None:
        if width <= self.arr.shape[1]:
            return
        wider = np.full((self.arr.shape[0], width), self.fill, dtype=self.arr.dtype)
        wider[: self.n, : self.arr.shape[1]] = self.arr[: self.n]
        self.arr = wider

    def finish(self) -> np.ndarray:
        self.arr.resize((self.n, *self.arr.shape[1:]), refcheck=False)
        return self.arr


class _Interner(dict):
    """Codes of distinct values, 0, 1, ... in order of appearance (``None``, no value, is -1
    and never a key: a dict of ``str`` keys only is looked up by the faster way).

    A dict that adds a value it does not hold, so that only a new value costs a Python call
    (``io_add_tokens`` looks the others up in C). ``convert`` turns a key into
    the value kept (chat ``bytes`` are decoded as tuples, which hash, and kept as ``bytes``).
    Of token strings it also knows which are vLLM's ``"token_id:N"`` renderings.
    """

    def __init__(self, convert: Any = None) -> None:
        super().__init__()
        self.values: list = []
        self.table = bytearray()  # io_add_tokens' cache of the codes of str values
        self.convert = convert
        self.id_of: list = []  # per code: N of a "token_id:N" string, else -1
        self.has_ids = False
        self._id_table = np.empty(0, dtype=np.int64)

    def __missing__(self, value: Any) -> int:
        code = self[value] = len(self.values)
        self.values.append(value if self.convert is None else self.convert(value))
        tid = _text_or_id(value)[1] if type(value) is str else None
        self.id_of.append(-1 if tid is None else tid)
        self.has_ids = self.has_ids or tid is not None
        return code

    def split_ids(self, codes: np.ndarray) -> np.ndarray | None:
        """For codes of token strings: the token ids of ``"token_id:N"`` strings (their codes
        become -1, no text), or None if there are none."""
        if not self.has_ids:
            return None
        if len(self._id_table) < len(self.id_of):  # only the codes added since the last call
            tail = np.asarray(self.id_of[len(self._id_table) :], dtype=np.int64)
            self._id_table = np.concatenate([self._id_table, tail])
        ids = self._id_table[np.maximum(codes, 0)]
        ids[codes < 0] = -1
        codes[ids >= 0] = -1
        return ids


# The token columns of one batch of records, as io_add_tokens fills them (the compiled loop of
# python/logcal/_bindings/cpu_io.cpp): bytearrays in its order, and the dtype of each.
_COLUMNS = (
    ("lp", np.float64),  # each token's log-probability
    ("code", np.int32),  # its text, a code of the strings interner
    ("id", np.int64),  # its id (-1: not given)
    ("bcode", np.int32),  # its bytes, a code of the bytes interner
    ("prompt", np.bool_),  # a prompt token
    ("width", np.int64),  # the length of its top list
    ("top_lp", np.float64),  # the entries of the top lists, one list after the other
    ("top_code", np.int32),
    ("top_id", np.int64),
    ("seq_len", np.int64),  # per sequence: its tokens, record and choice
    ("seq_rec", np.int64),
    ("seq_choice", np.int64),
)


def _new_columns() -> tuple:
    return tuple(bytearray() for _ in _COLUMNS)


class Builder:
    """Accumulates sequences of tokens; :meth:`finish` returns the :class:`LogprobBatch`.

    A sequence is ``(choice, tokens, ids)`` as the parsers in ``_formats`` return them: a list
    of :class:`~._schema.ChatEntry`, or of ``(logprob, text, id, bytes, is_prompt, tops)``
    tuples; ``text``, ``id`` and ``bytes`` may be ``None``. Each record's values are taken
    into columns by one compiled call as it is added (``io_add_tokens``: no Python work per
    token), so its decoded objects are freed at once and their memory reused by the next
    record's; the columns are packed into the numpy buffers every few thousand tokens.
    """

    def __init__(self) -> None:
        self.strings = _Interner()
        self.bytes_ = _Interner(convert=bytes)
        self.lp = _Grow(np.float64, np.nan)
        self.code = _Grow(np.int32, -1)
        self.prompt = _Grow(np.bool_, False)
        self.top_lp = _Grow(np.float64, np.nan, width=0)
        self.top_code = _Grow(np.int32, -1, width=0)
        self.ids: _Grow | None = None
        self.top_ids: _Grow | None = None
        self.bcode: _Grow | None = None
        self.lengths = _Grow(np.int64, 0)
        self.record = _Grow(np.int64, -1)
        self.choice = _Grow(np.int64, -1)
        self.skipped: list[int] = []
        self.n_tokens = 0
        self.has_text = False
        self._cols = _new_columns()

    @property
    def size(self) -> int:
        """Tokens added so far, packed or not."""
        return self.n_tokens + len(self._cols[0]) // 8

    # -- input ---------------------------------------------------------------------------

    def add(self, record: int, sequences: list) -> None:
        """Add the sequences ``[(choice, tokens, ids), ...]`` of one record."""
        waiting = io_add_tokens(self._cols, record, sequences, self.strings, self.bytes_)
        if waiting >= _FLUSH_TOKENS:
            self._flush()

    def skip(self, record: int) -> None:
        self.skipped.append(record)

    def _ensure_ids(self) -> None:
        if self.ids is None:
            self.ids = _Grow(np.int64, -1, cap=self.lp.arr.shape[0])
            self.ids.n = self.lp.n
            self.top_ids = _Grow(np.int64, -1, width=self.top_lp.arr.shape[1])
            self.top_ids.reserve(self.lp.arr.shape[0])
            self.top_ids.n = self.lp.n

    def _ensure_bytes(self) -> None:
        if self.bcode is None:
            self.bcode = _Grow(np.int32, -1, cap=self.lp.arr.shape[0])
            self.bcode.n = self.lp.n

    def _token_buffers(self) -> list:
        """The per-token buffers in use (ids and bytes appear with their first value)."""
        bufs = (self.lp, self.code, self.prompt, self.top_lp, self.top_code,
                self.ids, self.top_ids, self.bcode)  # fmt: skip
        return [buf for buf in bufs if buf is not None]

    def _grow_tokens(self, n: int, width: int) -> None:
        """Room for n more tokens, and top lists `width` wide."""
        for buf in self._token_buffers():
            if buf.arr.ndim == 2:
                buf.widen(width)
            buf.reserve(n)

    def _add_sequences(self, lengths: Any, records: Any, choices: Any) -> None:
        for buf, values in ((self.lengths, lengths), (self.record, records),
                            (self.choice, choices)):  # fmt: skip
            buf.reserve(len(values))
            buf.arr[buf.n : buf.n + len(values)] = values
            buf.n += len(values)

    def _flush(self) -> None:
        """Pack the waiting columns into the numpy buffers."""
        columns, self._cols = self._cols, _new_columns()
        if not columns[-1]:  # no sequence
            return
        cols = {name: np.frombuffer(c, dtype) for (name, dtype), c in zip(_COLUMNS, columns)}
        n = len(cols["lp"])
        start = self.lp.n
        stop = start + n
        code = cols["code"]
        ids = cols["id"]
        token_ids = self.strings.split_ids(code)
        if token_ids is not None:
            ids = np.maximum(ids, token_ids)
        widths = cols["width"]
        top_code = cols["top_code"]
        top_ids = cols["top_id"]
        top_token_ids = self.strings.split_ids(top_code)
        if top_token_ids is not None:
            top_ids = np.maximum(top_ids, top_token_ids)
        self.has_text = self.has_text or bool((code >= 0).any() or (top_code >= 0).any())
        if (ids >= 0).any() or (top_ids >= 0).any():
            self._ensure_ids()
        bcode = cols["bcode"]
        if (bcode >= 0).any():
            self._ensure_bytes()
        width = max(int(widths.max()) if n else 0, self.top_lp.arr.shape[1])
        self._grow_tokens(n, width)
        self.lp.arr[start:stop] = _logprobs(cols["lp"])
        self.code.arr[start:stop] = code
        self.prompt.arr[start:stop] = cols["prompt"]
        if self.ids is not None:
            self.ids.arr[start:stop] = ids
        if self.bcode is not None:
            self.bcode.arr[start:stop] = bcode
        if top_code.size:
            top_lp = _logprobs(cols["top_lp"])
            k = int(widths[0])
            if (widths == k).all():  # top lists all as long: a block of rows
                rows = (slice(start, stop), slice(0, k))
                top_lp, top_code, top_ids = (a.reshape(n, k) for a in (top_lp, top_code, top_ids))
            else:
                firsts = np.cumsum(widths) - widths
                rows = (np.repeat(np.arange(start, stop), widths),
                        np.arange(top_code.size) - np.repeat(firsts, widths))  # fmt: skip
            self.top_lp.arr[rows] = top_lp
            self.top_code.arr[rows] = top_code
            if self.top_ids is not None:
                self.top_ids.arr[rows] = top_ids
            self._sort_tops(start, stop)
        for buf in self._token_buffers():
            buf.n = stop
        self._add_sequences(cols["seq_len"], cols["seq_rec"], cols["seq_choice"])
        self.n_tokens = stop

    def _sort_tops(self, start: int, stop: int) -> None:
        """Top lists best first. Providers list them so, except for a sampled token appended or
        prepended to the top k (vLLM): a stable sort restores the order, keeping ties as given;
        ``NaN`` (no log-probability) sorts after every number, then the padding."""
        lp = self.top_lp.arr[start:stop]
        if lp.shape[1] < 2:
            return
        key = np.where(np.isnan(lp), -np.inf, lp)
        pad = np.isnan(lp)
        rising = (key[:, 1:] > key[:, :-1]) & ~pad[:, 1:]
        bad = np.flatnonzero(rising.any(axis=1))
        if bad.size == 0:
            return
        # padding last, then by log-probability descending, stable
        order = np.lexsort((np.broadcast_to(np.arange(lp.shape[1]), key[bad].shape),
                            -key[bad], pad[bad]))  # fmt: skip
        for buf in (self.top_lp, self.top_code, self.top_ids):
            if buf is not None:
                part = buf.arr[start:stop]
                part[bad] = np.take_along_axis(part[bad], order, axis=1)

    def add_arrays(
        self,
        record: int,
        choices: np.ndarray,
        lengths: np.ndarray,
        logprob: np.ndarray,
        ids: np.ndarray,
        top_logprobs: np.ndarray,
        top_ids: np.ndarray,
    ) -> None:
        """Append whole arrays of id tokens (the Hugging Face reader)."""
        self._flush()
        self._ensure_ids()
        n = len(logprob)
        start, stop = self.lp.n, self.lp.n + n
        width = max(top_logprobs.shape[1], self.top_lp.arr.shape[1])
        self._grow_tokens(n, width)
        k = top_logprobs.shape[1]
        self.lp.arr[start:stop] = logprob
        self.ids.arr[start:stop] = ids
        self.top_lp.arr[start:stop, :k] = top_logprobs
        self.top_ids.arr[start:stop, :k] = top_ids
        # The slots of text codes, bytes and the prompt flag keep their fill values.
        for buf in self._token_buffers():
            buf.n = stop
        self._add_sequences(lengths, np.full(len(lengths), record), choices)
        self.n_tokens = stop

    # -- output --------------------------------------------------------------------------

    def finish(self, fmt: str) -> LogprobBatch:
        return unpack(self.packed(fmt))

    def packed(self, fmt: str) -> dict:
        """The fields of the batch, token texts and bytes as int32 codes into lists of their
        distinct values (``strings``, ``bytes``): what a worker process sends back, a few
        arrays to pickle rather than an object per token. :func:`unpack` makes the batch."""
        self._flush()
        lengths = self.lengths.finish()
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        fields: dict[str, Any] = dict(
            format=fmt,
            token_logprob=self.lp.finish(),
            offsets=offsets,
            top_logprobs=self.top_lp.finish(),
            prompt=self.prompt.finish(),
            record=self.record.finish(),
            choice=self.choice.finish(),
            skipped=len(self.skipped),
            skipped_records=np.asarray(self.skipped, dtype=np.int64),
        )
        code, top_code = self.code.finish(), self.top_code.finish()
        if self.ids is not None:
            fields["token_ids"] = self.ids.finish()
            fields["top_token_ids"] = self.top_ids.finish()
        if self.has_text or self.ids is None:
            fields.update(tokens=code, top_tokens=top_code, strings=self.strings.values)
        else:  # ids only: the ids are the tokens
            fields["tokens"] = fields["token_ids"]
            fields["top_tokens"] = fields["top_token_ids"]
        if self.bcode is not None:
            fields.update(token_bytes=self.bcode.finish(), bytes=self.bytes_.values)
        return fields


def unpack(fields: dict) -> LogprobBatch:
    """The :class:`LogprobBatch` of :meth:`Builder.packed` fields."""
    fields = dict(fields)
    strings = fields.pop("strings", None)
    if strings is not None:
        for name in ("tokens", "top_tokens"):
            fields[name] = _lookup(strings, fields[name])
    values = fields.pop("bytes", None)
    if values is not None:
        fields["token_bytes"] = _lookup(values, fields["token_bytes"])
    return LogprobBatch(**fields)


def _lookup(values: list, codes: np.ndarray) -> np.ndarray:
    """The values of codes (-1: ``None``) as an object array."""
    table = np.empty(len(values) + 1, dtype=object)
    table[: len(values)] = values  # the last slot stays None, for code -1
    return table[codes]


def _logprobs(values: np.ndarray) -> np.ndarray:
    """Sentinels (``<= -9999``) to ``-inf``, rounding noise above 0 to 0 (the schemas allow
    no more than ``POSITIVE_SLACK``); ``NaN`` (``null``) stays."""
    values[values <= SENTINEL] = -np.inf
    values[values > 0.0] = 0.0
    return values
