"""OpenAI streaming chunks (``chat.completion.chunk`` lines) joined into their sequences.

The streams are generated as the OpenAI API sends them with ``stream=True, logprobs=True``:
a first chunk per choice with the role and ``logprobs: null``, then chunks of one or a few
tokens each (the choices of ``n > 1`` interleaved), a chunk per choice with its
``finish_reason`` and ``logprobs: null``, and with ``stream_options={"include_usage": True}``
a last chunk of no choices carrying the usage. Each joined stream must read as the
non-streamed completion of the same tokens.
"""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logcal
from _helpers import assert_same, exact
from logcal.io._merge import concat

read = logcal.io.read_logprobs
DEMO = logcal.io.demo_path()


def entry(rng: random.Random, k: int = 3) -> dict:
    """A chat logprobs entry with k alternatives, best first."""
    words = ["Paris", " the", " is", "日本", " a", ",", "\n", " Lyon", "\\", '"']
    top = sorted((-rng.uniform(0, 6) for _ in range(k)), reverse=True)
    tokens = rng.sample(words, k)
    alts = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in zip(tokens, top)]
    chosen = rng.choice(alts) if alts else {"token": " x", "logprob": -7.5, "bytes": [32, 120]}
    return {**chosen, "top_logprobs": alts}


def stream(rng, sequences, stream_id="chatcmpl-1", usage=True, per_chunk=(1, 1), finish="stop"):
    """The chunks of one streamed completion whose choice i has the entries sequences[i]."""
    head = {"id": stream_id, "object": "chat.completion.chunk", "created": 1730000000,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1"}  # fmt: skip
    chunks = []
    for i in range(len(sequences)):
        delta = {"role": "assistant", "content": "", "refusal": None}
        chunks.append({**head, "choices": [{"index": i, "delta": delta, "logprobs": None,
                                            "finish_reason": None}]})  # fmt: skip
    # the choices' pieces, interleaved in a random order that keeps each choice's own order
    pieces = []
    for i, entries in enumerate(sequences):
        at = 0
        while at < len(entries):
            n = rng.randint(*per_chunk)
            pieces.append((i, entries[at : at + n]))
            at += n
    order = []
    queues = [[p for p in pieces if p[0] == i] for i in range(len(sequences))]
    while any(queues):
        q = rng.choice([q for q in queues if q])
        order.append(q.pop(0))
    for i, part in order:
        text = "".join(e["token"] for e in part)
        chunks.append({**head, "choices": [{"index": i, "delta": {"content": text},
                       "logprobs": {"content": part, "refusal": None},
                       "finish_reason": None}]})  # fmt: skip
    for i in range(len(sequences)):
        chunks.append({**head, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                            "finish_reason": finish}]})  # fmt: skip
    if usage:
        chunks.append({**head, "choices": [], "usage": {"prompt_tokens": 9,
                       "completion_tokens": sum(map(len, sequences)), "total_tokens": 20}})  # fmt: skip
    return chunks


def completion(sequences, stream_id="chatcmpl-1"):
    """The non-streamed response of the same tokens."""
    return {"id": stream_id, "object": "chat.completion", "choices": [
        {"index": i, "message": {"role": "assistant", "content": "".join(e["token"] for e in s)},
         "logprobs": {"content": s, "refusal": None}, "finish_reason": "stop"}
        for i, s in enumerate(sequences)]}  # fmt: skip


def jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_stream_reads_as_its_completion(tmp_path):
    rng = random.Random(0)
    sequences = [[entry(rng) for _ in range(n)] for n in (7, 4, 0)]
    chunks = stream(rng, sequences, per_chunk=(1, 3))
    batch = read(jsonl(tmp_path / "s.jsonl", chunks))
    whole = read(completion(sequences))
    assert batch.format == "openai_chat"
    assert_same(batch, whole)
    assert batch.n_sequences == 3 and list(np.diff(batch.offsets)) == [7, 4, 0]
    assert list(batch.choice) == [0, 1, 2] and list(batch.record) == [0, 0, 0]
    # parsed records, a file object and chunks of the result join the same way
    assert_same(read(chunks), whole)
    with open(tmp_path / "s.jsonl", "rb") as f:
        assert_same(read(f), whole)
    assert_same(concat(list(read(chunks, chunk_tokens=1))), whole)


def test_interleaved_streams_in_the_order_of_their_first_chunks(tmp_path):
    rng = random.Random(1)
    a = [[entry(rng) for _ in range(5)], [entry(rng) for _ in range(3)]]
    b = [[entry(rng) for _ in range(2)]]
    c = [[entry(rng) for _ in range(4)]]
    sa, sb, sc = stream(rng, a, "a"), stream(rng, b, "b", usage=False), stream(rng, c, "c")
    # a begins, b runs whole inside it, c comes after a's last chunk
    lines = sa[:3] + sb + sa[3:] + [completion(c, "whole")] + sc
    batch = read(jsonl(tmp_path / "s.jsonl", lines))
    first_b = 3
    first_c = len(sa) + len(sb) + 1
    # b ends first but waits for a, which began before it
    assert list(batch.record) == [0, 0, first_b, first_c - 1, first_c]
    assert list(batch.choice) == [0, 1, 0, 0, 0]
    expected = concat([read(completion(a)), read(completion(b)), read(completion(c)),
                       read(completion(c))])  # fmt: skip
    for name in ("token_logprob", "offsets", "top_logprobs", "tokens", "top_tokens"):
        x, y = batch[name], expected[name]
        assert x.tolist() == y.tolist(), name


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.lists(st.integers(0, 6), min_size=1, max_size=4),
       st.integers(1, 4), st.booleans())  # fmt: skip
