"""logcal across processes: Dask at scale, and torchmetrics' sync under DDP.

``dask``: pairs/s on 1 and 2 local worker processes, the engine's overhead against the kernel
alone on the same partitions, and the bytes the states move. The pairs are generated on the
workers (a seeded generator per partition), so only states travel.

``ddp``: torchmetrics' own ``BinaryCalibrationError`` against logcal's drop-in
(``logcal.compat.torchmetrics``) on 2 gloo processes on 127.0.0.1: the bytes each rank's
states hold when ``compute()`` syncs them (torchmetrics all-gathers every prediction; logcal
sums a fixed int64 tensor), and the time of that sync and compute.

Run: ``python benchmarks/bench_scale.py dask --log2-pairs 26 --log2-partition 24`` and
``python benchmarks/bench_scale.py ddp --log2-pairs 22``.
"""

from __future__ import annotations

import argparse
import datetime
import socket
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
    ap.add_argument("what", choices=["dask", "ddp"], nargs="?", default="dask")
    ap.add_argument("--log2-pairs", type=int, default=26)
    ap.add_argument("--log2-partition", type=int, default=24)
    ap.add_argument("--n-bins", type=int, default=15)
    args = ap.parse_args()
    if args.what == "ddp":
        _ddp(2**args.log2_pairs, args.n_bins)
    else:
        _dask(args)


def _dask(args: argparse.Namespace) -> None:
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


def _ddp(n: int, n_bins: int, world: int = 2) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    print(f"{n} pairs over {world} gloo ranks (n_bins={n_bins}); per rank:")
    mp.start_processes(_ddp_rank, args=(world, port, n, n_bins), nprocs=world, start_method="spawn")


def _ddp_rank(rank: int, world: int, port: int, n: int, n_bins: int) -> None:
    import torch
    import torch.distributed as dist
    import torchmetrics.classification as tm

    from logcal.compat import torchmetrics as lc

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )
    gen = torch.Generator().manual_seed(rank)
    preds = torch.rand(n // world, generator=gen, dtype=torch.float32)
    target = (torch.rand(n // world, generator=gen) < preds).long()
    values = {}
    for name, cls in (
        ("torchmetrics", tm.BinaryCalibrationError),
        ("logcal", lc.BinaryCalibrationError),
    ):
        metric = cls(n_bins=n_bins)
        metric.update(preds, target)
        held = sum(
            sum(t.numel() * t.element_size() for t in (v if isinstance(v, list) else [v]))
            for v in (getattr(metric, k) for k in metric._defaults)
        )
        dist.barrier()
        t = time.perf_counter()
        values[name] = float(metric.compute())  # syncs the states across the ranks
        took = time.perf_counter() - t
        if rank == 0:
            print(
                f"  {name:12s} states {held:>12,d} bytes, sync + compute {took * 1e3:9.1f} ms, "
                f"ECE {values[name]:.9f}",
                flush=True,
            )
    everything = [None] * world
    dist.all_gather_object(everything, (preds.numpy(), target.numpy()))
    if rank == 0:  # the float64 reference on all ranks' data, as one process
        from logcal import reference

        conf = np.concatenate([p for p, _ in everything]).astype(np.float64)
        correct = np.concatenate([t for _, t in everything]).astype(bool)
        exact = float(reference.ece(conf, correct, n_bins=n_bins))
        for name, value in values.items():
            print(f"  {name:12s} ECE - float64 reference: {value - exact:+.3g} (ECE {exact:.9f})")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
