"""One parser per provider format: a parsed JSON record in, ``[(choice, tokens), ...]`` out.

A token is ``(logprob, text, id, bytes, is_prompt, tops)``, ``tops`` a list of
``(logprob, text, id)`` sorted best first (see :class:`~logcal.io.LogprobBatch`). Every check
that fails raises :class:`RecordError` with the field's path inside the record, for example
``choices[0].logprobs.content[3].logprob``; the reader adds the file and line.
"""

from __future__ import annotations

import math
from typing import Any, Callable

NAN = math.nan
NEG_INF = -math.inf
# OpenAI and vLLM write -9999.0 for a log-probability they do not report; any value at or
# below this (and -inf) reads as -inf: "less likely than anything listed".
SENTINEL = -9999.0
# A log-probability above 0 by no more than this is rounding noise and reads as 0.
POSITIVE_SLACK = 1e-5
_MAX_ID = 2**63 - 1  # token ids are stored as int64

_MISSING = object()

FORMATS = (
    "openai_chat",
    "openai_completions",
    "vllm_chat",
    "vllm_completions",
    "gemini",
    "huggingface",
)


class RecordError(Exception):
    """A malformed field: ``path`` inside the record and what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}" if path else problem)
        self.path = path
        self.problem = problem


def entries(n: int) -> str:
    return "1 entry" if n == 1 else f"{n} entries"


def show(value: Any) -> str:
    """A short repr of a bad value for an error message."""
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _got(value: Any) -> str:
    """``a string 'abc'``, ``a list [1, 2]``, ``null``: the kind and value of a bad input."""
    if value is None:
        return "null"
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {show(value)}"


def _need(value: Any, kind: type, path: str, what: str) -> Any:
    if type(value) is not kind:
        if value is _MISSING:
            raise RecordError(path, "is missing")
        raise RecordError(path, f"must be {what}, got {_got(value)}")
    return value


def _logprob_slow(value: Any, path: str) -> float:
    if value is _MISSING:
        raise RecordError(path, "is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(path, f"must be a number, got {show(value)}")
    x = float(value)
    if math.isnan(x):
        raise RecordError(path, "must be a number, got NaN")
    if x > 0.0:
        if x <= POSITIVE_SLACK:
            return 0.0
        raise RecordError(path, f"must be a log-probability (<= 0), got {show(value)}")
    if x <= SENTINEL:
        return NEG_INF
    return x


def logprob(value: Any, path: Callable[[], str]) -> float:
    """A validated log-probability; ``path`` builds the field's path only on error."""
    if type(value) is float and SENTINEL < value <= 0.0:
        return value
    return _logprob_slow(value, path())


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_ID


def _text_or_id(text: str) -> tuple[str | None, int | None]:
    """vLLM's ``return_tokens_as_token_ids`` renders tokens as ``"token_id:{id}"``."""
    if text.startswith("token_id:") and text[9:].isdigit() and int(text[9:]) <= _MAX_ID:
        return None, int(text[9:])
    return text, None


def _by_logprob(entry: tuple) -> float:
    lp = entry[0]
    return lp if lp == lp else NEG_INF


def _sort(tops: list) -> list:
    # Providers list alternatives best first, except for a sampled token appended or
    # prepended to the top k (vLLM): a stable sort restores the order, keeping ties as given.
    for i in range(1, len(tops)):
        if tops[i][0] > tops[i - 1][0]:
            tops.sort(key=_by_logprob, reverse=True)
            break
    return tops


def _bytes(value: Any, path: Callable[[], str]) -> bytes | None:
    if value is None or value is _MISSING:
        return None
    if type(value) is not list:
        raise RecordError(path(), f"must be a list of byte values or null, got {_got(value)}")
    try:
        return bytes(value)
    except (TypeError, ValueError):
        for j, b in enumerate(value):
            if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < 256:
                raise RecordError(
                    f"{path()}[{j}]", f"must be an integer in [0, 256), got {show(b)}"
                ) from None
        raise  # pragma: no cover


# --- OpenAI chat completions (and vLLM's chat server) ---------------------------------------


