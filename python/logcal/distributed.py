"""The exact calibration state across ``torch.distributed`` ranks: one SUM collective of a few
KB, never the predictions.

A :class:`~logcal.CalibrationAccumulator`'s sums are integers; split into 32-bit limbs
(:meth:`CalibrationState.to_limbs <logcal.calibration.CalibrationState.to_limbs>`) they add
element-wise without wrapping over up to 2**31 ranks, so one ``all_reduce(SUM)`` of that int64
tensor, normalised afterwards, is the exact merge: the same bits whatever the number of ranks
or how the data was split among them. The settings (bins, ``eps``, bootstrap) are not summed:
they are gathered and compared first, so that a mismatch raises on every rank, naming it.

The collective runs where the group's backend does: gloo on the CPU; NCCL on the current CUDA
device (or the device that holds the accumulator's GPU updates), the tensor moved there and
back (it is a few KB).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .calibration import CalibrationAccumulator
from .calibration._kernel import DevicePart
from .calibration._state import ACCUMULATOR_FORMAT, _union

__all__ = ["all_reduce", "bootstrap_offset"]

_FUNC = "logcal.distributed.all_reduce"


def _device(group: Any, acc: CalibrationAccumulator | None = None) -> torch.device:
    """Where a collective's tensors must be: the CPU for gloo; a CUDA device for NCCL (the one
    holding the accumulator's GPU part, else the current one)."""
    if dist.get_backend(group) != dist.Backend.NCCL:
        return torch.device("cpu")
    part = None if acc is None else acc._device._state
    return torch.device("cuda", part.device if part is not None else torch.cuda.current_device())


def bootstrap_offset(n_local: int, group: Any = None) -> int:
    """This rank's first position in the bootstrap's stream: the samples of the ranks before
    it (a collective: every rank of ``group`` calls it with its own sample count).

    Ranks placed this way never share a position, and the merged bootstrap is the one a single
    accumulator gives on the data of all ranks, concatenated in rank order. Pass it as the
    ``offset=`` of the rank's first ``update`` (later ones follow on). When counts are not known
    in advance, any disjoint placement works too, e.g. ``rank * stride`` with a stride above
    every rank's count.

    Parameters
    ----------
    n_local : int
        The number of samples this rank will add.
    group : ProcessGroup, optional
        The process group (default: the world).

    Returns
    -------
    int
        The sum of ``n_local`` over the ranks below this one.

    Examples
    --------
    >>> import logcal.distributed  # doctest: +SKIP
    >>> acc = logcal.CalibrationAccumulator(n_bins=15, n_bootstrap=200)  # doctest: +SKIP
    >>> off = logcal.distributed.bootstrap_offset(len(conf))  # doctest: +SKIP
    >>> acc.update(conf, correct, offset=off)  # doctest: +SKIP
    """
    if isinstance(n_local, bool) or not isinstance(n_local, (int, np.integer)) or n_local < 0:
        raise ValueError(f"n_local must be an integer >= 0, got {n_local!r}")
    counts = _all_gather_ints([int(n_local)], group)
    return sum(c[0] for c in counts[: dist.get_rank(group)])


def all_reduce(acc: CalibrationAccumulator, group: Any = None) -> CalibrationAccumulator:
    """Merges the accumulators of all ranks of ``group``: afterwards every rank holds the same,
    merged state (bit for bit that of merging them one by one, in any order).

    A collective: every rank calls it. First the settings are gathered and compared (bins,
    ``eps``, bootstrap; with a bootstrap, the ranks' positions must not overlap: place them
    with :func:`bootstrap_offset`); a difference raises ValueError on every rank, naming the
    setting and the ranks. Then one ``all_reduce(SUM)`` of the state's int64 limbs (gloo on the
    CPU; NCCL on the accumulator's CUDA device).

    Parameters
    ----------
    acc : CalibrationAccumulator
        This rank's accumulator; replaced in place by the merged state.
    group : ProcessGroup, optional
        The process group (default: the world).

    Returns
    -------
    CalibrationAccumulator
        ``acc``.

    Examples
    --------
    >>> import logcal, logcal.distributed  # doctest: +SKIP
    >>> acc = logcal.CalibrationAccumulator(n_bins=15).update(conf, correct)  # doctest: +SKIP
    >>> logcal.distributed.all_reduce(acc).compute().ece()  # doctest: +SKIP
    """
    if not isinstance(acc, CalibrationAccumulator):
        raise TypeError(f"{_FUNC} needs a CalibrationAccumulator, got {type(acc).__name__}")
    if not dist.is_initialized():
        raise RuntimeError(f"{_FUNC}: torch.distributed is not initialised (init_process_group)")
    # The lock is held throughout, so that no update on this rank falls between the read of
    # its state and the merged state replacing it.
    with acc._lock:
        device = _device(group, acc)
        state = acc._read()
        summaries = [None] * dist.get_world_size(group)
        dist.all_gather_object(summaries, state.summary(), group=group)
        position, ranges = _checked(summaries)
        limbs = torch.from_numpy(state.to_limbs()).to(device)
        dist.all_reduce(limbs, op=dist.ReduceOp.SUM, group=group)
        total = limbs.cpu().numpy()
        if total[0] != len(summaries):
            raise ValueError(f"{_FUNC}: the sum holds {total[0]} parts for {len(summaries)} ranks")
        merged = state.from_limbs(total, ACCUMULATOR_FORMAT, position=position, ranges=ranges)
        acc._state = merged  # its GPU part, if any, was read into ``state``: start a new one
        acc._device = DevicePart(merged.count.size, merged.inner_edges)
    return acc


def _checked(summaries: list) -> tuple[int, tuple]:
    """(position, ranges) of the merged ranks; ValueError (the same on every rank) naming the
    setting that differs and the ranks, or two ranks whose bootstrap positions overlap."""
    first = summaries[0]
    for rank, s in enumerate(summaries[1:], 1):
        for key in ("binning", "n_bins", "edges", "eps", "bootstrap"):
            if s[key] != first[key]:
                what = "bin edges" if key == "edges" else f"{key} ({first[key]!r} and {s[key]!r})"
                raise ValueError(f"{_FUNC}: ranks 0 and {rank} have different {what}")
    owners = sorted(
        (begin, end, rank) for rank, s in enumerate(summaries) for begin, end in s["ranges"]
    )
    for (_, end0, rank0), (begin1, end1, rank1) in zip(owners, owners[1:]):
        if begin1 < end0:
            raise ValueError(
                f"{_FUNC}: ranks {min(rank0, rank1)} and {max(rank0, rank1)} both hold positions "
                f"[{begin1}, {min(end0, end1)}) of the bootstrap's stream (each sample needs its "
                "own position: place each rank's samples with logcal.distributed.bootstrap_offset)"
            )
    ranges: tuple = ()
    for s in summaries:
        ranges = _union(ranges, s["ranges"], _FUNC)
    return max(s["position"] for s in summaries), ranges


def _all_gather_ints(values: list, group: Any) -> list:
    """Every rank's list of ints (the same length on every rank)."""
    mine = torch.tensor(values, dtype=torch.int64, device=_device(group))
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, mine, group=group)
    return [t.cpu().tolist() for t in out]
