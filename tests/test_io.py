"""logcal.io: the readers of model API outputs, and the real-model demo data.

The fixtures in tests/data are written by hand from the providers' documented shapes
(openai-python's types, vLLM's protocol and logprobs modules, the Gemini REST reference and
the google-genai SDK), with their traps: the null first prompt token, bytes of characters
split over tokens, top lists of k and k+1 entries, -9999.0 sentinels, proto3 fields left out.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import math
import re
import tracemalloc
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import logcal
from _helpers import assert_close, exact

DATA = Path(__file__).parent / "data"
read = logcal.io.read_logprobs
NAN, INF = math.nan, math.inf


def assert_equal(actual, expected, what=""):
    """Equal arrays, NaN equal to NaN, shapes checked."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(actual, expected, err_msg=what)


def objects(*values):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def object_rows(rows):
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    for i, row in enumerate(rows):
        out[i, :] = row
    return out


# --- every format, from the fixtures ---------------------------------------------------------


def test_openai_chat():
    b = read(DATA / "openai_chat.jsonl")
    assert b.format == "openai_chat"
    assert (b.n_sequences, b.n_tokens, b.k, b.skipped) == (5, 8, 2, 0)
    assert_equal(b.offsets, [0, 1, 4, 5, 6, 8])
    # line 4 is blank: record numbers are line numbers - 1
    assert_equal(b.record, [0, 1, 2, 2, 4])
    assert_equal(b.choice, [0, 0, 0, 1, 0])
    # 0 (an int in the JSON) is a log-probability like any other; -9999.0 reads as -inf
    assert_equal(b.token_logprob, [-0.0012, -0.02, 0.0, -INF, -0.1, -2.4, -0.3, -0.2])
    assert b.token_logprob.dtype == np.float64
    assert_equal(
        b.top_logprobs,
        [[-0.0012, -7.1], [-0.02, -4.3], [0.0, NAN], [-0.05, -INF], [-0.1, -2.4],
         [-0.1, -2.4], [NAN, NAN], [NAN, NAN]],
    )  # fmt: skip
    assert_equal(
        b.tokens, objects("Paris", "\\xe6\\x97", "\\xa5", "本", "Yes", "No", "I", " cannot")
    )
    assert_equal(
        b.top_tokens,
        object_rows([["Paris", "The"], ["\\xe6\\x97", "Japan"], ["\\xa5", None], ["語", "人"],
                     ["Yes", "No"], ["Yes", "No"], [None, None], [None, None]]),
    )  # fmt: skip
    assert b.token_bytes[1] == b"\xe6\x97" and b.token_bytes[7] is None
    assert not b.prompt.any()
    with pytest.raises(AttributeError, match="this openai_chat source gives no token ids"):
        _ = b.token_ids


def test_split_characters_are_rebuilt_from_bytes():
    b = read(DATA / "openai_chat.jsonl")
    assert b.text(1) == "日本"  # 日 is split over two tokens: only its bytes rebuild it
    assert b.text(0) == "Paris"
    assert b.text(4) == "I cannot"  # the refusal; the second token has bytes null
    ids = read(DATA / "vllm_token_ids.jsonl")
    with pytest.raises(ValueError, match="tokens are token ids here"):
        ids.text(0)


def test_openai_completions_json_array_with_null_first_token_and_k_plus_1_lists():
    b = read(DATA / "openai_completions.json")
    assert b.format == "openai_completions"
    assert_equal(b.offsets, [0, 4, 6])
    assert_equal(b.record, [0, 1])
    # echo=True: the first prompt token has no log-probability
    assert_equal(b.token_logprob, [NAN, -5.2, -1.1, -0.02, -0.5, -9.1])
    # logprobs=2 gives 2 entries, or 3 where the sampled token was not in the top 2: the
    # list is kept whole, best first
    assert b.k == 3
    assert_equal(
        b.top_logprobs,
        [[NAN, NAN, NAN], [-3.0, -5.2, NAN], [-1.1, NAN, NAN], [-0.02, -4.9, NAN],
         [-0.5, -1.4, NAN], [-0.3, -1.9, -9.1]],
    )  # fmt: skip
    assert list(b.top_tokens[1]) == [" city", " capital", None]
    assert list(b.top_tokens[5]) == ["\n", " and", "."]
    assert "token_bytes" not in b


def test_vllm_chat_prompt_logprobs():
    b = read(DATA / "vllm_chat.jsonl")
    assert b.format == "vllm_chat"
    # the prompt is a sequence of its own (choice -1), before the record's choices
    assert_equal(b.offsets, [0, 3, 5, 6])
    assert_equal(b.choice, [-1, 0, 0])
    assert_equal(b.record, [0, 0, 1])
    assert_equal(b.prompt, [True, True, True, False, False, False])
    # position 0 is null; the prompt token of position 1 is outside the top 2 (rank 412)
    assert_equal(b.token_logprob, [NAN, -9.3, -0.5, -0.25, -0.9, -0.05])
    assert_equal(b.token_ids, [128000, 9906, 0, -1, -1, -1])
    assert_equal(b.tokens, objects(None, "Hello", "!", "Hi", "!", "OK"))
    assert_equal(b.top_token_ids[1], [791, 40, 9906])
    assert_equal(b.top_logprobs[1], [-1.2, -2.0, -9.3])
    assert list(b.top_tokens[1]) == ["The", "I", "Hello"]
    assert_equal(b.top_token_ids[3], [-1, -1, -1])


