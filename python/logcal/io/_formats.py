"""One parser per provider format: a record validated by its schema in, sequences out.

The schemas (:mod:`._schema`) check every field's type; what they cannot say -- lists that
must be as long as each other, ``null`` only in first place, the prompt token that must be
among its alternatives -- is checked here, with the field's path inside the record.

A parser returns ``[(choice, tokens, ids), ...]``: ``tokens`` either the record's own
:class:`~._schema.ChatEntry` list (OpenAI chat, read column-wise by the builder) or a list of
``(logprob, text, id, bytes, is_prompt, tops)`` with ``tops`` a list of ``(logprob, text,
id)``; ``ids`` the token ids of a chat choice where vLLM gives them, else None. The builder
maps sentinels and sorts the top lists (see :class:`~logcal.io.LogprobBatch`).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from msgspec import UNSET

from ._schema import (
    BASES,
    MAX_ID,
    SCHEMAS,
    ChatEntry,
    GeminiEntry,
    RecordError,
    record_error,
    show,
)

NAN = math.nan

FORMATS = (
    "openai_chat",
    "openai_completions",
    "vllm_chat",
    "vllm_completions",
    "gemini",
    "huggingface",
)

EXPECTED = (
    "expected 'choices' (OpenAI or vLLM chat or completions), 'candidates' (Gemini) or "
    "'sequences' with 'logits' or 'scores' (Hugging Face generate)"
)
_MAIN_KEY = {
    "openai_chat": ("choices", "an OpenAI chat completion"),
    "openai_completions": ("choices", "an OpenAI completion"),
    "vllm_chat": ("choices", "a vLLM chat completion"),
    "vllm_completions": ("choices", "a vLLM completion"),
    "gemini": ("candidates", "a Gemini generateContent response"),
}


def entries(n: int) -> str:
    return "1 entry" if n == 1 else f"{n} entries"


def _text_or_id(text: str) -> tuple[str | None, int | None]:
    """vLLM's ``return_tokens_as_token_ids`` renders tokens as ``"token_id:{id}"``."""
    if text.startswith("token_id:") and text[9:].isdigit() and int(text[9:]) <= MAX_ID:
        return None, int(text[9:])
    return text, None


# --- the kind of a record, and its typed form ------------------------------------------------


def record_kind(rec: dict) -> str | None:
    """Which schema a parsed record has (see ``SCHEMAS``), from its keys; None if none.

    OpenAI Batch output lines are ``{"custom_id", "response": {"body": <completion>},
    "error"}``; Gemini and Vertex batch lines are ``{"response": <GenerateContentResponse>}``.
    """
    if "choices" in rec:
        return "openai"
    if "candidates" in rec:
        return "gemini"
    if "response" in rec:
        resp = rec["response"]
        if resp is None:
            raise RecordError("response", f"is null (the request failed: {show(rec.get('error'))})")
        if type(resp) is dict:
            if type(resp.get("body")) is dict:
                return "openai_batch" if "choices" in resp["body"] else None
            if "candidates" in resp:
                return "gemini_batch"
    return None


def typed(rec: dict, kind: str) -> Any:
    """``rec`` validated against the schema of its kind."""
    try:
        return msgspec.convert(rec, SCHEMAS[kind])
    except msgspec.ValidationError as exc:
        raise record_error(exc, rec, "") from None


def check_explicit(fmt: str, kind: str | None, rec: dict) -> None:
    """The record holds what an explicitly asked format needs."""
    if fmt == "huggingface":
        raise RecordError(
            "",
            f"this record is not a Hugging Face generate output (no 'sequences' with "
            f"'logits' or 'scores'); got keys {sorted(rec)[:8]}",
        )
    key, what = _MAIN_KEY[fmt]
    if kind is None or (fmt == "gemini") != kind.startswith("gemini"):
        base = BASES.get(kind or "", "")
        raise RecordError(f"{base}{key}", f"is missing: format={fmt!r} expects {what}")