def _chat_entry(entry: Any, path: str, top: bool) -> tuple:
    if type(entry) is not dict:
        raise RecordError(path, f"must be an object, got {_got(entry)}")
    token = _need(entry.get("token", _MISSING), str, f"{path}.token", "a string")
    lp = logprob(entry.get("logprob", _MISSING), lambda: f"{path}.logprob")
    text, tid = _text_or_id(token)
    raw = _bytes(entry.get("bytes"), lambda: f"{path}.bytes")
    if top:
        return lp, text, tid
    tops_in = entry.get("top_logprobs")
    tops: list = []
    if tops_in is not None:
        if type(tops_in) is not list:
            raise RecordError(
                f"{path}.top_logprobs", f"must be a list or null, got {_got(tops_in)}"
            )
        tops = _sort(
            [_chat_entry(t, f"{path}.top_logprobs[{j}]", True) for j, t in enumerate(tops_in)]
        )
    return lp, text, tid, raw, False, tops


def _plain_entry(entry: Any) -> tuple | None:
    """(logprob, token, bytes or None) of an entry in the common form -- an object with a
    string token (not vLLM's token_id:N), a float log-probability in (SENTINEL, 0] and null,
    absent or valid bytes -- else None, and the caller takes the checked path, which names any
    problem."""
    if type(entry) is not dict:
        return None
    token, lp, raw = entry.get("token"), entry.get("logprob"), entry.get("bytes")
    if type(token) is not str or type(lp) is not float or not SENTINEL < lp <= 0.0:
        return None
    if token.startswith("token_id:"):
        return None
    if raw is not None:
        if type(raw) is not list:
            return None
        try:
            raw = bytes(raw)
        except (TypeError, ValueError):
            return None
    return lp, token, raw


def _chat_tokens(content: list, path: str) -> list:
    """The token entries of a choice. The common well-formed entry takes a fast path that
    builds no field paths; anything else goes through _chat_entry, which checks every field
    and names the first bad one (the results are the same either way)."""
    out = []
    for i, entry in enumerate(content):
        tops_in = entry.get("top_logprobs") if type(entry) is dict else None
        head = _plain_entry(entry)
        if head is None or not (tops_in is None or type(tops_in) is list):
            out.append(_chat_entry(entry, f"{path}[{i}]", False))
            continue
        tops = []
        for j, t in enumerate(tops_in or ()):
            plain = _plain_entry(t)
            if plain is None:
                tops.append(_chat_entry(t, f"{path}[{i}].top_logprobs[{j}]", True))
            else:
                tops.append((plain[0], plain[1], None))
        lp, token, raw = head
        out.append((lp, token, None, raw, False, _sort(tops)))
    return out


def _choices(rec: dict, base: str) -> list:
    choices = rec.get("choices", _MISSING)
    return _need(choices, list, f"{base}choices", "a list")


def _choice_logprobs(choice: Any, path: str) -> dict:
    if type(choice) is not dict:
        raise RecordError(path, f"must be an object, got {_got(choice)}")
    lp = choice.get("logprobs", _MISSING)
    if lp is None or lp is _MISSING:
        state = "is null" if lp is None else "is missing"
        raise RecordError(f"{path}.logprobs", f"{state}: the request did not ask for logprobs")
    if type(lp) is not dict:
        raise RecordError(f"{path}.logprobs", f"must be an object, got {_got(lp)}")
    return lp


def _index(choice: dict, j: int, path: str) -> int:
    index = choice.get("index", j)
    if isinstance(index, bool) or not isinstance(index, int):
        raise RecordError(f"{path}.index", f"must be an integer, got {show(index)}")
    return index


def parse_chat(rec: dict, base: str, vllm: bool) -> list:
    sequences = []
    if vllm:
        prompt = _vllm_prompt(rec, base)
        if prompt is not None:
            sequences.append((-1, prompt))
    for j, choice in enumerate(_choices(rec, base)):
        path = f"{base}choices[{j}]"
        lp = _choice_logprobs(choice, path)
        field = "content"
        content = lp.get("content")
        if content is None and lp.get("refusal") is not None:
            field, content = "refusal", lp["refusal"]  # a refused request's message
        if content is None:
            content = []  # no message text (a tool call, for example): an empty sequence
        _need(content, list, f"{path}.logprobs.{field}", "a list or null")
        sequences.append(
            (_index(choice, j, path), _chat_tokens(content, f"{path}.logprobs.{field}"))
        )
    return sequences


