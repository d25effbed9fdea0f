"""Typed msgspec schemas of the provider formats: only the fields logcal reads.

One schema serves both kinds of input: ``msgspec.json`` decodes and validates a JSONL line
in one pass, and ``msgspec.convert`` validates an already-parsed record against the same
types. A field that fails becomes a :class:`RecordError` naming its path inside the record
(``choices[0].logprobs.content[3].logprob``) in the words of :func:`record_error`.

Fields read only to tell the formats apart (``message``, ``stop_reason``...) are typed
``Any``; ``UNSET`` marks a field that is absent, as distinct from one that is ``null``.
"""

# msgspec reads these annotations at run time: Union and Optional, not ``X | Y``, which
# Python 3.9 cannot evaluate.
# ruff: noqa: UP007, UP045

from __future__ import annotations

import re
from typing import Annotated, Any, Optional, Union

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# A log-probability above 0 by no more than this is rounding noise and reads as 0.
POSITIVE_SLACK = 1e-5
MAX_ID = 2**63 - 1  # token ids are stored as int64

LogProb = Annotated[float, Meta(le=POSITIVE_SLACK)]
Byte = Annotated[int, Meta(ge=0, le=255)]
TokenId = Annotated[int, Meta(ge=0, le=MAX_ID)]
# A choice's or candidate's index: stored as int64, and -1 marks a vLLM prompt's sequence.
Index = Annotated[int, Meta(ge=0, le=MAX_ID)]
# A token's UTF-8 bytes: a tuple, which hashes, so the builder interns it as it is.
Bytes = Optional[tuple[Byte, ...]]


