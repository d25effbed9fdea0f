"""OpenAI streaming responses: ``chat.completion.chunk`` records joined into their sequences.

A streamed chat completion is written as one chunk a line: all of them carry the ``id`` of
their stream, and each choice of a chunk (by ``index``) a few more tokens in
``logprobs.content`` (a role-only first chunk and the chunk of the ``finish_reason`` have
``logprobs: null``). A choice's sequence is its tokens of every chunk, in order. Chunks of
several streams may be interleaved, as concurrent requests are logged.

A stream ends when every choice it has shown has its ``finish_reason``, with its chunk of no
choices (the ``usage`` of ``stream_options.include_usage``), or with the source. Ended streams
go to the builder in the order of their first chunks, the ``record`` of their sequences being
that chunk's; a stream blocks those that began after it until it ends (memory: the tokens of
the streams open at once). The ids of ended streams are kept (a short string a stream), so
that a chunk with tokens arriving after its stream ended is an error, not a new sequence.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from ._formats import entries
from ._schema import RecordError, got

CHUNK = "chat.completion.chunk"


def is_chunk(resp: Any) -> bool:
    """Whether an OpenAI-shaped response is a streaming chunk (``delta``, not ``message``)."""
    if resp.object == CHUNK:
        return True
    return resp.object is UNSET and any(c.delta is not UNSET for c in resp.choices)


class _Stream:
    __slots__ = ("finished", "ids", "record", "tokens")

    def __init__(self, record: int) -> None:
        self.record = record  # the record of the stream's first chunk
        self.tokens: dict[int, list] = {}  # per choice index: its ChatEntry list
        self.ids: dict[int, list] = {}  # per choice index: vLLM token ids (-1: not given)
        self.finished: set[int] = set()  # the choices that had their finish_reason

    def done(self) -> bool:
        return len(self.finished) == len(self.tokens) > 0

    def sequences(self) -> list:
        out = []
        for index in sorted(self.tokens):
            ids = self.ids.get(index)
            out.append((index, self.tokens[index], ids if ids and max(ids) >= 0 else None))
        return out


class Streams:
    """The open streams of a source; :meth:`add` takes a chunk and returns the streams it
    ended, as ``(record, sequences)`` for ``Builder.add``."""

    def __init__(self) -> None:
        self.open: dict[Any, _Stream] = {}  # by id, in the order of their first chunks
        self.ended: set = set()
        self.unfinished = 0  # streams ended by the source, some choice without finish_reason

    def add(self, record: int, resp: Any) -> list:
        key = resp.id
        if key is UNSET or key is None:
            key = None  # chunks without an id: one stream
        elif not isinstance(key, str):
            raise RecordError("id", f"must be a string, got {got(key)}")
        parts = [_choice(choice, j) for j, choice in enumerate(resp.choices)]
        if key in self.ended:
            if any(tokens for _, tokens, _, _ in parts):
                raise RecordError(
                    "id",
                    f"{key!r}: this chunk holds tokens of a stream that has ended (every "
                    f"choice had its finish_reason)",
                )
            return []
        stream = self.open.get(key)
        if stream is None:
            if not parts:
                return []  # the usage of a stream not seen: no tokens
            stream = self.open[key] = _Stream(record)
        for index, tokens, ids, finished in parts:
            seen = stream.tokens.setdefault(index, [])
            if ids is not None or index in stream.ids:
                known = stream.ids.setdefault(index, [-1] * len(seen))
                known += ids if ids is not None else [-1] * len(tokens)
            seen += tokens
            if finished:
                stream.finished.add(index)
        if not parts:  # the chunk of no choices (usage) ends its stream
            stream.finished.update(stream.tokens)
        return self._ended()

    def _ended(self) -> list:
        """The streams that ended, up to the first still open."""
        out = []
        while self.open:
            key, stream = next(iter(self.open.items()))
            if not stream.done():
                break
            del self.open[key]
            self.ended.add(key)
            out.append((stream.record, stream.sequences()))
        return out

    def close(self) -> list:
        """At the end of the source: every open stream, ended or not."""
        out = []
        for key, stream in self.open.items():
            self.unfinished += not stream.done()
            self.ended.add(key)
            out.append((stream.record, stream.sequences()))
        self.open.clear()
        return out


def _choice(choice: Any, j: int) -> tuple:
    """``(index, tokens, ids, finished)`` of one choice of a chunk, checked."""
    path = f"choices[{j}]"
    index = j if choice.index is UNSET else choice.index
    lp = choice.logprobs
    tokens: list = []
    if lp is None or lp is UNSET:
        delta = choice.delta
        if isinstance(delta, dict) and (delta.get("content") or delta.get("refusal")):
            state = "is null" if lp is None else "is missing"
            raise RecordError(f"{path}.logprobs", f"{state}: the request did not ask for logprobs")
    else:
        content = lp.content
        if (content is None or content is UNSET) and lp.refusal not in (None, UNSET):
            content = lp.refusal
        if content is not None and content is not UNSET:
            tokens = content
    ids = choice.token_ids
    if ids is None or ids is UNSET:
        ids = None
    elif len(ids) != len(tokens):
        raise RecordError(
            f"{path}.token_ids", f"has {entries(len(ids))} but the logprobs {len(tokens)}"
        )
    finished = choice.finish_reason not in (None, UNSET)
    return index, tokens, ids, finished