# --- OpenAI legacy completions (and vLLM's completions server) -------------------------------


def _completion_tokens(lp: dict, path: str) -> list:
    tokens = _need(lp.get("tokens", _MISSING), list, f"{path}.tokens", "a list")
    values = _need(lp.get("token_logprobs", _MISSING), list, f"{path}.token_logprobs", "a list")
    if len(values) != len(tokens):
        raise RecordError(
            f"{path}.token_logprobs", f"has {entries(len(values))} but tokens has {len(tokens)}"
        )
    tops_in = lp.get("top_logprobs")
    if tops_in is not None:
        _need(tops_in, list, f"{path}.top_logprobs", "a list or null")
        if len(tops_in) != len(tokens):
            raise RecordError(
                f"{path}.top_logprobs", f"has {entries(len(tops_in))} but tokens has {len(tokens)}"
            )
    out = []
    for i, token in enumerate(tokens):
        if type(token) is not str:
            raise RecordError(f"{path}.tokens[{i}]", f"must be a string, got {_got(token)}")
        text, tid = _text_or_id(token)
        value = values[i]
        if value is None:
            if i != 0:
                raise RecordError(
                    f"{path}.token_logprobs[{i}]",
                    "is null; only the first token (of an echoed prompt) may be",
                )
            value = NAN
        else:
            value = logprob(value, lambda i=i: f"{path}.token_logprobs[{i}]")
        tops: list = []
        top = None if tops_in is None else tops_in[i]
        if top is not None:
            if type(top) is not dict:
                raise RecordError(
                    f"{path}.top_logprobs[{i}]", f"must be an object or null, got {_got(top)}"
                )
            for key, v in top.items():
                tlp = logprob(v, lambda i=i, key=key: f"{path}.top_logprobs[{i}][{key!r}]")
                tops.append((tlp, *_text_or_id(key)))
            _sort(tops)
        out.append((value, text, tid, None, False, tops))
    return out


def parse_completions(rec: dict, base: str, vllm: bool) -> list:
    sequences = []
    prompt_done = False
    for j, choice in enumerate(_choices(rec, base)):
        path = f"{base}choices[{j}]"
        lp = _choice_logprobs(choice, path)
        tokens = _completion_tokens(lp, f"{path}.logprobs")
        if vllm:
            prompt = _vllm_prompt(choice, f"{path}.")
            if prompt is not None:
                if tokens and tokens[0][0] != tokens[0][0] and len(prompt) <= len(tokens):
                    # echo=True: the choice starts with the prompt (its first log-probability
                    # is null) and prompt_logprobs repeats it; mark those tokens, once.
                    n = len(prompt)
                    tokens = [(*t[:4], True, t[5]) for t in tokens[:n]] + tokens[n:]
                elif not prompt_done:
                    # Every choice carries the same prompt_logprobs: one prompt per record.
                    sequences.append((-1, prompt))
                    prompt_done = True
        sequences.append((_index(choice, j, path), tokens))
    return sequences


# --- vLLM prompt_logprobs ------------------------------------------------------------------


