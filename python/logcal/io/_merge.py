"""Batches read in parts (chunks, byte ranges) joined into one, as if read at once."""

from __future__ import annotations

import numpy as np

from ._batch import LogprobBatch, unpack


def merged_format(formats: list) -> str | None:
    """vLLM's responses extend OpenAI's: where parts differ only so, the whole is vLLM's."""
    found = [f for f in formats if f is not None]
    if not found:
        return None
    vllm = [f for f in found if f.startswith("vllm")]
    return vllm[0] if vllm else found[0]


def _tokens(parts: list, name: str) -> np.ndarray:
    """``tokens`` / ``top_tokens``: text (object) wherever any part has text, else ids."""
    values = [p[name] for p in parts]
    if all(v.dtype != object for v in values):
        return _stack(values, -1)
    out = []
    for v in values:
        if v.dtype != object:  # a part of ids only: no text, the ids stay in token_ids
            v = np.full(v.shape, None, dtype=object)
        out.append(v)
    return _stack(out, None)


def _stack(values: list, fill: object) -> np.ndarray:
    widths = {v.shape[1:] for v in values}
    if len(widths) == 1:  # 1-D, or 2-D of one width
        return np.concatenate(values)
    width = max(v.shape[1] for v in values)
    dtype = values[0].dtype
    out = np.full((sum(v.shape[0] for v in values), width), fill, dtype=dtype)
    row = 0
    for v in values:
        out[row : row + v.shape[0], : v.shape[1]] = v
        row += v.shape[0]
    return out


def concat(parts: list) -> LogprobBatch:
    """One batch of the parts, in order (``record`` already counts across them)."""
    parts = [p for p in parts if p.n_sequences or p.skipped] or parts[-1:]
    if len(parts) == 1:
        return parts[0]
    n = [p.n_tokens for p in parts]
    fields: dict = {"format": merged_format([p.format for p in parts])}
    lengths = np.concatenate([np.diff(p.offsets) for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    fields["offsets"] = offsets
    for name in ("token_logprob", "prompt", "record", "choice", "skipped_records"):
        fields[name] = np.concatenate([p[name] for p in parts])
    fields["top_logprobs"] = _stack([p.top_logprobs for p in parts], np.nan)
    fields["skipped"] = sum(p.skipped for p in parts)
    if all("file" in p for p in parts):  # many files
        for name in ("file", "skipped_files"):
            fields[name] = np.concatenate([p[name] for p in parts])
    if any("token_ids" in p for p in parts):
        for name, width in (("token_ids", None), ("top_token_ids", "top_logprobs")):
            values = []
            for p, count in zip(parts, n):
                if name in p:
                    values.append(p[name])
                elif width is None:
                    values.append(np.full(count, -1, dtype=np.int64))
                else:
                    values.append(np.full(p[width].shape, -1, dtype=np.int64))
            fields[name] = _stack(values, -1)
    fields["tokens"] = _tokens(parts, "tokens")
    fields["top_tokens"] = _tokens(parts, "top_tokens")
    if any("token_bytes" in p for p in parts):
        values = []
        for p, count in zip(parts, n):
            values.append(p["token_bytes"] if "token_bytes" in p else np.full(count, None, object))
        fields["token_bytes"] = np.concatenate(values)
    if fields["tokens"].dtype != object and "token_ids" in fields:
        fields["tokens"], fields["top_tokens"] = fields["token_ids"], fields["top_token_ids"]
    return LogprobBatch(**fields)


def concat_packed(parts: list) -> LogprobBatch:
    """One batch of packed parts (``Builder.packed``), in order.

    The parts' codes are carried into one table of distinct values, so that the object arrays
    of token texts and bytes are made once, for the whole, and not made per part and then
    copied (millions of references each). Parts of token ids take the general way.
    """
    keys = set(parts[0])
    if "strings" not in keys or "token_ids" in keys or any(set(p) != keys for p in parts):
        return concat([unpack(p) for p in parts])
    tables = {name: {} for name in ("strings", "bytes") if name in keys}
    coded = []
    for part in parts:
        part = dict(part)
        for table, codes in tables.items():
            values = part.pop(table)
            # -1 (None) stays -1: the remap's last entry
            remap = np.array([*(codes.setdefault(v, len(codes)) for v in values), -1], np.int32)
            for name in ("tokens", "top_tokens") if table == "strings" else ("token_bytes",):
                part[name] = remap[part[name]]
        coded.append(LogprobBatch(**part))
    whole = dict(concat(coded))
    whole.update({table: list(codes) for table, codes in tables.items()})
    return unpack(whole)
