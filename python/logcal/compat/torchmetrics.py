"""torchmetrics 1.9's ``binary_calibration_error`` and ``multiclass_calibration_error``, faster.

Same signatures, conventions and numbers: the per-bin sums are accumulated in index order in
the input's float type, as torchmetrics' ``scatter_add_`` does on the CPU, and the last
operations on the ``n_bins + 1`` bin values are torchmetrics' own, so the results are the same
bits (checked against torchmetrics 1.9 / torch 2.13, float32 and float64). The quirks kept:

- **An extra bin for 1.0.** Edges are ``torch.linspace(0, 1, n_bins + 1)`` in the input dtype
  and bins ``[b_k, b_{k+1})`` from ``torch.bucketize(right=True) - 1``, with ``n_bins + 1``
  slots: a confidence of exactly 1.0 sits alone in a phantom last bin (torchmetrics issue
  #3510), which also counts in ``norm="max"``; so ``n_bins=1`` is not one bin.
- **Float edges and sums in the input dtype**: float32 input is binned on float32 edges and
  summed in float32 (counts saturate at 2**24 per bin); the multiclass metric casts the
  confidences to float32 whatever the input, so it is always float32.
- **Binary means positive-class**: ``preds`` is P(y = 1) and the "accuracy" is the target.
- **Logits are detected**: if any value is outside [0, 1] -- one NaN or 1 + 1e-6 is enough --
  sigmoid (binary) or softmax over dim 1 (multiclass) is applied to all of them.
- ``norm="l2"`` returns ``torch.tensor(0)`` (an int64 tensor) when the error is 0; empty bins
  count as 0 in ``"max"``; the debiased L2 is not exposed (as in torchmetrics).

Fast path: CPU tensors, float32/float64 ``preds`` in [0, 1]: one pass of a C++ loop instead of
``bucketize`` and three ``scatter_add_``, and no ``torch.unique`` sort unless
``validate_args`` asks for torchmetrics' checks. Anything else (logits, NaN, other dtypes,
CUDA tensors) runs a torch port of torchmetrics' code. For logcal's own exact, mergeable
statistics use :func:`logcal.calibration_stats` instead.

The metric classes, :class:`BinaryCalibrationError` and :class:`MulticlassCalibrationError`,
take torchmetrics' arguments and put each sample in torchmetrics' bin (its float edges in the
input's dtype, the phantom bin for 1.0, logits detected per ``update`` as its ``update``
does), but keep the per-bin sums exact: their state is one int64 tensor of 32-bit limbs
(``dist_reduce_fx="sum"``), so syncing across processes moves ``(n_bins + 1) * 30`` integers,
not every prediction, and the result is the same bits whatever the ranks, batches or order.
The numbers are torchmetrics' up to the rounding of its float sums (the exact means, rounded
once, instead of float32 running sums). A NaN confidence is refused (ValueError) rather than
turning the result into NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from .. import _native
from .._arrays import view
from ..calibration._fixed import CONF, CORRECT, FixedSums, limb_size, to_float
from ..calibration._inputs import pairs
from ..calibration._kernel import add_pairs_checked

__all__ = [
    "BinaryCalibrationError",
    "MulticlassCalibrationError",
    "binary_calibration_error",
    "multiclass_calibration_error",
]

_ALLOWED_NORM = ("l1", "l2", "max")


# --- torchmetrics' argument and tensor checks -------------------------------------------------


def _check_args(n_bins: Any, norm: Any, ignore_index: Any) -> None:
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(
            f"Expected argument `n_bins` to be an integer larger than 0, but got {n_bins}"
        )
    if norm not in _ALLOWED_NORM:
        raise ValueError(f"Expected argument `norm` to be one of {_ALLOWED_NORM}, but got {norm}.")
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise ValueError(
            f"Expected argument `ignore_index` to either be `None` or an integer, but got {ignore_index}"
        )


def _check_binary_tensors(
    preds: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> None:
    if preds.shape != target.shape:
        raise RuntimeError(
            f"Predictions and targets are expected to have the same shape, but got {preds.shape} "
            f"and {target.shape}."
        )
    unique_values = torch.unique(target, dim=None)
    check = (unique_values != 0) & (unique_values != 1)
    if ignore_index is not None:
        check &= unique_values != ignore_index
    if torch.any(check):
        raise RuntimeError(
            f"Detected the following values in `target`: {unique_values} but expected only"
            f" the following values {[0, 1] if ignore_index is None else [ignore_index]}."
        )
    if not preds.is_floating_point():
        raise ValueError(
            "Expected argument `preds` to be floating tensor with probabilities/logits"
            f" but got tensor with dtype {preds.dtype}"
        )


def _check_multiclass_tensors(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> None:
    if preds.ndim == target.ndim + 1:
        if not preds.is_floating_point():
            raise ValueError(
                "If `preds` have one dimension more than `target`, `preds` should be a float tensor."
            )
        if preds.shape[1] != num_classes:
            raise ValueError(
                "If `preds` have one dimension more than `target`, `preds.shape[1]` should be"
                " equal to number of classes."
            )
        if preds.shape[2:] != target.shape[1:]:
            raise ValueError(
                "If `preds` have one dimension more than `target`, the shape of `preds` should be"
                " (N, C, ...), and the shape of `target` should be (N, ...)."
            )
    elif preds.ndim == target.ndim:
        if preds.shape != target.shape:
            raise ValueError(
                "The `preds` and `target` should have the same shape,",
                f" got `preds` with shape={preds.shape} and `target` with shape={target.shape}.",
            )
    else:
        raise ValueError(
            "Either `preds` and `target` both should have the (same) shape (N, ...), or `target` should be (N, ...)"
            " and `preds` should be (N, C, ...)."
        )
    check_value = num_classes if ignore_index is None else num_classes + 1
    # As written in torchmetrics, `A + B if cond else ()` is `(A + B) if cond else ()`: with
    # float preds (the only kind accepted below) the unique-value check never runs.
    tensors = (((target, "target"), (preds, "preds"))) if not preds.is_floating_point() else ()
    for t, name in tensors:
        num_unique_values = len(torch.unique(t, dim=None))
        if num_unique_values > check_value:
            raise RuntimeError(
                f"Detected more unique values in `{name}` than expected. Expected only {check_value} but found"
                f" {num_unique_values} in `target`."
            )
    if not preds.is_floating_point():
        raise ValueError(
            "Expected argument `preds` to be floating tensor with probabilities/logits"
            f" but got tensor with dtype {preds.dtype}"
        )


def _normalize(t: torch.Tensor, kind: str) -> torch.Tensor:
    # torchmetrics.utilities.compute.normalize_logits_if_needed
    if t.device == torch.device("cpu"):
        if not torch.all((t >= 0) * (t <= 1)):
            t = t.sigmoid() if kind == "sigmoid" else torch.softmax(t, dim=1)
        return t
    condition = ((t < 0) | (t > 1)).any()
    return torch.where(
        condition, torch.sigmoid(t) if kind == "sigmoid" else torch.softmax(t, dim=1), t
    )


def _check_multiclass_args(num_classes: Any, n_bins: Any, norm: Any, ignore_index: Any) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"Expected argument `num_classes` to be an integer larger than 1, but got {num_classes}"
        )
    _check_args(n_bins, norm, ignore_index)


def _kept(
    preds: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (preds, target) rows whose target is not ``ignore_index``."""
    if ignore_index is None:
        return preds, target
    keep = target != ignore_index
    return preds[keep], target[keep]


