"""The CPU kernels (compiled). Internal: use the functions of the logcal package.

Arrays arrive as :class:`logcal._arrays.ArrayView`; outputs are dense arrays of the documented
shape and dtype, written in place (None: not wanted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._arrays import ArrayView

def token_stats(
    *,
    logits: ArrayView,
    targets: ArrayView | None = None,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    logsumexp: ArrayView | None = None,
    max_logprob: ArrayView | None = None,
    argmax: ArrayView | None = None,
    entropy: ArrayView | None = None,
    varentropy: ArrayView | None = None,
    target_logprob: ArrayView | None = None,
    target_rank: ArrayView | None = None,
    topk_ids: ArrayView | None = None,
    topk_logprobs: ArrayView | None = None,
) -> None: ...
def log_softmax(
    *, logits: ArrayView, out: ArrayView, temperature: float = 1.0, out_is_new: bool = False
) -> None: ...
def sequence_stats(
    *,
    token_logprobs: ArrayView,
    offsets: ArrayView | None = None,
    mask: ArrayView | None = None,
    sum: ArrayView | None = None,
    mean: ArrayView | None = None,
    min: ArrayView | None = None,
    perplexity: ArrayView | None = None,
    count: ArrayView | None = None,
) -> None: ...
def choice_confidence(
    *,
    choice_logprobs: ArrayView,
    lengths: ArrayView | None = None,
    labels: ArrayView | None = None,
    probs: ArrayView | None = None,
    pred: ArrayView | None = None,
    confidence: ArrayView | None = None,
    correct: ArrayView | None = None,
) -> None: ...
def sample_consistency(
    *,
    answers: ArrayView,
    seq_logprobs: ArrayView | None = None,
    mode: ArrayView | None = None,
    agreement: ArrayView | None = None,
    entropy: ArrayView | None = None,
    entropy_consistency: ArrayView | None = None,
    fsd: ArrayView | None = None,
    n_unique: ArrayView | None = None,
    semantic_entropy: ArrayView | None = None,
) -> None: ...
def selective(
    *,
    confidence: ArrayView,
    correct: ArrayView,
    coverages: ArrayView,
    threshold: ArrayView,
    coverage: ArrayView,
    risk: ArrayView,
    accuracy: ArrayView,
) -> tuple[float, float, int]: ...
def isotonic_fit(
    *, confidence: ArrayView, correct: ArrayView, x: ArrayView, y: ArrayView
) -> int: ...
def platt_sums(
    *, confidence: ArrayView, correct: ArrayView, a: float, b: float, stride: int = 1
) -> tuple[float, tuple[float, float], tuple[tuple[float, float], tuple[float, float]]]: ...
def calibration_stats(
    *,
    confidence: ArrayView,
    correct: ArrayView,
    weights: ArrayView | None = None,
    n_bins: int,
    edges: ArrayView | None = None,
    right_closed: bool = False,
    edges_scale: float = 0.0,
    eps: float,
    light: bool = False,
    n_bootstrap: int = 0,
    seed: int = 0,
    block: int = 1,
    offset: int = 0,
    count: ArrayView,
    sums: ArrayView,
    boot_bins: ArrayView | None = None,
    boot_totals: ArrayView | None = None,
) -> int: ...
def binned_sums_sequential(
    *,
    confidence: ArrayView,
    accuracy: ArrayView,
    edges: ArrayView,
    edges_scale: float,
    check_accuracy: bool,
    count: ArrayView,
    conf_sum: ArrayView,
    acc_sum: ArrayView,
) -> int: ...
def top_label(
    *, probs: ArrayView, labels: ArrayView, confidence: ArrayView, correct: ArrayView
) -> tuple[int, int]: ...
def calib_uniform_bin(c: float, n_bins: int) -> int: ...
def calib_log_det(x: float) -> float: ...
def calib_to_fixed(value: float) -> tuple[int, int]: ...
def calib_bootstrap_weight(seed: int, unit: int, replicate: int) -> int: ...
def calib_confidence_from_max_logprob(
    max_logprob: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]: ...
def calib_exp_det(x: float) -> float: ...
def _fp16_bits_to_float32(bits: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
def _float32_to_fp16_bits(values: npt.ArrayLike) -> npt.NDArray[np.uint16]: ...
def _float32_to_bf16_bits(values: npt.ArrayLike) -> npt.NDArray[np.uint16]: ...
def io_add_tokens(
    columns: tuple[bytearray, ...],
    record: int,
    sequences: list[tuple[int, list[Any], list[int] | None]],
    strings: dict[Any, int],
    token_bytes: dict[Any, int],
) -> int: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def isa() -> str: ...
def best_isa() -> str: ...
def set_isa(name: str) -> None: ...
