"""read_logprobs on hostile files: every malformed record a counted skip or a ValueError naming
file:line, never another exception; no line or document held beyond max_record_bytes."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

import logcal
from _helpers import exact

DATA = Path(__file__).parent / "data"
read = logcal.io.read_logprobs
GOOD = (DATA / "openai_chat.jsonl").read_text().splitlines()[0]
DEEP = '{"choices": ' + "[" * 100_000 + "]" * 100_000 + "}"


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes("".join(line + "\n" for line in lines).encode())
    return path


def read_skipping(source, **kwargs):
    """The batch read with errors="skip", and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = read(source, errors="skip", **kwargs)
    return batch, [str(w.message) for w in caught]


@pytest.mark.parametrize("where", [0, 1])
def test_nesting_too_deep_to_parse_is_a_malformed_record(tmp_path, where):
    lines = [GOOD, GOOD]
    lines[where] = DEEP
    path = write(tmp_path, "deep.jsonl", lines)
    message = f"{path}:{where + 1}: JSON nested too deeply to parse"
    with pytest.raises(ValueError, match=exact(message)):
        read(path)
    batch, warned = read_skipping(path)
    assert batch.n_sequences == 1 and batch.skipped_records.tolist() == [where]
    assert warned == [f"read_logprobs skipped 1 malformed record(s) of 2 in {path}; the first: "
                      f"{message}"]  # fmt: skip


def test_nesting_too_deep_in_parsed_records_is_a_malformed_record():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(
        ValueError, match=exact("record 1: the record is nested too deeply to read")
    ):
        read([json.loads(GOOD), {"choices": deep}])


@pytest.mark.parametrize("value", [2**70, -(10**400), -1])
def test_choice_index_outside_int64_or_negative_is_a_malformed_field(value):
    rec = json.loads(GOOD)
    rec["choices"][0]["index"] = value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    with pytest.raises(ValueError, match=exact(
        f"record 1: choices[0].index must be an index (an integer >= 0), got {shown}"
    )):  # fmt: skip
        read([json.loads(GOOD), rec])
    line = json.dumps(rec).encode()
    batch, _ = read_skipping(io.BytesIO(GOOD.encode() + b"\n" + line + b"\n"))
    assert batch.skipped_records.tolist() == [1] and batch.n_sequences == 1


def test_a_non_string_object_field_does_not_decide_the_format():
    batch = read(io.BytesIO(b'{"object": [], "choices": []}\n' + GOOD.encode() + b"\n"))
    assert batch.format == "openai_chat" and batch.n_sequences == 1
    assert read({"object": {"a": 1}, "choices": []}).n_sequences == 0


def test_hugging_face_lines_with_integer_logits_read_and_null_logits_refused(tmp_path):
    whole = {"sequences": [[5, 1, 2]], "logits": [[[1, 2, 3]], [[0, 0, 4]]]}
    floats = {"sequences": [[5, 1, 2]], "logits": [[[1.0, 2.0, 3.0]], [[0.0, 0.0, 4.0]]]}
    got, want = read(whole), read(floats)
    np.testing.assert_array_equal(got.token_logprob, want.token_logprob)
    nulls = {"sequences": [[5, 1, 2]], "logits": [[[None, 2, 3]], [[0, 0, 4]]]}
    path = write(tmp_path, "hf.jsonl", [json.dumps(whole), json.dumps(nulls)])
    with pytest.raises(ValueError, match=exact(
        f"{path}:2: logits[0] must be an array of numbers, got null"
    )):  # fmt: skip
        read(path)
    batch, _ = read_skipping(path)
    assert batch.skipped_records.tolist() == [1] and batch.n_sequences == 1
    ragged = {"sequences": [[5, 1]], "logits": [[[1.0, 2.0], [3.0]]]}
    with pytest.raises(ValueError, match=exact(
        "logits[0] must be an array of numbers, got lists of unequal lengths"
    )):  # fmt: skip
        read(ragged)
    flat = {"sequences": [[5, 1]], "logits": [[1.0, 2.0]]}
    with pytest.raises(ValueError, match=exact(
        "logits must be a tuple of [batch, vocab] arrays of one shape, got shapes [(2,)]"
    )):  # fmt: skip
        read(flat)


def test_truncated_gzip_keeps_the_records_before_the_cut(tmp_path):
    text = "".join(f"{GOOD}\n" for _ in range(50)).encode()
    whole = gzip.compress(text)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[:-30])  # the end-of-stream marker and some text lost
    with pytest.raises(ValueError, match=exact(
        f"{path}: not a readable gzip file (truncated: its gzip stream ends at byte "
        f"{len(whole) - 30}, in line 44, without its end-of-stream marker)"
    )):  # fmt: skip
        read(path)
    batch, warned = read_skipping(path)
    assert batch.n_sequences == 43 and batch.skipped_records.tolist() == [43]
    assert warned[0].startswith(
        f"read_logprobs skipped 1 malformed record(s) of 44 in {path}; the first: {path}:44: "
    )
    assert warned[1] == (
        f"{path} is truncated: its gzip stream ends at byte {len(whole) - 30}, in line 44, "
        f"without its end-of-stream marker; the lines before it were read"
    )
    # cut in the header: nothing to read, said so either way
    path.write_bytes(whole[:5])
    with pytest.raises(ValueError, match=exact(
        f"{path}: not a readable gzip file (truncated: its gzip stream ends at byte 5, in "
        f"line 1, without its end-of-stream marker)"
    )):  # fmt: skip
        read(path, errors="skip")