def test_vllm_completions_prompt_once_per_record_and_echo():
    b = read(DATA / "vllm_completions.jsonl")
    assert b.format == "vllm_completions"
    # record 0: two choices carry the same prompt_logprobs: one prompt sequence.
    # record 1: echo=True: the choice starts with the prompt; its tokens are marked.
    assert_equal(b.offsets, [0, 2, 3, 4, 7])
    assert_equal(b.choice, [-1, 0, 1, 0])
    assert_equal(b.prompt, [True, True, False, False, True, True, False])
    assert_equal(b.token_logprob, [NAN, -8.0, -0.1, -3.0, NAN, -8.0, -0.7])
    # vLLM puts the sampled token first in a top-k it did not make: sorted back into place
    assert_equal(b.top_logprobs[3], [-0.1, -3.0])
    assert list(b.top_tokens[3]) == [" Paris", " Lyon"]
    assert_equal(b.top_logprobs[2], [-0.1, NAN])


def test_vllm_prompt_token_is_the_first_entry_without_prompt_token_ids():
    rec = {
        "choices": [],
        "prompt_logprobs": [
            None,
            {"5": {"logprob": -7.0, "rank": 9, "decoded_token": "x"},
             "1": {"logprob": -0.1, "rank": 1, "decoded_token": "y"}},
        ],
    }  # fmt: skip
    b = read(rec)
    assert b.format == "vllm_chat"
    assert_equal(b.token_ids, [-1, 5])
    assert_equal(b.token_logprob, [NAN, -7.0])


def test_vllm_return_tokens_as_token_ids():
    b = read(DATA / "vllm_token_ids.jsonl")
    # "token_id:N" everywhere and no text at all: tokens are the int64 ids
    assert b.tokens.dtype == np.int64 and b.top_tokens.dtype == np.int64
    assert_equal(b.tokens, [12366, 13, 13347])
    assert_equal(b.top_tokens, [[12366, 41958], [13, 0], [9906, 13347]])
    assert_equal(b.token_ids, b.tokens)
    assert_equal(b.token_logprob, [-0.1, -0.4, -INF])
    assert_equal(b.top_logprobs[2], [-0.3, -INF])


def test_gemini_pretty_printed_document():
    b = read(DATA / "gemini.json")
    assert b.format == "gemini"
    assert_equal(b.offsets, [0, 2, 3])
    assert_equal(b.choice, [0, 1])
    # "." has no logProbability: proto3 JSON leaves out 0.0
    assert_equal(b.token_logprob, [-0.01, 0.0, -5.2])
    assert_equal(b.token_ids, [12345, 235265, 678])
    assert_equal(b.top_logprobs, [[-0.01, -5.2], [0.0, -9.5], [-0.01, -4.8]])
    assert_equal(b.top_token_ids, [[12345, 678], [235265, 235341], [12345, 91011]])
    assert list(b.tokens) == ["Paris", ".", "Lyon"]
    # the chosen candidate need not be among the top candidates
    assert b.tokens[2] not in list(b.top_tokens[2])


def test_gemini_sdk_snake_case_and_batch_lines():
    b = read(DATA / "gemini_sdk.jsonl")
    assert b.format == "gemini"
    assert_equal(b.token_logprob, [-0.3, -0.7])
    assert_equal(b.top_token_ids, [[2151, 4521], [3553, 1294]])
    assert list(b.tokens) == ["Hi", "Yes"]


