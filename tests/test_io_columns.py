"""io_add_tokens, the compiled loop that fills the readers' token columns: values, reference
counts, and a failed call leaving the columns as they were."""

from __future__ import annotations

import sys

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcal._core_cpu import io_add_tokens
from logcal.io._batch import _COLUMNS, _Interner, _new_columns
from logcal.io._schema import ChatEntry, TopEntry


def unpacked(columns):
    return {name: np.frombuffer(c, dtype).tolist() for (name, dtype), c in zip(_COLUMNS, columns)}


def chat(token, logprob, raw=None, tops=None):
    top = None if tops is None else [TopEntry(t, v) for t, v in tops]
    return ChatEntry(token, logprob, raw, top)


def test_chat_entries_and_tuples_fill_the_columns():
    cols, strings, raw = _new_columns(), _Interner(), _Interner(convert=bytes)
    entries = [chat("Paris", -0.5, (80, 97), [("Paris", -0.5), ("Lyon", -2.0)]), chat("!", -1)]
    assert io_add_tokens(cols, 7, [(0, entries, [11, 12]), (3, [], None)], strings, raw) == 2
    tuples = [(float("nan"), None, 5, None, True, []), (-0.25, "Lyon", None, None, False,
              [(-0.25, "Lyon", None), (-3.0, None, 9)])]  # fmt: skip
    assert io_add_tokens(cols, 8, [(-1, tuples, None)], strings, raw) == 4
    got = unpacked(cols)
    assert got["lp"][:2] + got["lp"][3:] == [-0.5, -1.0, -0.25] and np.isnan(got["lp"][2])
    assert got["code"] == [0, 2, -1, 1]  # Paris, !, None, Lyon
    assert strings.values == ["Paris", "Lyon", "!"]
    assert got["id"] == [11, 12, 5, -1]
    assert got["bcode"] == [0, -1, -1, -1] and raw.values == [b"Pa"]
    assert got["prompt"] == [False, False, True, False]
    assert got["width"] == [2, 0, 0, 2]
    assert got["top_lp"] == [-0.5, -2.0, -0.25, -3.0]
    assert got["top_code"] == [0, 1, 1, -1]
    assert got["top_id"] == [-1, -1, -1, 9]
    assert (got["seq_len"], got["seq_rec"], got["seq_choice"]) == ([2, 0, 2], [7, 7, 8], [0, 3, -1])


def test_decoded_entries_and_reference_counts():
    line = (
        b'{"token": "a", "logprob": -1.5, "bytes": [97], '
        b'"top_logprobs": [{"token": "b", "logprob": -0.5}]}'
    )
    entries = msgspec.json.decode(b"[" + b",".join([line] * 50) + b"]", type=list[ChatEntry])
    cols, strings, raw = _new_columns(), _Interner(), _Interner(convert=bytes)
    io_add_tokens(cols, 0, [(0, entries, None)], strings, raw)
    held = [sys.getrefcount(x) for x in (entries[0], entries[0].token, entries[0].bytes)]
    codes = [sys.getrefcount(v) for v in strings.values]
    for _ in range(100):
        io_add_tokens(cols, 0, [(0, entries, None)], strings, raw)
    assert [sys.getrefcount(x) for x in (entries[0], entries[0].token, entries[0].bytes)] == held
    assert [sys.getrefcount(v) for v in strings.values] == codes
    assert len(np.frombuffer(cols[0])) == 101 * 50 and strings.values == ["a", "b"]