def detect(kind: str, resp: Any) -> str:
    """The format of a typed response of the given kind."""
    if kind.startswith("gemini"):
        return "gemini"
    vllm = not (resp.prompt_logprobs is resp.prompt_token_ids is resp.kv_transfer_params is UNSET)
    found = None
    for choice in resp.choices:
        # UNSET is one object: all of them are UNSET if all are it
        vllm = vllm or not (
            choice.stop_reason
            is choice.prompt_logprobs
            is choice.prompt_token_ids
            is choice.token_ids
            is UNSET
        )
        lp = choice.logprobs
        if lp is not None and lp is not UNSET:
            if lp.content is not UNSET or lp.refusal is not UNSET:
                found = "chat"
            elif lp.tokens is not UNSET or lp.token_logprobs is not UNSET:
                found = "completions"
        if found is None:
            if choice.message is not UNSET or choice.delta is not UNSET:
                found = "chat"
            elif choice.text is not UNSET:
                found = "completions"
        if found is not None:
            break
    if found is None:
        obj = resp.object if isinstance(resp.object, str) else None  # (read as Any)
        # vLLM's chat responses carry prompt_logprobs at the top, its completions per choice
        default = "chat" if resp.prompt_logprobs is not UNSET or obj != "text_completion" else None
        found = {"chat.completion": "chat", "text_completion": "completions"}.get(obj, default)
    return f"{'vllm' if vllm else 'openai'}_{found}"


# --- OpenAI chat completions (and vLLM's chat server) ---------------------------------------


def _choice_logprobs(choice: Any, path: str) -> Any:
    lp = choice.logprobs
    if lp is None or lp is UNSET:
        state = "is null" if lp is None else "is missing"
        raise RecordError(f"{path}.logprobs", f"{state}: the request did not ask for logprobs")
    return lp


def _index(choice: Any, j: int) -> int:
    return j if choice.index is UNSET else choice.index


def _choice_ids(choice: Any, n: int, path: str) -> list | None:
    """vLLM's per-choice ``token_ids`` (``return_token_ids``): the ids of the tokens."""
    ids = choice.token_ids
    if ids is None or ids is UNSET:
        return None
    if len(ids) != n:
        raise RecordError(f"{path}.token_ids", f"has {entries(len(ids))} but the logprobs {n}")
    return ids


def parse_chat(resp: Any, base: str, vllm: bool) -> list:
    sequences = []
    if vllm:
        prompt = _vllm_prompt(resp, base)
        if prompt is not None:
            sequences.append((-1, prompt, None))
    for j, choice in enumerate(resp.choices):
        lp = choice.logprobs
        if lp is None or lp is UNSET:
            _choice_logprobs(choice, f"{base}choices[{j}]")  # raises, saying which
        content = lp.content
        if (content is None or content is UNSET) and lp.refusal not in (None, UNSET):
            content = lp.refusal  # a refused request's message
        if content is None or content is UNSET:
            content = []  # no message text (a tool call, for example): an empty sequence
        ids = _choice_ids(choice, len(content), f"{base}choices[{j}]") if vllm else None
        sequences.append((j if choice.index is UNSET else choice.index, content, ids))
    return sequences


# --- OpenAI legacy completions (and vLLM's completions server) -------------------------------


def _completion_tokens(lp: Any, path: str) -> list:
    if lp.tokens is UNSET:
        raise RecordError(f"{path}.tokens", "is missing")
    if lp.token_logprobs is UNSET:
        raise RecordError(f"{path}.token_logprobs", "is missing")
    tokens, values = lp.tokens, lp.token_logprobs
    if len(values) != len(tokens):
        raise RecordError(
            f"{path}.token_logprobs", f"has {entries(len(values))} but tokens has {len(tokens)}"
        )
    tops_in = None if lp.top_logprobs is UNSET else lp.top_logprobs
    if tops_in is not None and len(tops_in) != len(tokens):
        raise RecordError(
            f"{path}.top_logprobs", f"has {entries(len(tops_in))} but tokens has {len(tokens)}"
        )
    out = []
    for i, token in enumerate(tokens):
        value = values[i]
        if value is None:
            if i != 0:
                raise RecordError(
                    f"{path}.token_logprobs[{i}]",
                    "is null; only the first token (of an echoed prompt) may be",
                )
            value = NAN
        top = None if tops_in is None else tops_in[i]
        tops = [] if top is None else [(v, *_text_or_id(key)) for key, v in top.items()]
        out.append((value, *_text_or_id(token), None, False, tops))
    return out