def test_openai_batch_output():
    path = DATA / "openai_batch.jsonl"
    with pytest.raises(ValueError) as err:
        read(path)
    assert str(err.value) == (
        f"{path}:2: response is null (the request failed: {{'code': 'batch_expired', "
        f"'message': 'This request could ...)"
    )
    with pytest.warns(UserWarning, match=r"skipped 1 malformed record\(s\) of 3"):
        b = read(path, errors="skip")
    assert b.skipped == 1
    assert_equal(b.skipped_records, [1])
    assert_equal(b.record, [0, 2])
    assert_equal(b.token_logprob, [-0.001, -0.4])
    assert_equal(b.top_logprobs[1], [-0.4, -0.9])  # sorted


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("openai_chat.jsonl", "openai_chat"),
        ("openai_completions.json", "openai_completions"),
        ("vllm_chat.jsonl", "vllm_chat"),
        ("vllm_completions.jsonl", "vllm_completions"),
        ("vllm_token_ids.jsonl", "vllm_completions"),
        ("gemini.json", "gemini"),
        ("gemini_sdk.jsonl", "gemini"),
    ],
)
def test_auto_detection_and_every_source_kind(name, fmt, tmp_path):
    path = DATA / name
    want = read(path)
    assert want.format == fmt
    text = path.read_text(encoding="utf-8")
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(text.encode()))
    parsed = (
        json.loads(text)
        if name.endswith(".json")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    with open(path, encoding="utf-8") as f_text, open(path, "rb") as f_bin:
        sources = [str(path), gz, f_text, f_bin, io.StringIO(text), io.BytesIO(text.encode()),
                   parsed, iter(parsed if isinstance(parsed, list) else [parsed])]  # fmt: skip
        for source in sources:
            got = read(source)
            assert got.format == fmt
            for field in want:
                if (
                    field == "record"
                    and not hasattr(source, "read")
                    and not isinstance(source, (str, Path))
                ):
                    continue  # blank lines count in files, not in lists
                a, b = got[field], want[field]
                if isinstance(b, np.ndarray):
                    assert a.dtype == b.dtype, field
                    if b.dtype == object:
                        assert a.tolist() == b.tolist(), field
                    else:
                        assert_equal(a, b, field)
                else:
                    assert a == b, field


def test_explicit_format_overrides_detection():
    path = DATA / "vllm_chat.jsonl"
    b = read(path, format="openai_chat")  # vLLM's extras are then ignored
    assert b.format == "openai_chat"
    assert_equal(b.choice, [0, 0])
    assert not b.prompt.any()
    b = read(DATA / "openai_chat.jsonl", format="vllm_chat")
    assert b.format == "vllm_chat" and b.n_sequences == 5
    path = DATA / "openai_chat.jsonl"
    with pytest.raises(ValueError, match=exact(
        f"{path}:1: candidates is missing: format='gemini' expects a Gemini generateContent "
        f"response"
    )):  # fmt: skip
        read(path, format="gemini")
    with pytest.raises(ValueError, match=exact(
        f"{path}:1: choices[0].logprobs.tokens is missing"
    )):  # fmt: skip
        read(path, format="openai_completions")
    with pytest.raises(ValueError, match=re.escape(
        f"{path}:1: this record is not a Hugging Face generate output (no 'sequences' with "
        f"'logits' or 'scores'); got keys ['choices', 'created', 'id'"
    )):  # fmt: skip
        read(path, format="huggingface")


def test_openai_and_vllm_records_mix_into_a_vllm_batch():
    openai = json.loads((DATA / "openai_chat.jsonl").read_text().splitlines()[0])
    vllm = json.loads((DATA / "vllm_chat.jsonl").read_text().splitlines()[0])
    b = read([openai, vllm])
    assert b.format == "vllm_chat"
    assert_equal(b.choice, [0, -1, 0])


def test_sentinels_and_rounding():
    def one(value):
        rec = {"choices": [{"logprobs": {"content": [
            {"token": "a", "logprob": value, "top_logprobs": [{"token": "a", "logprob": value}]}
        ]}}]}  # fmt: skip
        b = read(rec)
        return b.token_logprob[0], b.top_logprobs[0, 0]

    assert one(-9999.0) == (-INF, -INF)
    assert one(-1e30) == (-INF, -INF)
    assert one(-INF) == (-INF, -INF)  # Python's json writes -Infinity
    assert one(-9998.5) == (-9998.5, -9998.5)
    assert one(3e-6) == (0.0, 0.0)  # rounding noise above 0
    assert one(0) == (0.0, 0.0)


# --- malformed records: every field, the exact message -------------------------------------

DELETE = object()

TOKEN_A = {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [
    {"token": "a", "logprob": -0.5, "bytes": [97]}, {"token": "b", "logprob": -1.5, "bytes": [98]}]}  # fmt: skip
TOKEN_B = {"token": "b", "logprob": -1.0, "bytes": [98], "top_logprobs": [
    {"token": "b", "logprob": -1.0, "bytes": [98]}, {"token": "a", "logprob": -2.0, "bytes": [97]}]}  # fmt: skip
CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ab"},
                 "logprobs": {"content": [TOKEN_A, TOKEN_B], "refusal": None},
                 "finish_reason": "stop"}],
}  # fmt: skip
VLLM_CHAT = {
    **CHAT,
    "prompt_logprobs": [None, {
        "9906": {"logprob": -9.3, "rank": 412, "decoded_token": "Hello"},
        "791": {"logprob": -1.2, "rank": 1, "decoded_token": "The"}}],
    "prompt_token_ids": [128000, 9906],
}  # fmt: skip
COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "choices": [{"index": 0, "text": " a b", "finish_reason": "length", "logprobs": {
        "tokens": ["The", " a", " b"], "token_logprobs": [None, -0.5, -1.0],
        "top_logprobs": [None, {" a": -0.5, " c": -2.0}, {" b": -1.0}],
        "text_offset": [0, 3, 5]}}],
}  # fmt: skip
VLLM_COMPLETION = copy.deepcopy(COMPLETION)
VLLM_COMPLETION["choices"][0].update(
    stop_reason=None,
    prompt_logprobs=VLLM_CHAT["prompt_logprobs"],
    prompt_token_ids=[128000, 9906],
)
GEMINI = {
    "candidates": [{"content": {"parts": [{"text": "a"}], "role": "model"},
                    "finishReason": "STOP",
                    "logprobsResult": {
                        "topCandidates": [{"candidates": [
                            {"token": "a", "tokenId": 1, "logProbability": -0.1},
                            {"token": "b", "tokenId": 2, "logProbability": -2.4}]}],
                        "chosenCandidates": [{"token": "a", "tokenId": 1, "logProbability": -0.1}]}}],
}  # fmt: skip
OPENAI_BATCH = {"id": "batch_req_1", "custom_id": "q1", "error": None,
                "response": {"status_code": 200, "request_id": "r", "body": CHAT}}  # fmt: skip

C = ["choices", 0, "logprobs", "content", 1]
CP = "choices[0].logprobs.content[1]"
Q = ["choices", 0, "logprobs"]
QP = "choices[0].logprobs"
R = ["prompt_logprobs", 1]
G = ["candidates", 0, "logprobsResult"]
GP = "candidates[0].logprobsResult"

