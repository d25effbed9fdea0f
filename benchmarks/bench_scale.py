"""logcal.dask at scale: pairs/s on 1 and 2 local worker processes, the engine's overhead
against the kernel alone on the same partitions, and the bytes the states move.

The pairs are generated on the workers (a seeded generator per partition), so only states
travel. Run: ``python benchmarks/bench_scale.py --log2-pairs 26 --log2-partition 24``.
"""

from __future__ import annotations

import argparse
import time

import dask
import numpy as np
from dask.distributed import Client, LocalCluster

import logcal
import logcal.dask


def _partition(i: int, size: int) -> tuple:
    rng = np.random.default_rng(i)
    conf = rng.uniform(size=size)
    return conf, rng.uniform(size=size) < conf


def _state(i: int, size: int, n_bins: int) -> bytes:
    conf, correct = _partition(i, size)
    return logcal.calibration_stats(
        conf, correct, n_bins=n_bins, bootstrap_offset=i * size
    ).to_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log2-pairs", type=int, default=26)
    ap.add_argument("--log2-partition", type=int, default=24)
    ap.add_argument("--n-bins", type=int, default=15)
    args = ap.parse_args()
    size, parts = 2**args.log2_partition, 2 ** (args.log2_pairs - args.log2_partition)
    n = size * parts
    logcal.set_num_threads(1)  # one core per worker, as the workers below

    t = time.perf_counter()
    states = [_state(i, size, args.n_bins) for i in range(parts)]
    alone = time.perf_counter() - t
    one = logcal.calibration_stats(*_partition(0, size), n_bins=args.n_bins)
    for s in states[1:]:
        one = one.merge(logcal.CalibrationStats.from_bytes(s))
    state_bytes = sum(len(s) for s in states)
    print(
        f"{n} pairs in {parts} partitions of {size}; kernel alone (1 process, 1 thread, "
        f"generation included): {alone:.2f} s, {n / alone:.3g} pairs/s"
    )

    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(logcal.set_num_threads, 1)
            jobs = [dask.delayed(_state)(i, size, args.n_bins) for i in range(parts)]
            while len(jobs) > 1:
                jobs = [
                    dask.delayed(logcal.dask._merged)(*jobs[i : i + 8])
                    for i in range(0, len(jobs), 8)
                ]
            t = time.perf_counter()
            merged = client.compute(jobs[0]).result()
            took = time.perf_counter() - t
            same = logcal.CalibrationStats.from_bytes(merged) == one
            print(
                f"dask, {workers} worker(s): {took:.2f} s, {n / took:.3g} pairs/s, "
                f"overhead vs kernel alone x{workers}: {took * workers / alone - 1:+.1%}, "
                f"states moved ~{state_bytes} bytes (data would be {n * 9} bytes), "
                f"bit-identical: {same}"
            )


if __name__ == "__main__":
    main()
