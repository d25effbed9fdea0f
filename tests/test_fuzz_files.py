"""Mutated files of every supported format: each record read or counted as skipped (with
``errors="skip"``), or a ValueError naming file:line (with ``errors="raise"``); never another
exception, never a record lost without a count."""

from __future__ import annotations

import gzip
import json
import re
import warnings
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal

DATA = Path(__file__).parent / "data"
read = logcal.io.read_logprobs


def _records(name: str) -> list:
    text = (DATA / name).read_text()
    if name.endswith(".json"):
        value = json.loads(text)
        return value if isinstance(value, list) else [value]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


HF = {"sequences": [[7, 1, 2]], "logits": [[[0.5, 1.0, -2.0]], [[1.5, 0.0, 3.0]]]}
FORMATS = {
    name: _records(name)[:3]
    for name in (
        "openai_chat.jsonl",
        "openai_completions.json",
        "openai_batch.jsonl",
        "vllm_chat.jsonl",
        "vllm_completions.jsonl",
        "vllm_token_ids.jsonl",
        "gemini.json",
        "gemini_sdk.jsonl",
    )
}
FORMATS["huggingface"] = [HF, HF]

DEEP = "[" * 5000 + "]" * 5000
HOSTILE = [None, "x", [], {}, True, 1.5, -1, 2**70, -(10**400), 10**400, "1e400", "-1e400", "DEEP"]