MALFORMED = [
    # OpenAI chat
    (CHAT, ["choices"], 3, "choices must be a list, got a number 3"),
    (CHAT, ["choices", 0], "x", "choices[0] must be an object, got a string 'x'"),
    (CHAT, ["choices", 0, "index"], "0", "choices[0].index must be an integer, got a string '0'"),
    (CHAT, Q, None, "choices[0].logprobs is null: the request did not ask for logprobs"),
    (CHAT, Q, DELETE, "choices[0].logprobs is missing: the request did not ask for logprobs"),
    (CHAT, Q, [1], "choices[0].logprobs must be an object or null, got a list [1]"),
    (CHAT, [*Q, "content"], "abc", f"{QP}.content must be a list or null, got a string 'abc'"),
    (CHAT, C, 7, f"{CP} must be an object, got a number 7"),
    (CHAT, [*C, "token"], DELETE, f"{CP}.token is missing"),
    (CHAT, [*C, "token"], 5, f"{CP}.token must be a string, got a number 5"),
    (CHAT, [*C, "logprob"], DELETE, f"{CP}.logprob is missing"),
    (CHAT, [*C, "logprob"], "abc", f"{CP}.logprob must be a number, got a string 'abc'"),
    (CHAT, [*C, "logprob"], True, f"{CP}.logprob must be a number, got a boolean True"),
    (CHAT, [*C, "logprob"], None, f"{CP}.logprob must be a number, got null"),
    (CHAT, [*C, "logprob"], NAN, f"{CP}.logprob must be a number, got NaN"),
    (CHAT, [*C, "logprob"], 0.5, f"{CP}.logprob must be a log-probability (<= 0), got 0.5"),
    (CHAT, [*C, "bytes"], "ab", f"{CP}.bytes must be a list of byte values or null, got a string 'ab'"),
    (CHAT, [*C, "bytes"], [98, 300], f"{CP}.bytes[1] must be an integer in [0, 256), got 300"),
    (CHAT, [*C, "bytes"], [98, "x"], f"{CP}.bytes[1] must be an integer in [0, 256), got 'x'"),
    (CHAT, [*C, "top_logprobs"], {}, f"{CP}.top_logprobs must be a list or null, got an object {{}}"),
    (CHAT, [*C, "top_logprobs", 1], "b", f"{CP}.top_logprobs[1] must be an object, got a string 'b'"),
    (CHAT, [*C, "top_logprobs", 1, "logprob"], "x", f"{CP}.top_logprobs[1].logprob must be a number, got a string 'x'"),
    (CHAT, [*C, "top_logprobs", 1, "token"], None, f"{CP}.top_logprobs[1].token must be a string, got null"),
    (CHAT, [*C, "top_logprobs", 0, "bytes"], [-1], f"{CP}.top_logprobs[0].bytes[0] must be an integer in [0, 256), got -1"),
    # OpenAI legacy completions
    (COMPLETION, [*Q, "tokens"], DELETE, f"{QP}.tokens is missing"),
    (COMPLETION, [*Q, "tokens"], "The a b", f"{QP}.tokens must be a list, got a string 'The a b'"),
    (COMPLETION, [*Q, "tokens", 1], 7, f"{QP}.tokens[1] must be a string, got a number 7"),
    (COMPLETION, [*Q, "token_logprobs"], DELETE, f"{QP}.token_logprobs is missing"),
    (COMPLETION, [*Q, "token_logprobs"], [None, -0.5], f"{QP}.token_logprobs has 2 entries but tokens has 3"),
    (COMPLETION, [*Q, "token_logprobs", 2], None, f"{QP}.token_logprobs[2] is null; only the first token (of an echoed prompt) may be"),
    (COMPLETION, [*Q, "token_logprobs", 1], "x", f"{QP}.token_logprobs[1] must be a number or null, got a string 'x'"),
    (COMPLETION, [*Q, "top_logprobs"], [None], f"{QP}.top_logprobs has 1 entry but tokens has 3"),
    (COMPLETION, [*Q, "top_logprobs"], "x", f"{QP}.top_logprobs must be a list or null, got a string 'x'"),
    (COMPLETION, [*Q, "top_logprobs", 1], [" a"], f"{QP}.top_logprobs[1] must be an object or null, got a list [' a']"),
    (COMPLETION, [*Q, "top_logprobs", 1, " c"], "x", f"{QP}.top_logprobs[1][' c'] must be a number, got a string 'x'"),
    (COMPLETION, [*Q, "top_logprobs", 2, " b"], 1.0, f"{QP}.top_logprobs[2][' b'] must be a log-probability (<= 0), got 1.0"),
    # vLLM prompt_logprobs
    (VLLM_CHAT, ["prompt_logprobs"], "x", "prompt_logprobs must be a list or null, got a string 'x'"),
    (VLLM_CHAT, R, [1], "prompt_logprobs[1] must be an object or null, got a list [1]"),
    (VLLM_CHAT, R, {}, "prompt_logprobs[1] is empty: it must hold the prompt token"),
    (VLLM_CHAT, R, None, "prompt_logprobs[1] is null; only the first prompt token may be"),
    (VLLM_CHAT, [*R, "abc"], {"logprob": -1.0}, "prompt_logprobs[1]['abc'] is not a token id (the keys are token ids)"),
    (VLLM_CHAT, [*R, "9906"], -9.3, "prompt_logprobs[1]['9906'] must be an object, got a number -9.3"),
    (VLLM_CHAT, [*R, "9906", "logprob"], "x", "prompt_logprobs[1]['9906'].logprob must be a number, got a string 'x'"),
    (VLLM_CHAT, [*R, "791", "logprob"], DELETE, "prompt_logprobs[1]['791'].logprob is missing"),
    (VLLM_CHAT, [*R, "9906", "decoded_token"], 5, "prompt_logprobs[1]['9906'].decoded_token must be a string or null, got a number 5"),
    (VLLM_CHAT, ["prompt_token_ids"], "x", "prompt_token_ids must be a list or null, got a string 'x'"),
    (VLLM_CHAT, ["prompt_token_ids"], [128000], "prompt_token_ids has 1 entry but prompt_logprobs has 2"),
    (VLLM_CHAT, ["prompt_token_ids", 1], "x", "prompt_token_ids[1] must be a token id (an integer >= 0), got 'x'"),
    (VLLM_CHAT, ["prompt_token_ids", 1], 5, "prompt_logprobs[1] has no entry for the prompt token 5 (prompt_token_ids[1])"),
    (VLLM_COMPLETION, ["choices", 0, *R, "9906", "logprob"], 1.0, "choices[0].prompt_logprobs[1]['9906'].logprob must be a log-probability (<= 0), got 1.0"),
    # Gemini
    (GEMINI, ["candidates"], {}, "candidates must be a list, got an object {}"),
    (GEMINI, ["candidates", 0], 1, "candidates[0] must be an object, got a number 1"),
    (GEMINI, ["candidates", 0, "index"], 1.5, "candidates[0].index must be an integer, got a number 1.5"),
    (GEMINI, G, DELETE, f"{GP} is missing: the request did not set generationConfig.responseLogprobs"),
    (GEMINI, G, [], f"{GP} must be an object or null, got a list []"),
    (GEMINI, [*G, "chosenCandidates"], {}, f"{GP}.chosenCandidates must be a list, got an object {{}}"),
    (GEMINI, [*G, "topCandidates"], [{}, {}], f"{GP}.topCandidates has 2 entries but chosenCandidates has 1"),
    (GEMINI, [*G, "chosenCandidates", 0], "a", f"{GP}.chosenCandidates[0] must be an object, got a string 'a'"),
    (GEMINI, [*G, "chosenCandidates", 0, "logProbability"], "x", f"{GP}.chosenCandidates[0].logProbability must be a number, got a string 'x'"),
    (GEMINI, [*G, "chosenCandidates", 0, "token"], 1, f"{GP}.chosenCandidates[0].token must be a string, got a number 1"),
    (GEMINI, [*G, "chosenCandidates", 0, "tokenId"], -3, f"{GP}.chosenCandidates[0].tokenId must be a token id (an integer >= 0), got -3"),
    (GEMINI, [*G, "chosenCandidates", 0, "tokenId"], 2**64, f"{GP}.chosenCandidates[0].tokenId must be a token id (an integer >= 0), got 18446744073709551616"),
    (GEMINI, [*G, "topCandidates", 0], [], f"{GP}.topCandidates[0] must be an object, got a list []"),
    (GEMINI, [*G, "topCandidates", 0, "candidates"], "x", f"{GP}.topCandidates[0].candidates must be a list, got a string 'x'"),
    (GEMINI, [*G, "topCandidates", 0, "candidates", 1, "logProbability"], 2.0, f"{GP}.topCandidates[0].candidates[1].logProbability must be a log-probability (<= 0), got 2.0"),
    # batch-API wrappers: the path goes through them
    (OPENAI_BATCH, ["response", "body", *C, "logprob"], "x", f"response.body.{CP}.logprob must be a number, got a string 'x'"),
]  # fmt: skip