def test_gzip_members_and_padding_read_as_one_stream(tmp_path):
    path = tmp_path / "members.jsonl.gz"
    path.write_bytes(gzip.compress(f"{GOOD}\n".encode()) * 3 + b"\0" * 8)
    assert read(path).n_sequences == 3
    path.write_bytes(gzip.compress(f"{GOOD}\n".encode()) + b"junk")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable gzip file (")):
        read(path)


@pytest.mark.parametrize("buffering", [0, -1])
def test_gzip_from_an_unbuffered_pipe_or_memory_is_recognised(buffering):
    data = gzip.compress(f"{GOOD}\n{GOOD}\n".encode())
    assert read(io.BytesIO(data), progress=False).n_sequences == 2
    r, w = os.pipe()
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=w) as proc:
        os.close(w)
        proc.stdin.write(data)
        proc.stdin.close()
        with open(r, "rb", buffering=buffering) as f:
            assert read(f, progress=False).n_sequences == 2


def test_a_truncated_first_line_is_a_malformed_record(tmp_path):
    for cut in (GOOD[:40], GOOD[: GOOD.index('"choices":') + len('"choices":')]):
        path = write(tmp_path, "cut.jsonl", [cut, GOOD, GOOD])
        with pytest.raises(ValueError, match=re.escape(f"{path}:1: not valid JSON: ")):
            read(path)
        batch, _ = read_skipping(path)
        assert batch.n_sequences == 2 and batch.skipped_records.tolist() == [0], cut


def test_pretty_printed_documents_are_still_documents(tmp_path):
    path = tmp_path / "doc.json"
    for text in (
        json.dumps(json.loads(GOOD), indent=2),
        json.dumps([json.loads(GOOD)] * 2, indent=1),
        '{"choices":\n\n  []}',
    ):
        path.write_text(text)
        assert read(path).n_sequences == text.count('"index"'), text


def test_a_line_longer_than_max_record_bytes_is_refused_without_holding_it(tmp_path):
    long = GOOD.replace('"Paris"', '"' + "x" * 5000 + '"', 1)
    path = write(tmp_path, "long.jsonl", [GOOD, long, GOOD])
    message = f"{path}:2: the record is longer than max_record_bytes (4,096 bytes)"
    with pytest.raises(ValueError, match=exact(message)):
        read(path, max_record_bytes=4096)
    for workers in (1, 2):
        batch, warned = read_skipping(path, max_record_bytes=4096, workers=workers)
        assert batch.n_sequences == 2 and batch.skipped_records.tolist() == [1]
        assert warned == [f"read_logprobs skipped 1 malformed record(s) of 3 in {path}; the "
                          f"first: {message}"]  # fmt: skip
    assert read(path).n_sequences == 3  # the default is far above
    # a line of exactly max_record_bytes (its line end not counted) is read
    assert read(path, max_record_bytes=len(long.encode())).n_sequences == 3
    with pytest.raises(ValueError, match="longer than max_record_bytes"):
        read(path, max_record_bytes=len(long.encode()) - 1)
    # a file object known only by its lines, and a text file, are bounded alike
    lines = [GOOD + "\n", long + "\n", GOOD + "\n"]
    with pytest.raises(ValueError, match=exact(
        "<file>:2: the record is longer than max_record_bytes (4,096 bytes)"
    )):  # fmt: skip
        read(iter_lines(lines), max_record_bytes=4096)
    with open(path) as f:
        assert read_skipping(f, max_record_bytes=4096)[0].skipped_records.tolist() == [1]


class iter_lines:
    """A file object that gives its lines only by iteration."""

    def __init__(self, lines):
        self.lines = lines

    def __iter__(self):
        return iter(self.lines)

    def read(self, *args):  # pragma: no cover - never called for JSONL
        raise AssertionError("read() called")


def test_a_gzip_bomb_of_one_huge_line_stays_within_max_record_bytes(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    huge = b'{"choices": "' + b"x" * (200 << 20) + b'"}\n'
    path.write_bytes(gzip.compress(f"{GOOD}\n".encode() + huge + f"{GOOD}\n".encode(), 1))
    del huge
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        batch, warned = read_skipping(path, max_record_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert batch.n_sequences == 2 and batch.skipped_records.tolist() == [1]
    assert f"{path}:2: the record is longer than max_record_bytes (1,048,576 bytes)" in warned[0]
    assert peak < 16 << 20, peak


def test_a_document_longer_than_max_record_bytes_is_refused(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps([json.loads(GOOD)] * 20, indent=1))
    message = (
        f"{path}: the JSON document is longer than max_record_bytes (1,000 bytes); pass a "
        f"larger max_record_bytes, or write the records as JSONL (one a line)"
    )
    with pytest.raises(ValueError, match=exact(message)):
        read(path, max_record_bytes=1000, errors="skip")
    path.write_text("[" + " " * 2000)  # one line, opening a document
    with pytest.raises(ValueError, match=exact(message)):
        read(path, max_record_bytes=1000)


def test_max_record_bytes_argument():
    with pytest.raises(ValueError, match=exact("max_record_bytes must be >= 1, got 0")):
        read(json.loads(GOOD), max_record_bytes=0)
    with pytest.raises(TypeError, match=exact("max_record_bytes must be an int, got float")):
        read(json.loads(GOOD), max_record_bytes=1e6)
    with pytest.raises(TypeError, match=exact("max_record_bytes must be an int, got bool")):
        read(json.loads(GOOD), max_record_bytes=True)