def _vllm_prompt(owner: dict, base: str) -> list | None:
    """``prompt_logprobs``: ``[null, {"791": {"logprob", "rank", "decoded_token"}}, ...]``.

    The prompt token of a position is ``prompt_token_ids[i]`` where given; otherwise the
    first entry of the dict, where vLLM puts it (``append_logprobs_for_next_position``).
    """
    plist = owner.get("prompt_logprobs")
    if plist is None:
        return None
    path = f"{base}prompt_logprobs"
    _need(plist, list, path, "a list or null")
    ids = owner.get("prompt_token_ids")
    if ids is not None:
        _need(ids, list, f"{base}prompt_token_ids", "a list or null")
        if len(ids) != len(plist):
            raise RecordError(
                f"{base}prompt_token_ids",
                f"has {entries(len(ids))} but prompt_logprobs has {len(plist)}",
            )
        for i, tid in enumerate(ids):
            if not _is_id(tid):
                raise RecordError(
                    f"{base}prompt_token_ids[{i}]",
                    f"must be a token id (an integer >= 0), got {show(tid)}",
                )
    out = []
    for i, entry in enumerate(plist):
        if entry is None:
            if i != 0:
                raise RecordError(f"{path}[{i}]", "is null; only the first prompt token may be")
            out.append((NAN, None, None if ids is None else ids[0], None, True, []))
            continue
        if type(entry) is not dict:
            raise RecordError(f"{path}[{i}]", f"must be an object or null, got {_got(entry)}")
        if not entry:
            raise RecordError(f"{path}[{i}]", "is empty: it must hold the prompt token")
        tops = []
        chosen = None
        want = None if ids is None else ids[i]
        for key, value in entry.items():
            kpath = f"{path}[{i}][{key!r}]"
            try:
                tid = int(key)
            except (TypeError, ValueError):
                tid = -1
            if isinstance(key, bool) or not 0 <= tid <= _MAX_ID:
                raise RecordError(kpath, "is not a token id (the keys are token ids)")
            if type(value) is not dict:
                raise RecordError(kpath, f"must be an object, got {_got(value)}")
            lp = logprob(value.get("logprob", _MISSING), lambda kpath=kpath: f"{kpath}.logprob")
            text = value.get("decoded_token")
            if text is not None and type(text) is not str:
                raise RecordError(
                    f"{kpath}.decoded_token", f"must be a string or null, got {_got(text)}"
                )
            tops.append((lp, text, tid))
            if chosen is None if want is None else tid == want:
                chosen = tops[-1]
        if chosen is None:
            raise RecordError(
                f"{path}[{i}]", f"has no entry for the prompt token {want} (prompt_token_ids[{i}])"
            )
        out.append((chosen[0], chosen[1], chosen[2], None, True, _sort(tops)))
    return out


# --- Gemini (generateContent, REST camelCase or the Python SDK's snake_case) ---------------


def _get(d: dict, camel: str, snake: str, default: Any = _MISSING) -> tuple[Any, str]:
    if camel in d:
        return d[camel], camel
    if snake in d:
        return d[snake], snake
    return default, camel


def _gemini_entry(entry: Any, path: str) -> tuple:
    if type(entry) is not dict:
        raise RecordError(path, f"must be an object, got {_got(entry)}")
    # proto3 JSON leaves out fields at their default value: a missing logProbability is 0.0
    # (a certain token) and a missing token is "". A missing tokenId stays unknown.
    lp, name = _get(entry, "logProbability", "log_probability", 0.0)
    lp = logprob(lp, lambda: f"{path}.{name}")
    text = entry.get("token", "")
    if type(text) is not str:
        raise RecordError(f"{path}.token", f"must be a string, got {_got(text)}")
    tid, name = _get(entry, "tokenId", "token_id", None)
    if tid is not None and not _is_id(tid):
        raise RecordError(
            f"{path}.{name}", f"must be a token id (an integer >= 0), got {show(tid)}"
        )
    return lp, text, tid


