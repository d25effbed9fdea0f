"""logcal.io.read_logprobs at scale: chunks, worker processes, gzip pipes, mutated files."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import logcal
from _helpers import assert_same, exact
from logcal.io._merge import concat

DATA = Path(__file__).parent / "data"
DEMO = logcal.io.demo_path()
read = logcal.io.read_logprobs


def big_file(tmp_path, copies=3, bad_lines=()):
    """The demo JSONL repeated (3 MB for 3 copies), with lines replaced by malformed ones."""
    lines = DEMO.read_bytes().splitlines(keepends=True) * copies
    for i, text in bad_lines:
        lines[i] = text
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_chunks_join_into_the_whole_read(tmp_path):
    whole = read(DEMO)
    chunks = list(read(DEMO, chunk_tokens=1000))
    assert len(chunks) == -(-whole.n_tokens // 1000) or len(chunks) > 1
    longest = int(np.diff(whole.offsets).max())
    for c in chunks[:-1]:
        assert 1000 <= c.n_tokens < 1000 + longest
    assert_same(concat(chunks), whole)
    # records go on counting across chunks
    assert chunks[1].record[0] == chunks[0].record[-1] + 1
    # parsed records stream too
    records = [json.loads(line) for line in DEMO.read_text().splitlines()]
    assert_same(concat(list(read(records, chunk_tokens=500))), read(records))


def test_chunk_and_worker_arguments():
    with pytest.raises(ValueError, match=exact("chunk_tokens must be >= 1, got 0")):
        read(DEMO, chunk_tokens=0)
    with pytest.raises(TypeError, match=exact("chunk_tokens must be an int, got float")):
        read(DEMO, chunk_tokens=1.5)
    with pytest.raises(ValueError, match=exact("workers must be >= 1, got 0")):
        read(DEMO, workers=0)
    with pytest.raises(TypeError, match=exact("workers must be an int, got str")):
        read(DEMO, workers="2")


def test_workers_give_the_result_of_one_process(tmp_path):
    path = big_file(tmp_path)
    one = read(path)
    for chunk in (None, 5000):
        got = read(path, workers=2, chunk_tokens=chunk)
        assert_same(got if chunk is None else concat(list(got)), one)


def test_workers_count_lines_and_skip_like_one_process(tmp_path):
    # malformed lines far into the file: in another worker's range than the first line
    bad = [(2500, b'{"choices": [1]}\n'), (2600, b"not json\n"), (2601, b"\n")]
    path = big_file(tmp_path, bad_lines=bad)
    with pytest.raises(ValueError, match=re.escape(
        f"{path}:2501: choices[0] must be an object, got a number 1"
    )):  # fmt: skip
        read(path, workers=2)
    with pytest.warns(UserWarning) as one_warned:
        one = read(path, errors="skip")
    with pytest.warns(UserWarning) as two_warned:
        two = read(path, errors="skip", workers=2)
    assert_same(two, one)
    assert list(two.skipped_records) == [2500, 2600]
    assert str(two_warned[0].message) == str(one_warned[0].message)
    assert "skipped 2 malformed record(s) of 3074" in str(two_warned[0].message)


def test_gzip_from_a_pipe(tmp_path):
    gz = tmp_path / "demo.jsonl.gz"
    gz.write_bytes(gzip.compress(DEMO.read_bytes()))
    with subprocess.Popen(["cat", str(gz)], stdout=subprocess.PIPE) as proc:
        assert not proc.stdout.seekable()
        got = read(proc.stdout)
    assert_same(got, read(DEMO))
    with subprocess.Popen(["cat", str(gz)], stdout=subprocess.PIPE) as proc:
        chunks = list(read(proc.stdout, chunk_tokens=3000))
    assert len(chunks) == 3 and sum(c.n_tokens for c in chunks) == got.n_tokens


def test_broken_gzip_is_refused_naming_the_file(tmp_path):
    # the gzip magic on a file that is not gzip, and a gzip stream cut short
    fake = tmp_path / "fake.jsonl"
    fake.write_bytes(b'\x1f\x8b{"choices": []}\n')
    with pytest.raises(ValueError, match=re.escape(f"{fake}: not a readable gzip file (")):
        read(fake, errors="skip")
    cut = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(DEMO.read_bytes())
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{cut}: not a readable gzip file (")):
        read(cut)


def test_vllm_per_choice_token_ids():
    rec = {"choices": [{"index": 0, "stop_reason": None, "token_ids": [17, 42],
                        "logprobs": {"content": [
                            {"token": "a", "logprob": -0.1, "top_logprobs": []},
                            {"token": "b", "logprob": -0.2, "top_logprobs": []}]}}]}  # fmt: skip
    b = read(rec)
    assert b.format == "vllm_chat"
    np.testing.assert_array_equal(b.token_ids, [17, 42])
    assert b.tokens.tolist() == ["a", "b"]
    rec["choices"][0]["token_ids"] = [17]
    with pytest.raises(ValueError, match=re.escape(
        "choices[0].token_ids has 1 entry but the logprobs 2"
    )):  # fmt: skip
        read(rec)


# --- mutated files: every record read, or counted as skipped ----------------------------------

FIXTURE_LINES = [
    line
    for name in ("openai_chat.jsonl", "vllm_chat.jsonl")
    for line in (DATA / name).read_bytes().splitlines()
    if line.strip()
][:4]


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.binary(min_size=0, max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_files_lose_no_record_silently(tmp_path_factory, mutations):
    lines = [bytearray(line) for line in FIXTURE_LINES[:3]]
    for which, at, insert in mutations:
        line = lines[which % len(lines)]
        at %= len(line) + 1
        line[at : at + len(insert)] = insert  # overwrite a few bytes (or append)
    lines = [bytes(line).replace(b"\n", b" ") for line in lines]
    path = tmp_path_factory.mktemp("fuzz") / "mutated.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # each line alone: read, or refused
    alone = []
    for line in lines:
        try:
            alone.append(read(json.loads(line)).n_sequences)
        except ValueError:
            alone.append(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            b = read(path, errors="skip")
        except ValueError as exc:
            # nothing could be read, or the first line opened a JSON document (an array, or
            # an object over many lines) that does not parse: said so, with where
            message = str(exc)
            assert message.startswith(("none of the 3 records", f"{path}:")), message
            return
    read_lines = set(b.record.tolist())
    skipped = set(b.skipped_records.tolist())
    for i in range(3):
        # a line is either skipped or read, never both, never neither (unless it is a
        # record of no choices, which adds no sequence)
        assert (i in skipped) != (i in read_lines) or (i not in skipped and alone[i] == 0), i
    assert b.skipped == len(skipped)
    try:
        strict = read(path)
    except ValueError as exc:
        first = min(skipped)
        assert str(exc).startswith(f"{path}:{first + 1}: ")
    else:
        assert not skipped and strict.n_tokens == b.n_tokens


def test_command_line_workers(tmp_path):
    path = big_file(tmp_path, copies=2)
    outs = []
    for extra in ([], ["--workers", "2"]):
        r = subprocess.run(
            [sys.executable, "-m", "logcal", "report", str(path), "--json",
             "--bootstrap", "20", *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1]
    assert outs[0]["n"] > 17000
