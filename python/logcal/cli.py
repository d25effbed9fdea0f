"""The ``logcal`` command.

``logcal demo`` scores a batch of generated next-token logits and prints what logcal measures;
``logcal info`` prints how this installation was built.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import __version__
from ._native import cpu, cuda_available, cuda_compiled, get_num_threads, set_num_threads
from ._token import token_stats


def _generated_batch(rng: np.random.Generator, n_seq: int, seq_len: int, vocab: int):
    """Logits of a toy language model whose stated confidence is too high.

    Each position prefers a few tokens (Zipf-like scores plus noise, with a sharpness that
    varies from position to position). The "true" next token is drawn from the same scores
    at temperature 1.4: the model's own distribution is sharper than the world's, so it is
    overconfident, as aligned LLMs tend to be.
    """
    ranks = np.arange(1, vocab + 1, dtype=np.float32)
    base = -1.1 * np.log(ranks)
    sharpness = rng.uniform(0.6, 2.2, size=(n_seq, seq_len, 1)).astype(np.float32)
    noise = rng.standard_normal((n_seq, seq_len, vocab), dtype=np.float32)
    perm = rng.permuted(np.broadcast_to(np.arange(vocab), (n_seq, seq_len, vocab)), axis=-1)
    logits = (base[perm] + 0.5 * noise) * sharpness * 2.5
    gumbel = -np.log(-np.log(rng.random((n_seq, seq_len, vocab), dtype=np.float32) + 1e-20) + 1e-20)
    targets = np.argmax(logits / 1.4 + gumbel, axis=-1)
    return logits, targets


def _demo(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    print(
        f"logcal {__version__} demo: {args.sequences} generated sequences x {args.length} "
        f"tokens, vocabulary {args.vocab}"
    )
    logits, targets = _generated_batch(rng, args.sequences, args.length, args.vocab)
    token_stats(logits, targets, top_k=5)  # warm up: first-touch page faults, thread start
    t0 = time.perf_counter()
    s = token_stats(logits, targets, top_k=5)
    elapsed = time.perf_counter() - t0
    confidence = np.exp(s.max_logprob)
    correct = s.argmax == targets

    header = (
        f"{'seq':>4} {'tokens':>6} {'mean logprob':>12} {'perplexity':>10} {'entropy':>8} "
        f"{'confidence':>10} {'accuracy':>8} {'target in top-5':>15}"
    )
    print()
    print(header)
    print("-" * len(header))
    in_top5 = (s.topk_ids == targets[..., None]).any(-1)
    for i in range(args.sequences):
        lp = s.target_logprob[i].astype(np.float64)
        print(
            f"{i:>4} {args.length:>6} {lp.mean():>12.3f} {np.exp(-lp.mean()):>10.2f} "
            f"{s.entropy[i].mean():>8.3f} {confidence[i].mean():>10.3f} "
            f"{correct[i].mean():>8.3f} {in_top5[i].mean():>15.3f}"
        )
    print("-" * len(header))
    gap = confidence.mean() - correct.mean()
    print(
        f"all  {targets.size:>6} {s.target_logprob.mean():>12.3f} "
        f"{np.exp(-s.target_logprob.astype(np.float64).mean()):>10.2f} {s.entropy.mean():>8.3f} "
        f"{confidence.mean():>10.3f} {correct.mean():>8.3f} {in_top5.mean():>15.3f}"
    )
    print()
    print(
        f"The model says it is {confidence.mean():.1%} sure on average and is right "
        f"{correct.mean():.1%} of the time: {'over' if gap > 0 else 'under'}confident by "
        f"{abs(gap):.1%}."
    )
    n_elem = logits.size
    print(
        f"token_stats read {logits.nbytes / 1e6:.0f} MB of logits in {elapsed * 1e3:.1f} ms "
        f"({n_elem / elapsed / 1e9:.2f} G logits/s, {get_num_threads()} threads, "
        f"{cpu.isa()} kernels)."
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    print(f"logcal {__version__}")
    print(
        f"CPU kernels: {cpu.isa()} (best on this CPU: {cpu.best_isa()}), "
        f"{get_num_threads()} threads"
    )
    print(f"CUDA module compiled: {cuda_compiled()}; CUDA device usable: {cuda_available()}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logcal",
        description="Confidence and calibration statistics for language models.",
    )
    parser.add_argument("--version", action="version", version=f"logcal {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for the kernels (default: all CPUs available)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="score a batch of generated logits and print a table")
    demo.add_argument("--sequences", type=int, default=8, help="number of sequences (default 8)")
    demo.add_argument("--length", type=int, default=32, help="tokens per sequence (default 32)")
    demo.add_argument("--vocab", type=int, default=32000, help="vocabulary size (default 32000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=_demo)
    info = sub.add_parser("info", help="show how this installation was built")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``logcal`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("sequences", "length", "vocab"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.threads:
        set_num_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, TypeError) as exc:
        print(f"logcal: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