def _top_label(
    preds: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchmetrics' multiclass (confidence, accuracy): softmax if needed, the largest
    probability as float32, and whether its class is the target."""
    preds, target = _kept(
        torch.movedim(preds, 1, -1).reshape(-1, preds.shape[1]), target.flatten(), ignore_index
    )
    confidences, predictions = _normalize(preds, "softmax").max(dim=1)
    return confidences.float(), predictions.eq(target)


# --- the computation ---------------------------------------------------------------------------


def _finish(
    count_bin: torch.Tensor, conf_sum: torch.Tensor, acc_sum: torch.Tensor, norm: str
) -> torch.Tensor:
    """torchmetrics' _ce_compute from the per-bin sums, with its own operations and dtype."""
    conf_bin = torch.nan_to_num(conf_sum / count_bin)
    acc_bin = torch.nan_to_num(acc_sum / count_bin)
    prop_bin = count_bin / count_bin.sum()
    if norm == "l1":
        return torch.sum(torch.abs(acc_bin - conf_bin) * prop_bin)
    if norm == "max":
        return torch.max(torch.abs(acc_bin - conf_bin))
    ce = torch.sum(torch.pow(acc_bin - conf_bin, 2) * prop_bin)
    return torch.sqrt(ce) if ce > 0 else torch.tensor(0)


def _torch_ce(
    confidences: torch.Tensor, accuracies: torch.Tensor, n_bins: int, norm: str
) -> torch.Tensor:
    """torchmetrics' binning with torch operations: the slow path."""
    bounds = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype, device=confidences.device)
    accuracies = accuracies.to(dtype=confidences.dtype)
    zeros = torch.zeros(len(bounds), device=confidences.device, dtype=confidences.dtype)
    indices = torch.bucketize(confidences, bounds, right=True) - 1
    count = zeros.clone().scatter_add_(0, indices, torch.ones_like(confidences))
    conf = zeros.clone().scatter_add_(0, indices, confidences)
    acc = zeros.clone().scatter_add_(0, indices, accuracies)
    return _finish(count, conf, acc, norm)