def mutated(record, path, value):
    rec = copy.deepcopy(record)
    node = rec
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return rec


@pytest.mark.parametrize("record, path, value, message", MALFORMED)
def test_malformed_field(record, path, value, message, tmp_path):
    # the malformed record is line 3 of a file (after a good record and a blank line) ...
    file = tmp_path / "bad.jsonl"
    bad = json.dumps(mutated(record, path, value))
    file.write_text(json.dumps(record) + "\n\n" + bad + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=exact(f"{file}:3: {message}")):
        read(file)
    # ... or skipped and counted
    with pytest.warns(UserWarning) as warned:
        b = read(file, errors="skip")
    assert b.skipped == 1 and list(b.skipped_records) == [2] and list(b.record[-1:]) == [3]
    assert f"skipped 1 malformed record(s) of 3 in {file}; the first: {file}:3: {message}" in str(
        warned[0].message
    )
    good = read(record)
    assert b.n_tokens == 2 * good.n_tokens
    # parsed records name the record, a single dict names nothing but the field
    with pytest.raises(ValueError, match=exact(f"record 1: {message}")):
        read([record, json.loads(bad)])
    with pytest.raises(ValueError, match=exact(message)):
        read(json.loads(bad))


def test_malformed_lines(tmp_path):
    good = json.dumps(CHAT)
    file = tmp_path / "lines.jsonl"
    cases = [
        ("not json", "not valid JSON: Expecting value (column 1)"),
        ('{"choices": [', "not valid JSON: Expecting value (column 14)"),
        ("[1, 2]", "a record must be a JSON object, got [1, 2]"),
        ('"text"', "a record must be a JSON object, got 'text'"),
        (json.dumps(GEMINI), "this is a gemini record, but the source began with openai_chat records"),
        (json.dumps(COMPLETION), "this is a openai_completions record, but the source began with openai_chat records"),
    ]  # fmt: skip
    for line, message in cases:
        file.write_text(f"{good}\n{line}\n")
        with pytest.raises(ValueError, match=exact(f"{file}:2: {message}")):
            read(file)
    file.write_bytes(good.encode() + b'\n{"choices": "\xff"}\n')
    with pytest.raises(ValueError, match=exact(
        f"{file}:2: not valid UTF-8 text (invalid start byte at byte 13)"
    )):  # fmt: skip
        read(file)
    # the first line sets nothing when it is malformed: skipped, the second sets the format
    file.write_text(f"oops\n{good}\n")
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        assert read(file, errors="skip").format == "openai_chat"
    file.write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(ValueError, match=exact(
        f"{file}:1: cannot tell the format of this record: expected 'choices' (OpenAI or vLLM "
        f"chat or completions), 'candidates' (Gemini) or 'sequences' with 'logits' or 'scores' "
        f"(Hugging Face generate); got keys ['bar', 'foo']"
    )):  # fmt: skip
        read(file)


