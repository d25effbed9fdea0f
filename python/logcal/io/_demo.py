"""The demo data shipped with logcal: real next-character predictions of a small model."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "data"


class DemoData(NamedTuple):
    """Next-character predictions of a real character-level model over 1,025 Pokémon names.

    ``logits`` float32 ``[T, 27]``, ``targets`` int64 ``[T]`` (the actual next character),
    ``offsets`` int64 ``[S+1]`` (name ``s`` is rows ``offsets[s]:offsets[s+1]``, its letters
    then the end-of-name ``.``), ``vocab`` (``vocab[i]`` is the character of id ``i``) and
    ``names``.
    """

    logits: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    vocab: str
    names: list


def demo_path(name: str = "pokemon_logprobs.jsonl") -> Path:
    """Path of a demo data file: ``"pokemon_logprobs.jsonl"`` (OpenAI chat format, top 5),
    ``"pokemon_next_char.npz"`` or ``"LICENSE-pokepy.txt"``.

    >>> import logcal
    >>> batch = logcal.io.read_logprobs(logcal.io.demo_path())
    >>> batch.format, batch.n_sequences, batch.k
    ('openai_chat', 1025, 5)
    """
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"logcal has no demo data file {name!r} (looked in {DATA})")
    return path


def load_demo() -> DemoData:
    """The demo data: real next-character logits for teacher-forced Pokémon names.

    The model is the character-level WaveNet-style MLP of ``pokepy-generator`` 1.1.0 (MIT;
    see ``LICENSE-pokepy.txt`` beside the data), trained on these names, run in numpy by
    ``scripts/make_demo_data.py`` in the logcal repository. ``pokemon_logprobs.jsonl``
    (:func:`demo_path`) holds the same predictions as OpenAI chat completions.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> demo = logcal.io.load_demo()
    >>> demo.logits.shape, demo.names[24]
    ((8842, 27), 'pikachu')
    >>> s = logcal.token_stats(demo.logits, demo.targets)
    >>> lo, hi = demo.offsets[24], demo.offsets[25]
    >>> round(float(s.target_logprob[lo:hi].sum()), 2)  # log p("pikachu.")
    -20.73
    """
    with np.load(demo_path("pokemon_next_char.npz")) as z:
        logits, targets, offsets = z["logits"], z["targets"], z["offsets"]
        vocab = str(z["vocab"])
    names = [
        "".join(vocab[t] for t in targets[lo : hi - 1]) for lo, hi in zip(offsets[:-1], offsets[1:])
    ]
    return DemoData(logits, targets, offsets, vocab, names)