def test_any_interleaving_joins_to_the_completion(rng, lengths, most, usage):
    sequences = [[entry(rng, k=rng.randint(0, 4)) for _ in range(n)] for n in lengths]
    chunks = stream(rng, sequences, usage=usage, per_chunk=(1, most))
    assert_same(read(chunks), read(completion(sequences)))


def test_workers_read_streams_as_one_process(tmp_path):
    rng = random.Random(2)
    streams = [
        stream(rng, [[entry(rng) for _ in range(rng.randint(1, 30))] for _ in range(2)], f"s{i}")
        for i in range(800)
    ]
    lines = [[json.dumps(c) + "\n" for c in s] for s in streams]
    demo = DEMO.read_text()
    # a file of streams only, and one where they come after 3 MB of whole completions
    only = tmp_path / "chunks.jsonl"
    only.write_text("".join(line for s in lines for line in s))
    assert only.stat().st_size > 4 << 20  # split into ranges
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(demo + "".join(line for s in lines[:200] for line in s) + demo)
    for path in (only, mixed):
        one = read(path)
        assert_same(read(path, workers=2), one)
        assert_same(concat(list(read(path, workers=2, chunk_tokens=5000))), one)
    assert read(mixed).n_sequences == 2 * read(DEMO).n_sequences + 400


def test_chunk_errors(tmp_path):
    rng = random.Random(3)
    seqs = [[entry(rng) for _ in range(3)]]
    chunks = stream(rng, seqs)
    # content without logprobs: the request did not ask for them
    bad = json.loads(json.dumps(chunks))
    bad[1]["choices"][0]["logprobs"] = None
    path = jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(ValueError, match=exact(
            f"{path}:2: choices[0].logprobs is null: the request did not ask for logprobs")):  # fmt: skip
        read(path)
    with pytest.warns(UserWarning, match="skipped 1 malformed record"):
        assert read(path, errors="skip").n_tokens == 2
    # tokens of a stream after its end
    late = [*chunks, chunks[1]]
    path = jsonl(tmp_path / "late.jsonl", late)
    with pytest.raises(ValueError, match=exact(
            f"{path}:{len(late)}: id 'chatcmpl-1': this chunk holds tokens of a stream that has "
            f"ended (every choice had its finish_reason)")):  # fmt: skip
        read(path)
    # an id that is not a string
    odd = json.loads(json.dumps(chunks))
    odd[0]["id"] = [1]
    with pytest.raises(ValueError, match=exact("record 0: id must be a string, got a list [1]")):
        read(odd)
    # token ids of another length
    ids = json.loads(json.dumps(chunks))
    ids[1]["choices"][0]["token_ids"] = [1, 2, 3, 4]
    with pytest.raises(ValueError, match=exact(
            "record 1: choices[0].token_ids has 4 entries but the logprobs 1")):  # fmt: skip
        read(ids)
    # a chunk where the format asked for says completions
    with pytest.raises(ValueError, match=exact(
            "record 0: object is 'chat.completion.chunk', but format='openai_completions'")):  # fmt: skip
        read(chunks, format="openai_completions")


def test_a_stream_cut_short_is_read_and_said(tmp_path):
    rng = random.Random(4)
    seqs = [[entry(rng) for _ in range(5)]]
    cut = stream(rng, seqs)[:4]  # the role chunk and three tokens
    path = jsonl(tmp_path / "cut.jsonl", cut)
    with pytest.warns(UserWarning, match=exact(
            f"read_logprobs: 1 stream(s) of chunks in {path} end without a finish_reason (cut "
            f"short?); their tokens were read")):  # fmt: skip
        batch = read(path)
    assert batch.n_tokens == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read(stream(rng, seqs))  # a whole stream: no warning


def test_vllm_stream_token_ids_and_refusals():
    rng = random.Random(5)
    seqs = [[entry(rng) for _ in range(4)], [entry(rng) for _ in range(2)]]
    chunks = stream(rng, seqs, per_chunk=(1, 2))
    for c in chunks:
        for choice in c["choices"]:
            choice["stop_reason"] = None  # vLLM's field
            lp = choice["logprobs"]
            if lp is not None:
                choice["token_ids"] = [100 + choice["index"]] * len(lp["content"])
    batch = read(chunks)
    assert batch.format == "vllm_chat"
    assert batch.token_ids.tolist() == [100] * 4 + [101] * 2
    # a refused request streams its logprobs under refusal
    refusal = stream(rng, seqs[:1])
    for c in refusal:
        lp = c["choices"][0]["logprobs"] if c["choices"] else None
        if lp is not None:
            lp["refusal"], lp["content"] = lp["content"], None
    assert_same(read(refusal), read(completion(seqs[:1])))
