"""logcal.distributed.all_reduce and the torchmetrics Metric classes across 2 and 4 gloo
processes (spawned, on a free port of 127.0.0.1, with bounded timeouts): every rank ends with
the state of one accumulator over all the data, bit for bit; bad settings raise on every rank."""

from __future__ import annotations

import datetime
import os
import pickle
import re
import socket
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import logcal

SETTINGS = {
    "uniform": {"n_bins": 12},
    "edges": {"binning": [0, 0.05, 0.3, 0.3, 0.75, 1.0]},
    "quantile": {"n_bins": 7, "binning": "quantile"},
    "bootstrap": {"n_bins": 6, "n_bootstrap": 5, "seed": 3},
}
N = 3000
TIMEOUT_S = 120


def _data(seed: int = 7):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=N)
    c[::5] = np.round(c[::5], 1)
    return c, rng.uniform(size=N) < c, rng.uniform(0, 4, N)


def _cuts(world: int) -> list:
    """Random, uneven parts of [0, N), one per rank, one of them empty."""
    rng = np.random.default_rng(world)
    cuts = sorted(rng.integers(0, N, world - 2).tolist())
    return list(zip([0, 0, *cuts], [0, *cuts, N]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(worker, world: int, tmp_path) -> list:
    """Runs ``worker(rank, world, out_dir)`` on ``world`` gloo ranks; each rank's pickled
    result. Fails (terminating the ranks) after TIMEOUT_S."""
    port = _free_port()
    ctx = mp.start_processes(
        _run,
        args=(worker, world, port, str(tmp_path)),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail(f"{world} ranks did not finish in {TIMEOUT_S} s")
    out = []
    for r in range(world):
        with open(os.path.join(tmp_path, f"rank{r}.pkl"), "rb") as f:
            out.append(pickle.load(f))
    return out


def _run(rank: int, worker, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        result = worker(rank, world)
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def _message(func) -> str:
    try:
        func()
    except ValueError as exc:
        return str(exc)
    return "no error"


def _all_reduce_worker(rank: int, world: int) -> dict:
    import logcal.distributed

    c, y, w = _data()
    begin, end = _cuts(world)[rank]
    out = {}
    for name, kw in SETTINGS.items():
        for weighted in (False, True) if name != "quantile" else (False,):
            acc = logcal.CalibrationAccumulator(**kw)
            offset = logcal.distributed.bootstrap_offset(end - begin)
            assert offset == begin
            acc.update(
                c[begin:end],
                y[begin:end],
                weights=w[begin:end] if weighted else None,
                offset=offset,
            )
            local = acc.to_bytes()
            logcal.distributed.all_reduce(acc)
            out[name, weighted] = (local, acc.to_bytes())
    # Different settings on one rank: every rank raises, naming them.
    eps = 1e-6 if rank == world - 1 else 1e-12
    acc = logcal.CalibrationAccumulator(n_bins=4, eps=eps)
    out["eps"] = _message(lambda: logcal.distributed.all_reduce(acc))
    acc = logcal.CalibrationAccumulator(n_bins=4 + (rank == 1))
    out["bins"] = _message(lambda: logcal.distributed.all_reduce(acc))
    # Overlapping bootstrap positions (every rank from 0): refused on every rank.
    acc = logcal.CalibrationAccumulator(n_bins=4, n_bootstrap=3).update(c[:10], y[:10])
    out["overlap"] = _message(lambda: logcal.distributed.all_reduce(acc))
    # The group is still usable after the refusals.
    acc = logcal.CalibrationAccumulator(n_bins=4).update(c[begin:end], y[begin:end])
    out["after"] = logcal.distributed.all_reduce(acc).n
    return out


@pytest.mark.parametrize("world", [2, 4])
def test_all_reduce_is_one_accumulator_bit_for_bit(world, tmp_path):
    ranks = _spawn(_all_reduce_worker, world, tmp_path)
    c, y, w = _data()
    for name, kw in SETTINGS.items():
        for weighted in (False, True) if name != "quantile" else (False,):
            merged = {r[name, weighted][1] for r in ranks}
            assert len(merged) == 1, (name, weighted)  # every rank holds the same bytes
            got = logcal.CalibrationAccumulator.from_bytes(merged.pop())
            one = logcal.CalibrationAccumulator(**kw).update(c, y, weights=w if weighted else None)
            assert got.compute() == one.compute(), (name, weighted)
            assert got.to_bytes() == one.to_bytes(), (name, weighted)
            # and the same as merging the ranks' accumulators one by one, in reverse order
            parts = [logcal.CalibrationAccumulator.from_bytes(r[name, weighted][0]) for r in ranks]
            by_merge = parts[-1]
            for p in parts[-2::-1]:
                by_merge.merge(p)
            assert by_merge.to_bytes() == got.to_bytes()
    last = world - 1
    for r in ranks:
        assert r["eps"] == (
            f"logcal.distributed.all_reduce: ranks 0 and {last} have different eps "
            "(1e-12 and 1e-06)"
        )
        assert r["bins"] == (
            "logcal.distributed.all_reduce: ranks 0 and 1 have different n_bins (4 and 5)"
        )
        assert r["overlap"] == (
            "logcal.distributed.all_reduce: ranks 0 and 1 both hold positions [0, 10) of the "
            "bootstrap's stream (each sample needs its own position: place each rank's samples "
            "with logcal.distributed.bootstrap_offset)"
        )
        assert r["after"] == N


def test_all_reduce_needs_an_accumulator_and_a_process_group():
    import logcal.distributed

    with pytest.raises(
        TypeError,
        match=re.escape("logcal.distributed.all_reduce needs a CalibrationAccumulator, got dict"),
    ):
        logcal.distributed.all_reduce({})
    with pytest.raises(RuntimeError, match=re.escape("torch.distributed is not initialised")):
        logcal.distributed.all_reduce(logcal.CalibrationAccumulator())
    with pytest.raises(ValueError, match="n_local must be an integer >= 0, got -1"):
        logcal.distributed.bootstrap_offset(-1)


# --- the torchmetrics Metric classes, synced as under DDP ---


def _metric_worker(rank: int, world: int) -> dict:
    import torchmetrics.classification as tmc

    from logcal.compat.torchmetrics import BinaryCalibrationError, MulticlassCalibrationError

    g = torch.Generator().manual_seed(11)
    p = torch.rand(N, generator=g, dtype=torch.float64)
    p[::9] = 1.0
    y = (torch.rand(N, generator=g, dtype=torch.float64) < p).long()
    x = torch.randn(N, 4, generator=g)
    t = torch.randint(0, 4, (N,), generator=g)
    # uneven, but none empty: torchmetrics' own list states cannot sync an empty rank
    begin, end = (0, 1300) if rank == 0 else (1300, N)
    out = {}
    for name, mine, theirs, a, b in (
        ("binary", BinaryCalibrationError(n_bins=10), tmc.BinaryCalibrationError(n_bins=10), p, y),
        (
            "multiclass",
            MulticlassCalibrationError(4, norm="max"),
            tmc.MulticlassCalibrationError(4, norm="max"),
            x,
            t,
        ),
    ):
        for m in (mine, theirs):
            for i in range(begin, end, 700):  # a few batches per rank
                m.update(a[i : min(i + 700, end)], b[i : min(i + 700, end)])
        out[name] = (mine.compute(), theirs.compute())  # compute() syncs across the ranks
    return out


def test_metrics_sync_across_ranks_bit_for_bit(tmp_path):
    from logcal.compat.torchmetrics import BinaryCalibrationError, MulticlassCalibrationError

    ranks = _spawn(_metric_worker, 2, tmp_path)
    g = torch.Generator().manual_seed(11)
    p = torch.rand(N, generator=g, dtype=torch.float64)
    p[::9] = 1.0
    y = (torch.rand(N, generator=g, dtype=torch.float64) < p).long()
    x = torch.randn(N, 4, generator=g)
    t = torch.randint(0, 4, (N,), generator=g)
    single = {
        "binary": BinaryCalibrationError(n_bins=10),
        "multiclass": MulticlassCalibrationError(4, norm="max"),
    }
    single["binary"].update(p, y)
    single["multiclass"].update(x, t)
    for r in ranks:
        for name, (mine, theirs) in r.items():
            assert torch.equal(mine, single[name].compute()), name
            assert mine.dtype == theirs.dtype
            assert abs(float(mine) - float(theirs)) <= 1e-6, name