@pytest.mark.parametrize(
    "sequences, message",
    [
        ([(0, [(1.0, "x", None, None, False, [])], None), (1, "no", None)],
         "io_add_tokens: a sequence's tokens must be a list or tuple, got str"),
        ([(0, [(1.0, "x", None, None, False, [])], None), (1, [(-1.0, "y", "7", None, 0, [])],
          None)], "io_add_tokens: a token id must be an int or None, got str"),
        ([(0, [chat("a", -1.0)], None), (0, [(1.0, "x", None, None, False, [(1.0,)])], None)],
         "io_add_tokens: a top entry must be a tuple of 3"),
        ([(0, [chat("a", -1.0), "b"], None)],
         "io_add_tokens: expected ChatEntry, got str"),
        ([(0, [chat("a", -1.0)], [1, 2])],
         "io_add_tokens: the token ids and the entries differ in length"),
    ],
)  # fmt: skip
def test_a_failed_call_leaves_the_columns_as_they_were(sequences, message):
    cols, strings, raw = _new_columns(), _Interner(), _Interner(convert=bytes)
    io_add_tokens(cols, 0, [(0, [chat("k", -1.0, None, [("k", -1.0)])], None)], strings, raw)
    before = [bytes(c) for c in cols]
    with pytest.raises(TypeError, match="^" + message.replace("(", r"\(") + "$"):
        io_add_tokens(cols, 1, sequences, strings, raw)
    assert [bytes(c) for c in cols] == before


def test_an_error_of_the_interner_is_raised_and_rolled_back():
    class Refusing(_Interner):
        def __missing__(self, value):
            raise KeyError(f"no room for {value!r}")

    cols, raw = _new_columns(), _Interner(convert=bytes)
    with pytest.raises(KeyError, match="no room for 'x'"):
        io_add_tokens(cols, 0, [(0, [chat("x", -1.0)], None)], Refusing(), raw)
    assert all(len(c) == 0 for c in cols)
    with pytest.raises(
        TypeError, match=r"^io_add_tokens: columns must be a tuple of 12 bytearrays$"
    ):
        io_add_tokens(cols[:3], 0, [], _Interner(), raw)


@given(st.lists(st.lists(st.tuples(st.floats(-50, 0), st.sampled_from(["a", "b", None]),
       st.lists(st.tuples(st.floats(-50, 0), st.sampled_from(["a", "c"])), max_size=4)),
       max_size=6), max_size=5))  # fmt: skip
def test_columns_hold_what_was_added(sequences):
    cols, strings, raw = _new_columns(), _Interner(), _Interner(convert=bytes)
    tuples = [[(lp, text, None, None, False, [(v, t, None) for v, t in tops])
               for lp, text, tops in seq] for seq in sequences]  # fmt: skip
    for i, seq in enumerate(tuples):
        io_add_tokens(cols, i, [(i, seq, None)], strings, raw)
    got = unpacked(cols)
    flat = [tok for seq in sequences for tok in seq]
    assert got["lp"] == [lp for lp, _, _ in flat]
    text = [None if c < 0 else strings.values[c] for c in got["code"]]
    assert text == [t for _, t, _ in flat]
    assert got["width"] == [len(tops) for _, _, tops in flat]
    assert got["top_lp"] == [v for _, _, tops in flat for v, _ in tops]
    assert [strings.values[c] for c in got["top_code"]] == [
        t for _, _, tops in flat for _, t in tops
    ]
    assert got["seq_len"] == [len(s) for s in sequences]


def test_text_codes_are_the_interners_through_its_growing_table():
    cols, strings, raw = _new_columns(), _Interner(), _Interner(convert=bytes)
    strings["set from Python"]  # in the dict only: the table learns it when met
    texts = [f"t{i % 700}" * (1 + i % 5) for i in range(3000)] + ["set from Python", "日本", "🙂"]
    tokens = [(-1.0, t, None, None, False, []) for t in texts]
    io_add_tokens(cols, 0, [(0, tokens, None)], strings, raw)
    io_add_tokens(cols, 1, [(0, tokens[::-1], None)], strings, raw)
    codes = np.frombuffer(cols[1], np.int32).tolist()
    assert [strings.values[c] for c in codes] == texts + texts[::-1]
    assert all(strings[t] == c for t, c in zip(texts, codes))
    assert len(strings.values) == len(set(texts)) and len(strings.table) >= 8 * 2 * len(set(texts))