def _nodes(value, path=()):
    """Every place in a parsed record: (path, node)."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nodes(item, (*path, i))


def _replaced(record, pick: int, hostile) -> str:
    """The record as a JSONL line, one of its nodes replaced by a hostile value."""
    places = list(_nodes(record))[1:]
    if not places:
        return json.dumps(record)
    path, _ = places[pick % len(places)]
    record = json.loads(json.dumps(record))
    node = record
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = "\u0000HOSTILE"
    text = json.dumps(record)
    # written as JSON text: values Python's json cannot write (or would write otherwise)
    raw = {"DEEP": DEEP, "1e400": "1e400", "-1e400": "-1e400"}
    value = raw[hostile] if isinstance(hostile, str) and hostile in raw else json.dumps(hostile)
    return text.replace('"\\u0000HOSTILE"', value)


def _line_count(text: bytes) -> int:
    return sum(1 for line in text.split(b"\n") if line.strip())


def check(path: Path, text: bytes, damaged_gzip: bool = False) -> None:
    """The promise, for a file whose text (as delivered, after decompression) is ``text``."""
    name = str(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            batch = read(path, errors="skip")
        except ValueError as exc:
            message = str(exc)
            # nothing readable, a JSON document that does not parse, or a gzip stream that
            # cannot be decompressed: said, with where
            assert message.startswith(
                (f"none of the {_line_count(text)} records", f"{name}:", f"{name} holds no")
            ), message
            batch = None
    if batch is not None:
        skipped = set(batch.skipped_records.tolist())
        read_records = set(batch.record.tolist())
        assert batch.skipped == len(skipped) and not skipped & read_records
        if skipped:
            counted = [str(w.message) for w in caught if "malformed record(s)" in str(w.message)]
            got = re.search(r"skipped (\d+) malformed record\(s\) of (\d+) in ", counted[0])
            n_records = int(got.group(2))
            assert int(got.group(1)) == batch.skipped
            # JSONL: every non-blank line is a record, read or counted
            if not text.lstrip().startswith((b"[", b"{\n", b"{\r")):
                assert n_records == _line_count(text), (n_records, text[:200])
    try:
        strict = read(path)
    except ValueError as exc:
        message = str(exc)
        assert message.startswith(f"{name}:") or message.startswith(
            ("none of the", f"{name} holds no")
        ), message
        if batch is not None and batch.skipped and not damaged_gzip:
            first = min(batch.skipped_records.tolist())
            assert message.startswith((f"{name}:{first + 1}: ", f"{name}: ")), message
    else:
        assert batch is not None and batch.skipped == 0 and strict.n_tokens == batch.n_tokens


formats = st.sampled_from(sorted(FORMATS))


@settings(max_examples=200)  # about a second each
@given(
    formats,
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.sampled_from(HOSTILE)),
        min_size=1,
        max_size=3,
    ),
)
def test_jsonl_with_hostile_values_is_read_or_counted(tmp_path_factory, fmt, changes):
    lines = [json.dumps(r) for r in FORMATS[fmt]]
    for which, pick, hostile in changes:
        i = which % len(lines)
        try:
            record = json.loads(lines[i])
        except (ValueError, RecursionError):
            continue  # a line changed already into what json cannot read back
        lines[i] = _replaced(record, pick, hostile)
    text = "\n".join(lines).encode() + b"\n"
    path = tmp_path_factory.mktemp("hostile") / "f.jsonl"
    path.write_bytes(text)
    check(path, text)


@settings(max_examples=200)  # about a second each
@given(
    formats,
    st.lists(
        st.tuples(st.integers(0, 10**6), st.binary(min_size=0, max_size=4), st.integers(0, 4)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 10**6),
)
def test_jsonl_with_flipped_and_cut_bytes_is_read_or_counted(tmp_path_factory, fmt, edits, cut):
    text = bytearray("".join(json.dumps(r) + "\n" for r in FORMATS[fmt]).encode())
    for at, insert, remove in edits:
        at %= len(text) + 1
        text[at : at + remove] = insert
    text = bytes(text[: len(text) - cut % 50])  # and maybe cut short
    path = tmp_path_factory.mktemp("flipped") / "f.jsonl"
    path.write_bytes(text)
    check(path, text)


@settings(max_examples=200)  # about a second each
@given(
    formats,
    st.integers(0, 10**6),
    st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.integers(0, 255))),
)
def test_gzip_cut_or_flipped_is_read_or_refused(tmp_path_factory, fmt, cut, flip):
    text = "".join(json.dumps(r) + "\n" for r in FORMATS[fmt]).encode()
    data = bytearray(gzip.compress(text))
    if flip is not None:
        at, byte = flip
        data[at % len(data)] = byte
    data = bytes(data[: len(data) - cut % (len(data) + 1)])
    path = tmp_path_factory.mktemp("gzip") / "f.jsonl.gz"
    path.write_bytes(data)
    if data[:2] != b"\x1f\x8b":  # no longer gzip: plain text (or nothing)
        check(path, data)
        return
    try:  # the text a reader can get before the damage
        delivered = zlib.decompressobj(wbits=31).decompress(data)
    except zlib.error:
        delivered = b""
    check(path, delivered, damaged_gzip=True)


@settings(max_examples=200)  # about a second each
@given(
    st.sampled_from(["openai_completions.json", "gemini.json"]),
    st.integers(0, 10**6),
    st.binary(min_size=1, max_size=3),
)
def test_json_documents_mutated_are_read_or_refused_with_the_line(tmp_path_factory, fmt, at, b):
    text = bytearray(json.dumps(FORMATS[fmt], indent=2).encode())
    at %= len(text)
    text[at : at + len(b)] = b
    path = tmp_path_factory.mktemp("doc") / "f.json"
    path.write_bytes(bytes(text))
    for errors in ("raise", "skip"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                read(path, errors=errors)
            except ValueError as exc:
                assert str(exc).startswith((f"{path}:", f"{path} ", "none of the")), str(exc)


@pytest.mark.filterwarnings("ignore:read_logprobs skipped")
def test_fuzz_inputs_cover_every_format():
    readable = {fmt: read(records, errors="skip").format for fmt, records in FORMATS.items()}
    assert set(readable.values()) == set(logcal.io.FORMATS)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_each_hostile_value_in_each_place_of_a_chat_record(tmp_path, hostile):
    record = FORMATS["openai_chat.jsonl"][0]
    lines = [json.dumps(record)]
    lines += [_replaced(record, pick, hostile) for pick in range(len(list(_nodes(record))) - 1)]
    text = "\n".join(lines).encode() + b"\n"
    path = tmp_path / "f.jsonl"
    path.write_bytes(text)
    check(path, text)