def test_malformed_json_documents(tmp_path):
    file = tmp_path / "doc.json"
    file.write_text('[\n  {"choices": []},\n  {"choices": [}\n]\n')
    with pytest.raises(
        ValueError, match=exact(f"{file}:3: not valid JSON: Expecting value (column 16)")
    ):
        read(file)
    file.write_text('{\n  "candidates": [\n    {"logprobsResult": 1}\n  ]\n}\n')
    with pytest.raises(ValueError, match=exact(
        f"{file}: candidates[0].logprobsResult must be an object or null, got a number 1"
    )):  # fmt: skip
        read(file)
    file.write_text(json.dumps([CHAT, mutated(CHAT, [*C, "logprob"], "x")], indent=1))
    with pytest.raises(ValueError, match=exact(
        f"{file}: record 1: {CP}.logprob must be a number, got a string 'x'"
    )):  # fmt: skip
        read(file)


def test_nothing_to_read(tmp_path):
    file = tmp_path / "empty.jsonl"
    file.write_text("\n\n")
    with pytest.raises(ValueError, match=exact(f"{file} holds no records")):
        read(file)
    with pytest.raises(ValueError, match=exact("the records holds no records")):
        read([])
    file.write_text("x\ny\n")
    with pytest.raises(ValueError, match=exact(
        f"none of the 2 records of {file} could be read; the first error: {file}:1: not valid "
        f"JSON: Expecting value (column 1)"
    )):  # fmt: skip
        read(file, errors="skip")


def test_empty_choices_are_empty_sequences():
    b = read({"choices": [{"logprobs": {"content": None}}, {"logprobs": {"content": []}}]})
    assert b.n_sequences == 2 and b.n_tokens == 0 and b.k == 0
    assert b.token_logprob.shape == (0,) and b.top_logprobs.shape == (0, 0)
    assert_equal(b.offsets, [0, 0, 0])


def test_bad_arguments():
    with pytest.raises(
        ValueError, match=re.escape("format must be 'auto' or one of 'openai_chat'")
    ):
        read(CHAT, format="xml")
    with pytest.raises(ValueError, match=exact("errors must be 'raise' or 'skip', got 'ignore'")):
        read(CHAT, errors="ignore")
    with pytest.raises(TypeError, match=exact("progress must be True, False or None, got str")):
        read(CHAT, progress="yes")
    with pytest.raises(ValueError, match=exact("top_k must be >= 0, got -1")):
        read(CHAT, top_k=-1)
    with pytest.raises(TypeError, match="source must be a path, a file object"):
        read(42)
    with pytest.raises(FileNotFoundError):
        read("/nonexistent/file.jsonl")


# --- the record ----------------------------------------------------------------------------


def test_logprob_batch_record():
    b = read(DATA / "openai_chat.jsonl")
    assert (
        repr(b) == "LogprobBatch(format='openai_chat', n_sequences=5, n_tokens=8, k=2, skipped=0)"
    )
    with pytest.raises(AttributeError, match="LogprobBatch is immutable"):
        b.format = "x"
    with pytest.raises(AttributeError, match="LogprobBatch has no field 'nope'"):
        _ = b.nope
    assert "tokens" in b and "token_ids" not in b and len(b) == len(list(b))
    assert b["offsets"] is b.offsets
    with pytest.raises(TypeError, match="unknown LogprobBatch fields"):
        logcal.io.LogprobBatch(foo=1)
    g = read(DATA / "gemini.json")
    with pytest.raises(AttributeError, match="this gemini source gives no token bytes"):
        _ = g.token_bytes


# --- streaming -----------------------------------------------------------------------------

_TOKEN = (
    '{{"token":"{t}","logprob":{lp},"bytes":[{b}],"top_logprobs":[{{"token":"{t}","logprob":{lp},'
    '"bytes":[{b}]}},{{"token":"b","logprob":-2.5,"bytes":[98]}},{{"token":"c","logprob":-3.5,'
    '"bytes":[99]}}]}}'
)
_RECORD = (
    '{{"id":"chatcmpl-{i}","object":"chat.completion","created":1718000000,'
    '"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant",'
    '"content":"ab","refusal":null}},"logprobs":{{"content":[{content}],"refusal":null}},'
    '"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":2,'
    '"total_tokens":14}},"system_fingerprint":"fp_0ba0d124f1"}}\n'
)


