"""Make the demo data shipped in ``python/logcal/data`` from a real (small) language model.

The model is the character-level Pokémon-name model of ``pokepy-generator`` 1.1.0 (MIT,
Anay Shekhar): a makemore-style WaveNet MLP trained on the 1,025 names of its
``pokemon.txt``, stored as numpy arrays. This script

1. takes the wheel (``--wheel``, or ``pip download --no-deps pokepy-generator==1.1.0``) and
   reads the ``.npy`` files and ``pokemon.txt`` out of it, without importing the package
   (its module starts a gradio app);
2. runs the forward pass in numpy, teacher-forced over every name: at each character, the
   logits of the next one given the previous 8 (``.`` pads the start and ends a name);
3. checks it against a known value (log p("pikachu.") = -20.734);
4. writes ``pokemon_next_char.npz`` (float32 ``logits [T, 27]``, int64 ``targets [T]``,
   int64 ``offsets [S+1]``, one sequence per name, and the vocabulary string),
   ``pokemon_logprobs.jsonl`` (the same predictions as OpenAI chat completions, one per name,
   ``top_logprobs`` k=5, characters as tokens, the end-of-name ``.`` as the last token) and
   ``LICENSE-pokepy.txt``.

Run from the repository root: ``python scripts/make_demo_data.py``. The output is
deterministic (no sampling).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

VERSION = "1.1.0"
BLOCK = 8  # context length: three FlattenConsecutive(2) layers take 8 characters to 1
TOP_K = 5
PIKACHU = -20.734  # log p("pikachu."), measured once with a float64 forward pass


def fetch_wheel(tmp: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", f"pokepy-generator=={VERSION}",
         "-d", str(tmp)],
        check=True,
    )  # fmt: skip
    return next(tmp.glob("pokepy_generator-*.whl"))


class Model:
    """Embedding(27, 10) -> 3 x [FlattenConsecutive(2), Linear (no bias), BatchNorm1d, tanh]
    -> Linear(32, 27), BatchNorm in eval mode (running statistics, eps 1e-5).
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.embedding = arrays["C"]  # [27, 10]
        self.blocks = [
            (
                arrays[f"layer_{lin}_weight"],
                arrays[f"layer_{bn}_gamma"],
                arrays[f"layer_{bn}_beta"],
                arrays[f"layer_{bn}_mean"],
                arrays[f"layer_{bn}_var"],
            )
            for lin, bn in ((1, 2), (5, 6), (9, 10))
        ]
        self.out_weight = arrays["layer_12_weight"]  # [32, 27]
        self.out_bias = arrays["layer_12_bias"]  # [1, 27]

    def __call__(self, context: np.ndarray) -> np.ndarray:
        """Logits ``[B, 27]`` of the next character after ``context`` ``[B, 8]``."""
        x = self.embedding[context]  # [B, 8, 10]
        for weight, gamma, beta, mean, var in self.blocks:
            b, t, c = x.shape
            x = x.reshape(b, t // 2, c * 2)  # FlattenConsecutive(2)
            x = x @ weight
            x = gamma * (x - mean) / np.sqrt(var + 1e-5) + beta
            x = np.tanh(x)
        x = x.reshape(x.shape[0], -1)  # [B, 1, 32] -> [B, 32]
        return x @ self.out_weight + self.out_bias


def read_wheel(wheel: Path) -> tuple[dict[str, np.ndarray], list[str], str]:
    arrays = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("pokepy/") and name.endswith(".npy"):
                arrays[Path(name).stem] = np.load(io.BytesIO(z.read(name)))
        lines = z.read("pokepy/pokemon.txt").decode("utf-8").splitlines()
        licence = next(
            z.read(n).decode("utf-8") for n in z.namelist() if n.endswith("licenses/LICENSE")
        )
    # The package's own preprocessing: lower case, letters a-z only ("mr. mime" -> "mrmime").
    names = [re.sub(r"[^a-z]", "", line.lower()) for line in lines]
    return arrays, [n for n in names if n], licence


def contexts(name: str, stoi: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Teacher forcing: the 8 previous characters before each character of ``name + "."``."""
    targets = [stoi[c] for c in name] + [0]
    ctx, window = [], [0] * BLOCK
    for t in targets:
        ctx.append(window)
        window = [*window[1:], t]
    return np.array(ctx, dtype=np.int64), np.array(targets, dtype=np.int64)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def chat_record(i: int, name: str, logprobs: np.ndarray, targets: np.ndarray, vocab: str) -> dict:
    """One OpenAI chat completion: the name's characters, each with its top 5."""
    content = []
    for row, t in zip(logprobs, targets):
        top = np.argsort(-row, kind="stable")[:TOP_K]
        content.append(
            {
                "token": vocab[t],
                "logprob": round(float(row[t]), 6),
                "bytes": [ord(vocab[t])],
                "top_logprobs": [
                    {
                        "token": vocab[j],
                        "logprob": round(float(row[j]), 6),
                        "bytes": [ord(vocab[j])],
                    }
                    for j in top
                ],
            }
        )
    return {
        "id": f"pokepy-{i}",
        "object": "chat.completion",
        "model": f"pokepy-generator-{VERSION}",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": name},
                "finish_reason": "stop",
                "logprobs": {"content": content, "refusal": None},
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--wheel", type=Path, help="the pokepy-generator wheel (default: pip download)"
    )
    parser.add_argument("--out", type=Path, default=Path("python/logcal/data"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        arrays, names, licence = read_wheel(wheel)
    vocab = "." + "".join(sorted(set("".join(names))))
    assert vocab == ".abcdefghijklmnopqrstuvwxyz", vocab
    stoi = {c: i for i, c in enumerate(vocab)}
    model = Model(arrays)

    ctx, tgt = contexts("pikachu", stoi)
    check = float(log_softmax(model(ctx))[np.arange(len(tgt)), tgt].sum())
    print(f'log p("pikachu.") = {check:.4f}')
    assert abs(check - PIKACHU) < 1e-3, f"the forward pass is wrong: {check} != {PIKACHU}"

    parts = [contexts(n, stoi) for n in names]
    context = np.concatenate([c for c, _ in parts])
    targets = np.concatenate([t for _, t in parts])
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum([len(t) for _, t in parts], out=offsets[1:])
    logits = model(context).astype(np.float32)

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "pokemon_next_char.npz",
        logits=logits,
        targets=targets,
        offsets=offsets,
        vocab=np.array(vocab),
    )
    logprobs = log_softmax(logits)  # from the float32 logits shipped, as a reader sees them
    with open(args.out / "pokemon_logprobs.jsonl", "w", encoding="utf-8") as f:
        for s, name in enumerate(names):
            lo, hi = offsets[s], offsets[s + 1]
            rec = chat_record(s, name, logprobs[lo:hi], targets[lo:hi], vocab)
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    (args.out / "LICENSE-pokepy.txt").write_text(
        "The files pokemon_next_char.npz and pokemon_logprobs.jsonl in this directory are\n"
        f"predictions of the model shipped in pokepy-generator {VERSION}\n"
        "(https://pypi.org/project/pokepy-generator/), made by scripts/make_demo_data.py from\n"
        "its weights and its list of names (pokemon.txt). That package's licence:\n\n" + licence,
        encoding="utf-8",
    )
    mean = float(logprobs[np.arange(len(targets)), targets].mean())
    print(
        f"{len(names)} names, {len(targets)} characters; mean log p = {mean:.4f} "
        f"(uniform: {-np.log(27):.4f}); top-1 accuracy "
        f"{float((logits.argmax(1) == targets).mean()):.4f}"
    )
    for p in sorted(args.out.iterdir()):
        print(f"{p}: {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