# Accuracy dtypes the sequential kernel reads as they are; other integers go through int64.
_KERNEL_ACC_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.float32,
    torch.float64,
)


def _fast_ce(
    confidences: torch.Tensor,
    accuracies: torch.Tensor,
    n_bins: int,
    norm: str,
    check_accuracy: bool = False,
) -> torch.Tensor | None:
    """The same sums with logcal's sequential kernel, or None when the inputs need the slow
    path (values outside [0, 1] or NaN, other dtypes or devices; with ``check_accuracy``, an
    accuracy that is not 0 or 1)."""
    dtype = confidences.dtype
    if (
        confidences.device.type != "cpu"
        or accuracies.device.type != "cpu"
        or dtype not in (torch.float32, torch.float64)
        or confidences.ndim != 1
        or accuracies.ndim != 1
        or confidences.shape != accuracies.shape
    ):
        return None
    acc = accuracies.detach()
    if acc.dtype not in _KERNEL_ACC_DTYPES:
        if acc.is_floating_point() or acc.is_complex():
            return None
        acc = acc.to(torch.int64)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    inner = torch.linspace(0, 1, n_bins + 1, dtype=dtype)[1:].numpy()
    count = np.zeros(n_bins + 1, dtype=np_dtype)
    conf_sum = np.zeros(n_bins + 1, dtype=np_dtype)
    acc_sum = np.zeros(n_bins + 1, dtype=np_dtype)
    bad = _native.cpu.binned_sums_sequential(
        confidence=view(confidences, "confidences"),
        accuracy=view(acc, "accuracies"),
        edges=view(np.ascontiguousarray(inner), "edges"),
        edges_scale=float(n_bins),
        check_accuracy=check_accuracy,
        count=view(count, "count"),
        conf_sum=view(conf_sum, "conf_sum"),
        acc_sum=view(acc_sum, "acc_sum"),
    )
    if bad >= 0:
        return None
    return _finish(
        torch.from_numpy(count), torch.from_numpy(conf_sum), torch.from_numpy(acc_sum), norm
    )