def parse_completions(resp: Any, base: str, vllm: bool) -> list:
    sequences = []
    prompt_done = False
    for j, choice in enumerate(resp.choices):
        path = f"{base}choices[{j}]"
        tokens = _completion_tokens(_choice_logprobs(choice, path), f"{path}.logprobs")
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
                    sequences.append((-1, prompt, None))
                    prompt_done = True
        sequences.append((_index(choice, j), tokens, None))
    return sequences


# --- vLLM prompt_logprobs ------------------------------------------------------------------


def _vllm_prompt(owner: Any, base: str) -> list | None:
    """``prompt_logprobs``: ``[null, {"791": {"logprob", "rank", "decoded_token"}}, ...]``.

    The prompt token of a position is ``prompt_token_ids[i]`` where given; otherwise the
    first entry of the dict, where vLLM puts it (``append_logprobs_for_next_position``).
    """
    plist = owner.prompt_logprobs
    if plist is None or plist is UNSET:
        return None
    path = f"{base}prompt_logprobs"
    ids = owner.prompt_token_ids
    ids = None if ids is UNSET else ids
    if ids is not None and len(ids) != len(plist):
        raise RecordError(
            f"{base}prompt_token_ids",
            f"has {entries(len(ids))} but prompt_logprobs has {len(plist)}",
        )
    out = []
    for i, entry in enumerate(plist):
        if entry is None:
            if i != 0:
                raise RecordError(f"{path}[{i}]", "is null; only the first prompt token may be")
            out.append((NAN, None, None if ids is None else ids[0], None, True, []))
            continue
        if not entry:
            raise RecordError(f"{path}[{i}]", "is empty: it must hold the prompt token")
        tops = []
        chosen = None
        want = None if ids is None else ids[i]
        for key, value in entry.items():
            tid = int(key) if key.isascii() and key.isdigit() else -1
            if not 0 <= tid <= MAX_ID:
                raise RecordError(
                    f"{path}[{i}][{key!r}]", "is not a token id (the keys are token ids)"
                )
            tops.append((value.logprob, value.decoded_token, tid))
            if chosen is None if want is None else tid == want:
                chosen = tops[-1]
        if chosen is None:
            raise RecordError(
                f"{path}[{i}]", f"has no entry for the prompt token {want} (prompt_token_ids[{i}])"
            )
        out.append((chosen[0], chosen[1], chosen[2], None, True, tops))
    return out


# --- Gemini (generateContent, REST camelCase or the Python SDK's snake_case) ---------------


def _either(obj: Any, camel: str, snake: str, default: Any) -> tuple[Any, str]:
    value = getattr(obj, camel)
    if value is not UNSET:
        return value, camel
    value = getattr(obj, snake)
    return (default, camel) if value is UNSET else (value, snake)


def _gemini_entry(entry: GeminiEntry) -> tuple:
    lp, _ = _either(entry, "logProbability", "log_probability", 0.0)
    tid, _ = _either(entry, "tokenId", "token_id", None)
    return lp, entry.token, tid


def parse_gemini(resp: Any, base: str) -> list:
    sequences = []
    for j, cand in enumerate(resp.candidates):
        path = f"{base}candidates[{j}]"
        result, name = _either(cand, "logprobsResult", "logprobs_result", None)
        if result is None:
            raise RecordError(
                f"{path}.logprobsResult",
                "is missing: the request did not set generationConfig.responseLogprobs",
            )
        rpath = f"{path}.{name}"
        chosen, cname = _either(result, "chosenCandidates", "chosen_candidates", [])
        top, tname = _either(result, "topCandidates", "top_candidates", [])
        if top and len(top) != len(chosen):
            raise RecordError(
                f"{rpath}.{tname}", f"has {entries(len(top))} but {cname} has {len(chosen)}"
            )
        tokens = []
        for i, entry in enumerate(chosen):
            tops = [_gemini_entry(a) for a in top[i].candidates] if top else []
            tokens.append((*_gemini_entry(entry), None, False, tops))
        sequences.append((_index(cand, j), tokens, None))
    return sequences


PARSERS = {
    "openai_chat": lambda resp, base: parse_chat(resp, base, vllm=False),
    "vllm_chat": lambda resp, base: parse_chat(resp, base, vllm=True),
    "openai_completions": lambda resp, base: parse_completions(resp, base, vllm=False),
    "vllm_completions": lambda resp, base: parse_completions(resp, base, vllm=True),
    "gemini": parse_gemini,
}

__all__ = ["FORMATS", "PARSERS", "ChatEntry", "RecordError"]