class RecordError(Exception):
    """A malformed field: ``path`` inside the record and what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}" if path else problem)
        self.path = path
        self.problem = problem


# gc=False: these objects hold no cycles, and millions of them would otherwise be scanned by
# every garbage collection of a large read.
class _Node(Struct, gc=False):
    pass


# --- OpenAI chat and legacy completions, and vLLM's servers of both ----------------------


class TopEntry(_Node):
    token: str
    logprob: LogProb
    # validated only (a list: msgspec makes a tuple of unknown length from a list)
    bytes: Optional[list[Byte]] = None


class ChatEntry(_Node):
    token: str
    logprob: LogProb
    bytes: Bytes = None
    top_logprobs: Optional[list[TopEntry]] = None


class PromptEntry(_Node):
    logprob: LogProb
    decoded_token: Optional[str] = None


# vLLM prompt_logprobs: [null, {"791": {"logprob", "rank", "decoded_token"}}, ...]
PromptLogprobs = Union[list[Optional[dict[str, PromptEntry]]], None, UnsetType]
TokenIds = Union[list[TokenId], None, UnsetType]


class ChoiceLogprobs(_Node):
    # chat
    content: Union[list[ChatEntry], UnsetType, None] = UNSET
    refusal: Union[list[ChatEntry], UnsetType, None] = UNSET
    # legacy completions
    tokens: Union[list[str], UnsetType] = UNSET
    token_logprobs: Union[list[Optional[LogProb]], UnsetType] = UNSET
    top_logprobs: Union[list[Optional[dict[str, LogProb]]], UnsetType, None] = UNSET


class Choice(_Node):
    index: Union[Index, UnsetType] = UNSET
    logprobs: Union[ChoiceLogprobs, UnsetType, None] = UNSET
    message: Any = UNSET
    text: Any = UNSET
    delta: Any = UNSET
    finish_reason: Any = UNSET
    stop_reason: Any = UNSET
    prompt_logprobs: PromptLogprobs = UNSET
    prompt_token_ids: TokenIds = UNSET
    token_ids: TokenIds = UNSET


class OpenAIResponse(_Node):
    choices: list[Choice]
    id: Any = UNSET
    object: Any = UNSET
    prompt_logprobs: PromptLogprobs = UNSET
    prompt_token_ids: TokenIds = UNSET
    kv_transfer_params: Any = UNSET


# --- Gemini generateContent (REST camelCase, or the Python SDK's snake_case) -------------
# proto3 JSON leaves out fields at their default value: a missing logProbability is 0.0
# (a certain token), a missing token "" and a missing index 0.


class GeminiEntry(_Node):
    token: str = ""
    logProbability: Union[LogProb, UnsetType] = UNSET
    log_probability: Union[LogProb, UnsetType] = UNSET
    tokenId: Union[TokenId, UnsetType, None] = UNSET
    token_id: Union[TokenId, UnsetType, None] = UNSET


class GeminiTop(_Node):
    candidates: list[GeminiEntry] = []


class LogprobsResult(_Node):
    chosenCandidates: Union[list[GeminiEntry], UnsetType] = UNSET
    chosen_candidates: Union[list[GeminiEntry], UnsetType] = UNSET
    topCandidates: Union[list[GeminiTop], UnsetType] = UNSET
    top_candidates: Union[list[GeminiTop], UnsetType] = UNSET


class Candidate(_Node):
    index: Union[Index, UnsetType] = UNSET
    logprobsResult: Union[LogprobsResult, UnsetType, None] = UNSET
    logprobs_result: Union[LogprobsResult, UnsetType, None] = UNSET


class GeminiResponse(_Node):
    candidates: list[Candidate]


# --- batch-API lines: the response inside ----------------------------------------------------


class _OpenAIBatchResponse(_Node):
    body: OpenAIResponse


class OpenAIBatchLine(_Node):
    response: _OpenAIBatchResponse


class GeminiBatchLine(_Node):
    response: GeminiResponse


# The schema of each kind of record, and the path prefix of the response inside it.
SCHEMAS = {
    "openai": OpenAIResponse,
    "gemini": GeminiResponse,
    "openai_batch": OpenAIBatchLine,
    "gemini_batch": GeminiBatchLine,
}
BASES = {"openai": "", "gemini": "", "openai_batch": "response.body.", "gemini_batch": "response."}
DECODERS = {kind: msgspec.json.Decoder(schema) for kind, schema in SCHEMAS.items()}


def inner(kind: str, typed: Any) -> Any:
    """The response of a record decoded as ``SCHEMAS[kind]``."""
    if kind == "openai_batch":
        return typed.response.body
    if kind == "gemini_batch":
        return typed.response
    return typed


# --- errors -----------------------------------------------------------------------------------

_MISSING = object()

_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}
_EXPECTED = {
    "str": "a string",
    "array": "a list",
    "object": "an object",
    "float": "a number",
    "int": "an integer",
    "null": "null",
}


def show(value: Any) -> str:
    """A short repr of a bad value for an error message."""
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def got(value: Any) -> str:
    """``a string 'abc'``, ``a list [1, 2]``, ``null``: the kind and value of a bad input."""
    if value is None:
        return "null"
    return f"{_KINDS.get(type(value), type(value).__name__)} {show(value)}"


def _lookup(value: Any, steps: list) -> Any:
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_AT = re.compile(r"^(.*?)(?: - at `(?:key` in `)?\$(.*)`)?$", re.S)


def record_error(exc: msgspec.ValidationError, value: Any, base: str) -> RecordError:
    """A msgspec validation error of ``value`` as a :class:`RecordError`: the field's path,
    and what it must be, with the value it holds (looked up in ``value``)."""
    text = str(exc)
    match = _AT.match(text)
    if match is None:  # pragma: no cover - msgspec always says where
        return RecordError("", text)
    problem, where = match.groups()
    where = where or ""
    if "[...]" in where:
        return _in_mapping(where, value, base)
    steps = [name or int(index) for name, index in _STEP.findall(where) if name or index]
    path = base + where if base else where.lstrip(".")
    if "- at `key` in" in text:
        return RecordError(path, f"has a key that is not {_EXPECTED.get('str')}")
    missing = re.match(r"Object missing required field `(.*)`", problem)
    if missing:
        name = missing.group(1)
        return RecordError(f"{path}.{name}" if path else name, "is missing")
    bad = _lookup(value, steps)
    expected = re.match(r"Expected `([^`]*)`", problem)
    if isinstance(bad, float) and bad != bad:
        return RecordError(path, "must be a number, got NaN")
    if expected is None:  # "Number out of range"
        kind = "a token id (an integer >= 0)" if _is_id_field(steps) else "a number in range"
        return RecordError(path, f"must be {kind}, got {show(bad)}")
    names = expected.group(1).split(" | ")
    if "<=" in problem and names == ["float"]:
        return RecordError(path, f"must be a log-probability (<= 0), got {show(bad)}")
    if ">=" in problem or "<=" in problem:  # an integer out of its range
        if steps and steps[-1] == "index":
            return RecordError(path, f"must be an index (an integer >= 0), got {show(bad)}")
        if _is_byte_field(steps):
            return RecordError(path, f"must be an integer in [0, 256), got {show(bad)}")
        return RecordError(path, f"must be a token id (an integer >= 0), got {show(bad)}")
    if _is_byte_field(steps):
        if steps[-1] == "bytes":
            return RecordError(path, f"must be a list of byte values or null, got {got(bad)}")
        return RecordError(path, f"must be an integer in [0, 256), got {show(bad)}")
    if _is_id_field(steps):
        return RecordError(path, f"must be a token id (an integer >= 0), got {show(bad)}")
    what = " or ".join(_EXPECTED.get(name, name) for name in names)
    return RecordError(path, f"must be {what}, got {got(bad)}")


def _in_mapping(where: str, value: Any, base: str) -> RecordError:
    """msgspec writes ``[...]`` for the key of a dict value: find the key, by validating the
    values of that dict one by one as msgspec did, and say where in that value."""
    head, _, _ = where.partition("[...]")
    steps = [name or int(index) for name, index in _STEP.findall(head) if name or index]
    mapping = _lookup(value, steps)
    kind = PromptEntry if "prompt_logprobs" in steps else LogProb
    for key, item in mapping.items():
        try:
            msgspec.convert(item, kind)
        except msgspec.ValidationError as exc:
            return record_error(exc, item, f"{base}{head.lstrip('.')}[{key!r}]")
    return RecordError(base + head.lstrip("."), "is malformed")  # pragma: no cover


def _is_byte_field(steps: list) -> bool:
    return "bytes" in steps[-2:]


def _is_id_field(steps: list) -> bool:
    if steps and steps[-1] in ("tokenId", "token_id"):
        return True
    return (
        len(steps) > 1 and type(steps[-1]) is int and steps[-2] in ("prompt_token_ids", "token_ids")
    )
