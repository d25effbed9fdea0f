"""logcal across processes: Dask and Ray at scale, and torchmetrics' sync under DDP.

``dask``: pairs/s on 1 and 2 local worker processes, the engine's overhead against the kernel
alone on the same partitions (a ratio, with the load average at the time: the machine may be
shared), and the bytes the states move. The pairs are generated on the workers (a seeded
generator per partition, in the task that makes its state), so only states travel.

``ray``: the same on a local Ray with 1 and 2 CPUs: ``ray.data.range`` of the partition
indices, ``map_batches`` generating each partition from its seed (returned as a
``pyarrow.Table``, or with ``--batches numpy`` as numpy arrays, which Ray converts slowly), then
``logcal.ray.CalibrationAggregate``; under Ray's default shuffle strategy and under the
pull-based sort shuffle. What moves is counted where it happens: the generated blocks, which
Ray hands from the generating task to the aggregation through its object store, and the
states ``aggregate_block`` makes (the rows each call saw tell whether Ray combined each block
on its own or gathered blocks first).

``ray-states``: the same pairs through ``logcal.ray.calibration_stats``, whose
``map_batches`` step Ray fuses with the generating one: each task generates its partition and
makes its state, and only the state leaves it. The states are merged two ways: by the driver
as they come (what ``calibration_stats`` does) and by an ``AggregateFnV2`` over the column of
states' bytes. What moves is read from ``Dataset.stats()``: the operators Ray ran (fused ones
are named together) and the bytes of the blocks each one output.

``ddp``: torchmetrics' own ``BinaryCalibrationError`` against logcal's drop-in
(``logcal.compat.torchmetrics``) on 2 gloo processes on 127.0.0.1: the bytes each rank's
states hold when ``compute()`` syncs them (torchmetrics all-gathers every prediction; logcal
sums a fixed int64 tensor), and the time of that sync and compute.

Run: ``python benchmarks/bench_scale.py dask --log2-pairs 26 --log2-partition 24`` (``ray``
and ``ray-states`` likewise) and ``python benchmarks/bench_scale.py ddp --log2-pairs 22``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import socket
import time
from typing import Any

import numpy as np

import logcal


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
    ap.add_argument("what", choices=["dask", "ray", "ray-states", "ddp"], nargs="?", default="dask")
    ap.add_argument("--log2-pairs", type=int, default=26)
    ap.add_argument("--log2-partition", type=int, default=24)
    ap.add_argument("--n-bins", type=int, default=15)
    ap.add_argument(
        "--batches",
        choices=["arrow", "numpy"],
        default="arrow",
        help="ray, ray-states: what the generating map_batches step returns",
    )
    args = ap.parse_args()
    if args.what == "ddp":
        _ddp(2**args.log2_pairs, args.n_bins)
    elif args.what == "ray":
        _ray(args)
    elif args.what == "ray-states":
        _ray_states(args)
    else:
        _dask(args)


def _load() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _kernel_alone(parts: int, size: int, state) -> tuple:
    """The states of every partition made one after the other by this process, one thread,
    generation included, and the time they took."""
    logcal.set_num_threads(1)  # one core per worker, as the workers below
    t = time.perf_counter()
    states = [state(i, size) for i in range(parts)]
    return states, time.perf_counter() - t


def _overhead(what: str, workers: int, took: float, alone: float, n: int) -> str:
    return (
        f"{what}, {workers} worker(s): {took:.2f} s, {n / took:.3g} pairs/s, "
        f"time x workers / kernel alone: {took * workers / alone:.3f} ({_load()})"
    )


def _dask(args: argparse.Namespace) -> None:
    import dask
    from dask.distributed import Client, LocalCluster

    import logcal.dask

    size, parts = 2**args.log2_partition, 2 ** (args.log2_pairs - args.log2_partition)
    n = size * parts
    states, alone = _kernel_alone(parts, size, lambda i, size: _state(i, size, args.n_bins))
    one = logcal.CalibrationStats.from_bytes(states[0])
    for s in states[1:]:
        one = one.merge(logcal.CalibrationStats.from_bytes(s))
    state_bytes = sum(len(s) for s in states)
    print(
        f"{n} pairs in {parts} partitions of {size}; kernel alone (1 process, 1 thread, "
        f"generation included): {alone:.2f} s, {n / alone:.3g} pairs/s ({_load()})"
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
                f"{_overhead('dask', workers, took, alone, n)}, states moved ~{state_bytes} "
                f"bytes (the data would be {n * 9} bytes), bit-identical: {same}"
            )


def _accumulator_state(i: int, size: int, n_bins: int) -> bytes:
    acc = logcal.CalibrationAccumulator(n_bins)
    return acc.update(*_partition(i, size), offset=i * size).to_bytes()


def _ray_reference(args: argparse.Namespace) -> tuple:
    """The partitions' size and count, the pairs, the kernel alone's time and the statistics
    of its accumulators placed one after the other."""
    size, parts = 2**args.log2_partition, 2 ** (args.log2_pairs - args.log2_partition)
    n = size * parts
    states, alone = _kernel_alone(
        parts, size, lambda i, size: _accumulator_state(i, size, args.n_bins)
    )
    one = logcal.CalibrationAccumulator.from_bytes(states[0])
    for s in states[1:]:
        one.merge(logcal.CalibrationAccumulator.from_bytes(s))
    print(
        f"{n} pairs in {parts} partitions of {size}; kernel alone (1 process, 1 thread, "
        f"generation included): {alone:.2f} s, {n / alone:.3g} pairs/s ({_load()})"
    )
    return size, parts, n, alone, one.compute()


def _ray_generator(size: int, batches: str) -> Any:
    """The map_batches function that generates partition ``batch["id"][0]``."""
    import pyarrow as pa

    def generate(batch: dict) -> Any:
        logcal.set_num_threads(1)  # one core per Ray CPU, as the kernel alone
        conf, correct = _partition(int(batch["id"][0]), size)
        if batches == "numpy":
            return {"conf": conf, "ok": correct}
        # Arrow, not numpy: Ray 2.60 infers the Arrow type of a returned numpy column with
        # pyarrow.infer_type, value by value (about 0.5 s per column of 2^24 values)
        return pa.table({"conf": conf, "ok": correct})

    return generate


def _ray_init(workers: int) -> None:
    import ray

    ray.init(
        num_cpus=workers,
        object_store_memory=3 << 30,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False


def _ray(args: argparse.Namespace) -> None:
    import ray
    from ray.data.context import ShuffleStrategy

    import logcal.ray

    size, parts, n, alone, one = _ray_reference(args)

    generate = _ray_generator(size, args.batches)

    @ray.remote(num_cpus=0)
    class Tally:
        """The rows and state bytes of each aggregate_block call."""

        def __init__(self) -> None:
            self.calls: list = []

        def add(self, rows: int, nbytes: int) -> None:
            self.calls.append((rows, nbytes))

        def get(self) -> list:
            return self.calls

    class Counted(logcal.ray.CalibrationAggregate):
        def __init__(self, tally, **kw) -> None:
            super().__init__("conf", "ok", **kw)
            self.tally = tally

        def aggregate_block(self, block) -> bytes:
            logcal.set_num_threads(1)  # one core per Ray CPU, as the kernel alone
            state = super().aggregate_block(block)
            ray.get(self.tally.add.remote(len(block), len(state)))
            return state

    strategies = [
        ray.data.DataContext.get_current().shuffle_strategy,  # Ray's default
        ShuffleStrategy.SORT_SHUFFLE_PULL_BASED,
    ]
    for workers in (1, 2):
        _ray_init(workers)
        try:
            context = ray.data.DataContext.get_current()
            for strategy in strategies:
                context.shuffle_strategy = strategy
                # a small run first: Ray's workers start, and import numpy and logcal
                warm = ray.data.range(workers, override_num_blocks=workers)
                warm.map_batches(lambda b: {"conf": b["id"] * 0.0, "ok": b["id"] > 0}).aggregate(
                    logcal.ray.CalibrationAggregate("conf", "ok")
                )
                tally = Tally.remote()
                ds = ray.data.range(parts, override_num_blocks=parts)
                ds = ds.map_batches(generate, batch_size=1)
                t = time.perf_counter()
                got = ds.aggregate(Counted(tally, n_bins=args.n_bins))["calibration"]
                took = time.perf_counter() - t
                calls = ray.get(tally.get.remote())
                rows = sorted({r for r, _ in calls})
                default = ", the default" if strategy is strategies[0] else ""
                label = f"ray ({args.batches} batches, {strategy.value}{default})"
                print(
                    f"{_overhead(label, workers, took, alone, n)}; generated blocks through "
                    f"the object store {n * 8 + n // 8} bytes (f8 + a bit per pair), "
                    f"aggregate_block: {len(calls)} call(s) of {rows} rows, states moved "
                    f"{sum(b for _, b in calls)} bytes, bit-identical: {got == one}",
                    flush=True,
                )
        finally:
            ray.shutdown()


def _ray_states(args: argparse.Namespace) -> None:
    import ray
    from ray.data.aggregate import AggregateFnV2
    from ray.data.block import BlockAccessor

    import logcal.ray

    size, parts, n, alone, one = _ray_reference(args)
    settings = dict(n_bins=args.n_bins, binning="uniform", eps=1e-12, n_bootstrap=0, seed=0)

    generate = _ray_generator(size, args.batches)

    class MergeStates(AggregateFnV2):
        """The merge of a column of accumulators' bytes, as an aggregation."""

        def __init__(self) -> None:
            zero = logcal.CalibrationAccumulator(args.n_bins).to_bytes()
            super().__init__("calibration", lambda: zero, on=None, ignore_nulls=False)

        def aggregate_block(self, block) -> bytes:
            states = BlockAccessor.for_block(block).to_numpy("logcal_state")
            merged = logcal.CalibrationAccumulator.from_bytes(states[0])
            for data in states[1:]:
                merged.merge(logcal.CalibrationAccumulator.from_bytes(data))
            return merged.to_bytes()

        def combine(self, current_accumulator: bytes, new: bytes) -> bytes:
            merged = logcal.CalibrationAccumulator.from_bytes(current_accumulator)
            return merged.merge(logcal.CalibrationAccumulator.from_bytes(new)).to_bytes()

        def finalize(self, accumulator: bytes):
            merged = logcal.CalibrationAccumulator.from_bytes(accumulator)
            logcal.ray._as_one_stream(merged)
            return merged.compute()

    def by_driver(states):
        zero = logcal.CalibrationAccumulator(args.n_bins)
        return logcal.ray._merged_states(states, zero, placed=False), states

    def by_aggregation(states):
        merged = states.groupby(None).aggregate(MergeStates())  # what Dataset.aggregate runs
        return merged.take_all()[0]["calibration"], merged

    for workers in (1, 2):
        _ray_init(workers)
        try:
            for merge in (by_driver, by_aggregation):
                # a small run first: Ray's workers start, and import numpy and logcal
                warm = ray.data.range(workers, override_num_blocks=workers)
                logcal.ray.calibration_stats(
                    warm.map_batches(lambda b: {"conf": b["id"] * 0.0, "ok": b["id"] > 0}),
                    "conf",
                    "ok",
                )
                ds = ray.data.range(parts, override_num_blocks=parts)
                ds = ds.map_batches(generate, batch_size=1)
                t = time.perf_counter()
                states = logcal.ray._block_states(
                    ds, "conf", "ok", weights=None, position=None, **settings
                )
                got, executed = merge(states)
                took = time.perf_counter() - t
                label = (
                    f"ray states ({args.batches} batches), merged "
                    f"{merge.__name__.replace('_', ' ')}"
                )
                print(
                    f"{_overhead(label, workers, took, alone, n)}, bit-identical: {got == one}; "
                    f"output of each operator (Dataset.stats()): {_moved(executed.stats())}",
                    flush=True,
                )
        finally:
            ray.shutdown()


def _moved(stats: str) -> str:
    """Each operator of a Dataset.stats() text and the bytes of the blocks it output."""
    ops = re.findall(
        r"Operator \d+ (.+?): \d+ tasks executed.*?Output size bytes per block: .*?, "
        r"([\d.]+) total",
        stats,
        flags=re.S,
    )
    return "; ".join(f"{name}: {float(total):,.0f} bytes" for name, total in ops)


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
