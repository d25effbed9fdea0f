"""The CUDA kernels (compiled where nvcc was found). Internal: use the functions of the logcal
package. The same keyword signatures as the CPU module for the operations both have; arrays
are CUDA ArrayViews, run on their device and the caller's stream (ArrayView.stream)."""

from __future__ import annotations

from ._arrays import ArrayView
from ._core_cpu import log_softmax as log_softmax
from ._core_cpu import sequence_stats as sequence_stats
from ._core_cpu import token_stats as token_stats

MAX_TOPK_PER_PASS: int

def device_count() -> int: ...
def sm_count(device: int) -> int: ...
def calibration_stats(
    *,
    confidence: ArrayView,
    correct: ArrayView,
    n_bins: int,
    edges: ArrayView | None = None,
    eps: float,
    light: bool = False,
    count: ArrayView,
    sums: ArrayView,
) -> int: ...
def calibration_from_logits(
    *,
    max_logprob: ArrayView,
    argmax: ArrayView,
    targets: ArrayView,
    ignore_index: int,
    n_bins: int,
    edges: ArrayView | None = None,
    eps: float,
    count: ArrayView,
    sums: ArrayView,
) -> None: ...
def synchronize(device: int, stream: int) -> None: ...