def parse_gemini(rec: dict, base: str) -> list:
    candidates = _need(rec.get("candidates", _MISSING), list, f"{base}candidates", "a list")
    sequences = []
    for j, cand in enumerate(candidates):
        path = f"{base}candidates[{j}]"
        if type(cand) is not dict:
            raise RecordError(path, f"must be an object, got {_got(cand)}")
        result, name = _get(cand, "logprobsResult", "logprobs_result")
        if result is _MISSING or result is None:
            raise RecordError(
                f"{path}.logprobsResult",
                "is missing: the request did not set generationConfig.responseLogprobs",
            )
        rpath = f"{path}.{name}"
        _need(result, dict, rpath, "an object")
        chosen, cname = _get(result, "chosenCandidates", "chosen_candidates", [])
        _need(chosen, list, f"{rpath}.{cname}", "a list")
        top, tname = _get(result, "topCandidates", "top_candidates", [])
        _need(top, list, f"{rpath}.{tname}", "a list")
        if top and len(top) != len(chosen):
            raise RecordError(
                f"{rpath}.{tname}", f"has {entries(len(top))} but {cname} has {len(chosen)}"
            )
        tokens = []
        for i, entry in enumerate(chosen):
            lp, text, tid = _gemini_entry(entry, f"{rpath}.{cname}[{i}]")
            tops: list = []
            if top:
                step = top[i]
                spath = f"{rpath}.{tname}[{i}]"
                _need(step, dict, spath, "an object")
                alts = _need(step.get("candidates", []), list, f"{spath}.candidates", "a list")
                tops = _sort(
                    [_gemini_entry(a, f"{spath}.candidates[{m}]") for m, a in enumerate(alts)]
                )
            tokens.append((lp, text, tid, None, False, tops))
        index = cand.get("index", j)  # proto3 JSON leaves out index 0
        if isinstance(index, bool) or not isinstance(index, int):
            raise RecordError(f"{path}.index", f"must be an integer, got {show(index)}")
        sequences.append((index, tokens))
    return sequences


# --- detection -----------------------------------------------------------------------------

_VLLM_TOP = ("prompt_logprobs", "prompt_token_ids", "kv_transfer_params")
_VLLM_CHOICE = ("stop_reason", "prompt_logprobs", "prompt_token_ids", "token_ids")


def unwrap(rec: dict) -> tuple[dict, str]:
    """The response inside a batch-API line, and the path prefix to it.

    OpenAI Batch output lines are ``{"custom_id", "response": {"body": <completion>},
    "error"}``; Gemini and Vertex batch lines are ``{"response": <GenerateContentResponse>}``.
    """
    if "response" in rec and "choices" not in rec and "candidates" not in rec:
        resp = rec["response"]
        if resp is None:
            raise RecordError("response", f"is null (the request failed: {show(rec.get('error'))})")
        if type(resp) is dict:
            body = resp.get("body")
            if type(body) is dict:
                return body, "response.body."
            if "candidates" in resp or "choices" in resp:
                return resp, "response."
    return rec, ""


def detect(rec: dict) -> str | None:
    """The format of a parsed record, from its keys; None if it is none of ours."""
    if "candidates" in rec:
        return "gemini"
    if "choices" not in rec:
        return None
    choices = rec["choices"]
    if type(choices) is not list:
        choices = []  # the parser will say what is wrong with it
    vllm = any(k in rec for k in _VLLM_TOP)
    kind = None
    for choice in choices:
        if type(choice) is not dict:
            continue
        vllm = vllm or any(k in choice for k in _VLLM_CHOICE)
        lp = choice.get("logprobs")
        if type(lp) is dict:
            if "content" in lp or "refusal" in lp:
                kind = "chat"
            elif "tokens" in lp or "token_logprobs" in lp:
                kind = "completions"
        if kind is None:
            if "message" in choice:
                kind = "chat"
            elif "text" in choice:
                kind = "completions"
        if kind is not None:
            break
    if kind is None:
        obj = rec.get("object")
        # vLLM's chat responses carry prompt_logprobs at the top, its completions per choice
        default = "chat" if "prompt_logprobs" in rec or "text_completion" != obj else None
        kind = {"chat.completion": "chat", "text_completion": "completions"}.get(obj, default)
    return f"{'vllm' if vllm else 'openai'}_{kind}"


EXPECTED = (
    "expected 'choices' (OpenAI or vLLM chat or completions), 'candidates' (Gemini) or "
    "'sequences' with 'logits' or 'scores' (Hugging Face generate)"
)

PARSERS = {
    "openai_chat": lambda rec, base: parse_chat(rec, base, vllm=False),
    "vllm_chat": lambda rec, base: parse_chat(rec, base, vllm=True),
    "openai_completions": lambda rec, base: parse_completions(rec, base, vllm=False),
    "vllm_completions": lambda rec, base: parse_completions(rec, base, vllm=True),
    "gemini": parse_gemini,
}