def binary_calibration_error(
    preds: torch.Tensor,
    target: torch.Tensor,
    n_bins: int = 15,
    norm: str = "l1",
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> torch.Tensor:
    """Calibration error of P(y = 1) against binary targets, as torchmetrics'
    ``binary_calibration_error`` (conventions in this module's docstring).

    Examples
    --------
    >>> import torch
    >>> from logcal.compat.torchmetrics import binary_calibration_error
    >>> preds = torch.tensor([0.25, 0.25, 0.55, 0.75, 0.75])
    >>> target = torch.tensor([0, 0, 1, 1, 1])
    >>> binary_calibration_error(preds, target, n_bins=2, norm='l1')
    tensor(0.2900)
    """
    if validate_args:
        _check_args(n_bins, norm, ignore_index)
        if preds.shape != target.shape or not preds.is_floating_point():
            _check_binary_tensors(preds, target, ignore_index)  # raises as torchmetrics does
    flat_preds, flat_target = _kept(preds.flatten(), target.flatten(), ignore_index)
    # The target check of torchmetrics (a torch.unique sort) is done in the same pass: only when
    # something is off does its own check run, for its exact error.
    fast = _fast_ce(flat_preds, flat_target, n_bins, norm, check_accuracy=validate_args)
    if fast is not None:
        return fast
    if validate_args:
        _check_binary_tensors(preds, target, ignore_index)
    preds, target = flat_preds, flat_target
    if preds.is_floating_point():
        preds = _normalize(preds, "sigmoid")
    return _torch_ce(preds, target, n_bins, norm)


def multiclass_calibration_error(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    n_bins: int = 15,
    norm: str = "l1",
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> torch.Tensor:
    """Top-label calibration error, as torchmetrics' ``multiclass_calibration_error``
    (softmax if needed, confidence = max probability in float32, conventions above).

    Examples
    --------
    >>> import torch
    >>> from logcal.compat.torchmetrics import multiclass_calibration_error
    >>> preds = torch.tensor([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40],
    ...                       [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    >>> target = torch.tensor([0, 1, 2, 0])
    >>> multiclass_calibration_error(preds, target, num_classes=3, n_bins=3, norm='l1')
    tensor(0.2000)
    """
    if validate_args:
        _check_multiclass_args(num_classes, n_bins, norm, ignore_index)
        _check_multiclass_tensors(preds, target, num_classes, ignore_index)
    confidences, accuracies = _top_label(preds, target, ignore_index)
    fast = _fast_ce(confidences, accuracies, n_bins, norm)
    if fast is not None:
        return fast
    return _torch_ce(confidences, accuracies, n_bins, norm)


# --- the metric classes ------------------------------------------------------------------------


class _ExactCalibrationError(Metric):
    """The exact, summable state behind both metric classes: the limbs of the fixed-point sums
    of ``n_bins + 1`` bins (torchmetrics' bins and its phantom bin for 1.0)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def _setup(self, n_bins: int, norm: str, ignore_index: int | None, validate_args: bool) -> None:
        self.validate_args = validate_args
        self.n_bins = n_bins
        self.norm = norm
        self.ignore_index = ignore_index
        self._dtype = torch.float32  # the result's: that of the confidences last added
        size = limb_size(n_bins + 1)
        self.add_state("limbs", default=torch.zeros(size, dtype=torch.int64), dist_reduce_fx="sum")

    def _sums(self) -> FixedSums:
        return FixedSums.from_limbs(self.limbs.cpu().numpy(), self.n_bins + 1)

    def _add(self, confidences: torch.Tensor, accuracies: torch.Tensor) -> None:
        """Adds (confidence, accuracy) pairs into the limbs, in torchmetrics' bins: edges
        ``linspace(0, 1, n_bins + 1)`` in the confidences' dtype, compared as they are."""
        dtype = confidences.dtype
        edges = torch.linspace(0, 1, self.n_bins + 1, dtype=dtype).double().numpy()
        func = f"{type(self).__name__}.update"
        p = pairs(
            confidences.detach().cpu().double().numpy(),
            accuracies.detach().cpu().numpy(),
            None,
            func,
            allow_empty=True,
        )
        batch = FixedSums(self.n_bins + 1)
        add_pairs_checked(p, batch, inner_edges=edges[1:], light=True)
        sums = self._sums()
        sums.add(batch)
        # Normalised after every update, so the 2**31 parts of headroom are the sync's alone.
        self.limbs = torch.from_numpy(sums.to_limbs()).to(self.limbs.device)
        self._dtype = dtype

    def compute(self) -> torch.Tensor:
        """The calibration error of everything added (on every rank, after a sync)."""
        sums = self._sums()
        count = torch.from_numpy(sums.count.astype(np.float64))
        conf_sum = torch.from_numpy(to_float(sums.sums[:, CONF]))
        acc_sum = torch.from_numpy(to_float(sums.sums[:, CORRECT]))
        out = _finish(count, conf_sum, acc_sum, self.norm)
        return out if out.dtype == torch.int64 else out.to(self._dtype)


class BinaryCalibrationError(_ExactCalibrationError):
    """torchmetrics' ``BinaryCalibrationError`` with an exact state that syncs a few KB.

    Parameters
    ----------
    n_bins, norm, ignore_index, validate_args, **kwargs
        As for torchmetrics' class (``kwargs`` go to ``torchmetrics.Metric``).

    Examples
    --------
    >>> import torch
    >>> from logcal.compat.torchmetrics import BinaryCalibrationError
    >>> metric = BinaryCalibrationError(n_bins=2, norm='l1')
    >>> metric.update(torch.tensor([0.25, 0.25, 0.55]), torch.tensor([0, 0, 1]))
    >>> metric.update(torch.tensor([0.75, 0.75]), torch.tensor([1, 1]))
    >>> metric.compute()
    tensor(0.2900)
    """

    def __init__(
        self,
        n_bins: int = 15,
        norm: str = "l1",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if validate_args:
            _check_args(n_bins, norm, ignore_index)
        self._setup(n_bins, norm, ignore_index, validate_args)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch: ``preds`` P(y = 1) (or logits), ``target`` 0 or 1."""
        if self.validate_args:
            _check_binary_tensors(preds, target, self.ignore_index)
        preds, target = _kept(preds.flatten(), target.flatten(), self.ignore_index)
        if preds.is_floating_point():
            preds = _normalize(preds, "sigmoid")
        self._add(preds, target)


class MulticlassCalibrationError(_ExactCalibrationError):
    """torchmetrics' ``MulticlassCalibrationError`` (top-label) with an exact state that syncs
    a few KB.

    Parameters
    ----------
    num_classes, n_bins, norm, ignore_index, validate_args, **kwargs
        As for torchmetrics' class (``kwargs`` go to ``torchmetrics.Metric``).

    Examples
    --------
    >>> import torch
    >>> from logcal.compat.torchmetrics import MulticlassCalibrationError
    >>> metric = MulticlassCalibrationError(num_classes=3, n_bins=3, norm='l1')
    >>> preds = torch.tensor([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40],
    ...                       [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    >>> metric.update(preds, torch.tensor([0, 1, 2, 0]))
    >>> metric.compute()
    tensor(0.2000)
    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        norm: str = "l1",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if validate_args:
            _check_multiclass_args(num_classes, n_bins, norm, ignore_index)
        self.num_classes = num_classes
        self._setup(n_bins, norm, ignore_index, validate_args)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch: ``preds`` [N, C, ...] probabilities (or logits), ``target`` [N, ...]."""
        if self.validate_args:
            _check_multiclass_tensors(preds, target, self.num_classes, self.ignore_index)
        self._add(*_top_label(preds, target, self.ignore_index))