def write_big(path, n):
    with open(path, "w") as f:
        for i in range(n):
            t = "abcdefgh"[i % 8]
            lp = -0.25 - (i % 7) / 100
            content = ",".join(_TOKEN.format(t=t, lp=lp, b=ord(t)) for _ in range(2))
            f.write(_RECORD.format(i=i, content=content))


def test_large_jsonl_streams_with_bounded_memory(tmp_path):
    # 20,000 OpenAI chat completions of 2 tokens (15 MB): the size is kept modest because
    # tracemalloc slows json parsing several-fold; memory does not depend on it.
    n = 20_000
    path = tmp_path / "big.jsonl"
    write_big(path, n)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        b = read(path, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (b.n_sequences, b.n_tokens, b.k) == (n, 2 * n, 3)
    result = sum(v.nbytes for v in b.values() if isinstance(v, np.ndarray))
    # The text is never held: the peak is the result (about 85 bytes a token here, against
    # 370 in the file) plus a bounded working set (packing buffers, one pending chunk).
    assert peak < size / 2, (peak, size)
    assert peak < 2 * result + (2 << 20), (peak, result)
    i = np.arange(n)
    assert_close(b.token_logprob[1::2], -0.25 - (i % 7) / 100, rtol=0, atol=1e-12)
    assert_equal(b.tokens[::2], np.array(list("abcdefgh"), dtype=object)[i % 8])
    assert_equal(b.top_logprobs[-1], [-0.25 - ((n - 1) % 7) / 100, -2.5, -3.5])


class _LinesOnly:
    """A file that can only be iterated line by line: read() would hold it whole."""

    name = "lines-only.jsonl"

    def __init__(self, lines):
        self.lines = lines

    def __iter__(self):
        return iter(self.lines)

    def read(self, *args):
        raise AssertionError("the JSONL reader called read()")


def test_jsonl_is_read_line_by_line():
    lines = [json.dumps(CHAT) + "\n"] * 5
    b = read(_LinesOnly(lines))
    assert b.n_sequences == 5
    bad = [*lines, '{"choices": 1}\n']
    with pytest.raises(
        ValueError, match=exact("lines-only.jsonl:6: choices must be a list, got a number 1")
    ):
        read(_LinesOnly(bad))


def test_progress_bar(tmp_path, capsys, monkeypatch):
    path = tmp_path / "some.jsonl"
    write_big(path, 50)
    read(path)
    assert capsys.readouterr().err == ""  # small files: no bar
    read(path, progress=True)
    err = capsys.readouterr().err
    assert "some.jsonl" in err and "B" in err
    monkeypatch.setattr(logcal.io._read, "PROGRESS_BYTES", 1000)
    read(path)
    assert "some.jsonl" in capsys.readouterr().err
    read(path, progress=False)
    assert capsys.readouterr().err == ""
    gz = tmp_path / "some.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read(gz, progress=True).n_sequences == 50
    assert "some.jsonl.gz" in capsys.readouterr().err


# --- Hugging Face generate outputs ----------------------------------------------------------


def _generate(rng, batch=3, prompt=4, steps=5, vocab=11):
    logits = tuple(rng.standard_normal((batch, vocab)).astype(np.float32) for _ in range(steps))
    sequences = rng.integers(0, vocab, size=(batch, prompt + steps))
    return sequences, logits


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_hugging_face_numpy_dict():
    rng = np.random.default_rng(0)
    sequences, logits = _generate(rng)
    b = read({"sequences": sequences, "logits": logits}, top_k=3)
    assert b.format == "huggingface"
    assert_equal(b.offsets, [0, 5, 10, 15])
    assert_equal(b.choice, [0, 1, 2])
    assert_equal(b.record, [0, 0, 0])
    lp = _log_softmax(np.stack(logits, axis=1))  # [B, N, V]
    gen = sequences[:, 4:]
    want = np.take_along_axis(lp, gen[..., None], -1)[..., 0]
    assert_close(b.token_logprob, want.reshape(-1), rtol=1e-5, atol=1e-6)
    assert b.tokens.dtype == np.int64
    assert_equal(b.tokens, gen.reshape(-1))
    assert_equal(b.token_ids, b.tokens)
    top = np.argsort(-lp, axis=-1, kind="stable")[..., :3].reshape(-1, 3)
    assert_equal(b.top_tokens, top)
    assert_close(
        b.top_logprobs, np.sort(lp, -1)[..., ::-1][..., :3].reshape(-1, 3), rtol=1e-5, atol=1e-6
    )
    assert not b.prompt.any()


def test_hugging_face_torch_generate_output():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    sequences, logits = _generate(rng, batch=2, steps=4)
    want = read({"sequences": sequences, "logits": logits}, top_k=2)

    class GenerateDecoderOnlyOutput(OrderedDict):  # transformers' ModelOutput is an OrderedDict
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

    out = GenerateDecoderOnlyOutput(
        sequences=torch.from_numpy(sequences),
        scores=tuple(torch.from_numpy(x) for x in logits),
        logits=tuple(torch.from_numpy(x) for x in logits),
    )
    ns = types.SimpleNamespace(sequences=out["sequences"], logits=None, scores=out["scores"])
    for source in (out, ns, [out]):
        got = read(source, top_k=2)
        assert got.format == "huggingface"
        assert_close(got.token_logprob, want.token_logprob, rtol=1e-6, atol=1e-7)
        assert_equal(got.top_tokens, want.top_tokens)
    bf16 = {"sequences": out["sequences"], "logits": tuple(x.bfloat16() for x in out["logits"])}
    got = read(bf16, top_k=2)
    assert_close(got.token_logprob, want.token_logprob, rtol=0, atol=0.05)


def test_hugging_face_eos_and_errors():
    rng = np.random.default_rng(2)
    sequences, logits = _generate(rng, batch=2, prompt=2, steps=4, vocab=7)
    sequences[0, 2:] = [3, 6, 0, 0]  # row 0 ends at step 2 (eos 6), then pads
    sequences[1, 2:] = [1, 2, 3, 4]  # row 1 never ends
    b = read({"sequences": sequences, "logits": logits}, eos_token_id=6, top_k=0)
    assert_equal(b.offsets, [0, 2, 6])
    assert_equal(b.tokens, [3, 6, 1, 2, 3, 4])
    assert b.k == 0
    b = read({"sequences": sequences, "logits": logits}, eos_token_id=[5, 3])
    assert_equal(b.offsets, [0, 1, 4])
    cases = [
        ({"sequences": sequences[:1], "logits": logits},
         "logits has 2 rows per step but sequences has 1; beam search outputs (rows per beam) are not supported"),
        ({"sequences": sequences[:, :3], "logits": logits},
         "logits has 4 steps but sequences has only 3 tokens"),
        ({"sequences": sequences + 7, "logits": logits},
         "sequences[0, 2] = 10 is outside the vocabulary [0, 7) of logits"),
        ({"sequences": sequences, "logits": ()}, "logits is an empty tuple: nothing was generated"),
        ({"sequences": sequences.astype(float), "scores": logits},
         "sequences must be a [batch, length] array of token ids, got float64 of shape (2, 6)"),
        ({"sequences": sequences, "logits": logits[0]},
         "logits must be a tuple of [batch, vocab] arrays or one [batch, steps, vocab] array, got shape (2, 7)"),
    ]  # fmt: skip
    for source, message in cases:
        with pytest.raises(ValueError, match=exact(message)):
            read(source)
    with pytest.raises(ValueError, match=exact(f"record 1: {cases[0][1]}")):
        read([{"sequences": sequences, "logits": logits}, cases[0][0]])


# --- the demo data: a real model --------------------------------------------------------------


def test_demo_data_is_consistent_and_real():
    demo = logcal.io.load_demo()
    t = demo.targets.shape[0]
    assert demo.logits.shape == (t, 27) and demo.logits.dtype == np.float32
    assert demo.targets.dtype == np.int64 and demo.offsets.dtype == np.int64
    assert demo.vocab == ".abcdefghijklmnopqrstuvwxyz"
    assert len(demo.names) == len(demo.offsets) - 1 == 1025 and demo.offsets[-1] == t
    assert (np.diff(demo.offsets) >= 2).all()
    ends = demo.targets[demo.offsets[1:] - 1]
    assert (ends == 0).all()  # every name ends with "."
    assert demo.names[:3] == ["bulbasaur", "ivysaur", "venusaur"]
    s = logcal.token_stats(demo.logits, demo.targets)
    lp = s.target_logprob.astype(np.float64)
    # Measured: mean log p = -2.106 per character (perplexity 8.2), against -log 27 = -3.296
    # for a uniform guess; the top-1 accuracy is 36.7 % against 3.7 %.
    assert lp.mean() > -2.2
    assert (s.argmax == demo.targets).mean() > 0.35
    pikachu = demo.names.index("pikachu")
    lo, hi = demo.offsets[pikachu], demo.offsets[pikachu + 1]
    assert abs(lp[lo:hi].sum() - (-20.734)) < 1e-3  # the model's own check value


def test_demo_jsonl_round_trip():
    demo = logcal.io.load_demo()
    b = read(logcal.io.demo_path())
    assert b.format == "openai_chat" and b.k == 5
    assert_equal(b.offsets, demo.offsets)
    s = logcal.token_stats(demo.logits, demo.targets, top_k=5)
    # the JSONL holds the same predictions, written to 6 decimals
    assert_close(b.token_logprob, s.target_logprob, rtol=0, atol=1e-6)
    assert_close(b.top_logprobs, s.topk_logprobs, rtol=0, atol=1e-6)
    vocab = np.array(list(demo.vocab), dtype=object)
    assert_equal(b.tokens, vocab[demo.targets])
    assert_equal(b.top_tokens, vocab[s.topk_ids])
    assert [b.text(i) for i in (0, 24)] == ["bulbasaur.", "pikachu."]
    # what calibration needs: the top choice's confidence and whether it was right
    confidence = np.exp(b.top_logprobs[:, 0])
    correct = b.tokens == b.top_tokens[:, 0]
    assert_equal(correct, s.topk_ids[:, 0] == demo.targets)
    assert ((confidence > 0) & (confidence <= 1)).all()
    count, edges = np.histogram(confidence, bins=10, range=(0, 1))
    hits, _ = np.histogram(confidence, bins=edges, weights=correct.astype(np.float64))
    assert count.sum() == b.n_tokens and (hits <= count).all()
    accuracy = hits[count > 0] / count[count > 0]
    assert ((accuracy >= 0) & (accuracy <= 1)).all()


def test_demo_path_errors():
    with pytest.raises(
        FileNotFoundError, match=re.escape("logcal has no demo data file 'nope.txt'")
    ):
        logcal.io.demo_path("nope.txt")
    licence = logcal.io.demo_path("LICENSE-pokepy.txt").read_text()
    assert "MIT License" in licence and "Anay Shekhar" in licence
