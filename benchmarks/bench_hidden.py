"""token_stats_from_hidden on the CPU: time and peak memory against the GEMM alone and against
materialising the logits, each in its own process (peak RSS above the inputs, from getrusage).

    PYTHONPATH=python python3 benchmarks/bench_hidden.py [--rows 512] [--vocab 128256] [--d 2048]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

CHUNK = 8192


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_one(mode: str, rows: int, vocab: int, d: int) -> dict:
    import logcal

    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((rows, d), dtype=np.float32)
    weight = rng.standard_normal((vocab, d), dtype=np.float32) * np.float32(d**-0.5)
    targets = rng.integers(0, vocab, rows)
    # Warm the code paths on a small slice, then take the baseline peak with the inputs held.
    logcal.token_stats_from_hidden(hidden[:8], weight[:1000], targets[:8] % 1000, top_k=5)
    before = _peak_mb()
    start = time.perf_counter()
    if mode == "matmul":  # the chunked GEMM alone, into one reused buffer
        buffer = np.empty((rows, CHUNK), np.float32)
        for s in range(0, vocab, CHUNK):
            e = min(s + CHUNK, vocab)
            np.matmul(hidden, weight[s:e].T, out=buffer[:, : e - s])
    elif mode == "hidden":
        logcal.token_stats_from_hidden(hidden, weight, targets, top_k=5, vocab_chunk=CHUNK)
    else:  # materialise the logits, then one token_stats
        logcal.token_stats(hidden @ weight.T, targets, top_k=5)
    seconds = time.perf_counter() - start
    return {"mode": mode, "seconds": seconds, "peak_above_inputs_mb": _peak_mb() - before}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--mode")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_one(args.mode, args.rows, args.vocab, args.d)))
        return
    shape = f"[{args.rows}, {args.d}] x [{args.vocab}, {args.d}] float32"
    chunk_mb = args.rows * CHUNK * 4 / 2**20
    print(f"{shape}; vocab_chunk {CHUNK} (one chunk of logits = {chunk_mb:.0f} MB)")
    results = {}
    for mode in ("matmul", "hidden", "materialise"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--rows",
                str(args.rows),
                "--vocab",
                str(args.vocab),
                "--d",
                str(args.d),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[mode] = r = json.loads(out.strip().splitlines()[-1])
        peak = r["peak_above_inputs_mb"]
        print(f"{mode:12s} {r['seconds']:8.2f} s   peak RSS above inputs {peak:8.0f} MB")
    hidden = results["hidden"]
    print(f"hidden / chunked matmul alone: {hidden['seconds'] / results['matmul']['seconds']:.2f}x")
    print(
        f"hidden / materialise + token_stats: "
        f"{hidden['seconds'] / results['materialise']['seconds']:.2f}x"
    )
    print(f"hidden peak above inputs: {hidden['peak_above_inputs_mb'] / chunk_mb:.2f} chunks")


if __name__ == "__main__":
    main()
