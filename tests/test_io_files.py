"""read_logprobs of many files (a list of paths, or a glob pattern), in one process or
several: one source, in file order, each sequence knowing its file."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

import logcal
from _helpers import assert_same, exact
from logcal.io._merge import concat

DATA = Path(__file__).parent / "data"
DEMO = logcal.io.demo_path()
read = logcal.io.read_logprobs


def stream_file(path: Path) -> Path:
    """Two streamed completions, their chunks interleaved."""
    entry = {"token": "a", "logprob": -0.5, "bytes": [97],
             "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]}]}  # fmt: skip
    chunks = []
    for step in range(3):
        for sid in ("x", "y"):
            chunks.append({"id": sid, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [entry]},
                 "finish_reason": "stop" if step == 2 else None}]})  # fmt: skip
    path.write_text("".join(json.dumps(c) + "\n" for c in chunks))
    return path


@pytest.fixture
def files(tmp_path):
    """Files of every kind a source may hold: JSONL large enough to be split, small JSONL,
    gzip, a JSON document, streaming chunks, an empty file."""
    big = tmp_path / "a_big.jsonl"
    big.write_bytes(DEMO.read_bytes() * 2)  # ~6 MB: ranges
    small = tmp_path / "b_small.jsonl"
    small.write_text("\n".join(DEMO.read_text().splitlines()[:40]) + "\n")
    packed = tmp_path / "c_small.jsonl.gz"
    packed.write_bytes(gzip.compress(small.read_bytes()[::-1][::-1]))
    document = tmp_path / "d_doc.json"
    document.write_text(json.dumps([json.loads(x) for x in small.read_text().splitlines()[:5]]))
    streams = stream_file(tmp_path / "e_stream.jsonl")
    empty = tmp_path / "f_empty.jsonl"
    empty.write_text("")
    return [big, small, packed, document, streams, empty]


def test_many_files_are_one_source_in_file_order(files):
    batch = read(files)
    parts = [read(p) for p in files[:5]]  # (the empty file alone holds no records)
    assert batch.n_sequences == sum(p.n_sequences for p in parts)
    assert batch.file.tolist() == [i for i, p in enumerate(parts) for _ in range(p.n_sequences)]
    assert batch.record.tolist() == [r for p in parts for r in p.record.tolist()]
    for name in ("token_logprob", "offsets", "tokens", "top_tokens"):
        assert concat(parts)[name].tolist() == batch[name].tolist(), name
    with pytest.raises(AttributeError, match=exact(
            "LogprobBatch has no file: it was read from one source, not many files")):  # fmt: skip
        _ = read(files[1]).file


@pytest.mark.parametrize("chunk_tokens", [None, 7000])
def test_workers_read_many_files_as_one_process(files, chunk_tokens):
    one = read(files)
    for source in (files, list(reversed(files))):
        expected = read(source)
        got = read(source, workers=2, chunk_tokens=chunk_tokens)
        if chunk_tokens is not None:
            got = concat(list(got))
        assert_same(got, expected)
    assert one.file.max() == 4


def test_a_glob_pattern(files, tmp_path):
    assert_same(read(str(tmp_path / "*.json*")), read(sorted(files[:5] + files[5:])))
    assert_same(read(str(tmp_path / "[ab]_*.jsonl"), workers=2), read(files[:2]))
    with pytest.raises(ValueError, match=exact(
            f"source: no file matches the pattern {str(tmp_path / '*.csv')!r}")):  # fmt: skip
        read(str(tmp_path / "*.csv"))
    # a path that exists is a path, whatever its characters
    odd = tmp_path / "run[1].jsonl"
    shutil.copy(files[1], odd)
    assert "file" not in read(str(odd))


def test_errors_name_their_file_and_line(files, tmp_path):
    bad = tmp_path / "g_bad.jsonl"
    lines = files[1].read_text().splitlines()
    lines[3] = lines[3].replace('"logprob":', '"logprob":"x","was":', 1)
    bad.write_text("\n".join(lines) + "\n")
    source = [files[1], bad, files[0]]
    message = f"{bad}:4: choices[0].logprobs.content[0].logprob must be a number, got a string 'x'"
    for workers in (1, 2):
        with pytest.raises(ValueError, match=exact(message)):
            read(source, workers=workers)
    for workers in (1, 2):
        with pytest.warns(UserWarning, match=re.escape(
                "skipped 1 malformed record(s) of 2130 in the list of 3 files; the first: "
                + message)):  # fmt: skip
            batch = read(source, workers=workers, errors="skip")
        assert batch.skipped_records.tolist() == [3] and batch.skipped_files.tolist() == [1]


def test_the_first_file_sets_the_format(files, tmp_path):
    gemini = DATA / "gemini.json"
    source = [files[2], gemini]  # gzip first: the format is known once it is read
    message = f"{gemini}: this is a gemini record, but the source began with openai_chat records"
    for workers in (1, 2):
        with pytest.raises(ValueError, match=exact(message)):
            read(source, workers=workers)


def test_truncated_gzip_files_are_each_said(files, tmp_path):
    cut = []
    for name in ("x.jsonl.gz", "y.jsonl.gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(files[1].read_bytes())[:-30])
        cut.append(path)
    for workers in (1, 2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read(cut, errors="skip", workers=workers)
        said = [str(w.message) for w in caught if "is truncated" in str(w.message)]
        assert [s.split(" is truncated")[0] for s in said] == [str(p) for p in cut]
