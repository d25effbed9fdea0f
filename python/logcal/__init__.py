"""logcal: how confident a language model is, and how well that confidence is calibrated.

Token-level statistics from logits (log-softmax, log-sum-exp, entropy, argmax, target
log-probability and rank, top-k) in one pass over memory, on CPUs with vectorised,
multithreaded C++ kernels. Calibration statistics (ECE, MCE, RMSCE, Brier, NLL, reliability
bins, bootstrap intervals) from exact, mergeable fixed-point sums; drop-in replacements for
scikit-learn's and torchmetrics' calibration functions in ``logcal.compat``. Sequence
log-likelihoods, multiple-choice confidence, agreement between sampled answers and selective
prediction; readers for the logprobs of model APIs (``logcal.io``); reliability diagrams
(``logcal.plot``, with matplotlib); the ``logcal`` command.

>>> import numpy as np, logcal
>>> logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
>>> stats = logcal.token_stats(logits, targets=np.array([0, 2]), top_k=2)
>>> stats.argmax
array([0, 0])
>>> np.round(stats.target_logprob, 4)
array([-0.4076, -1.0986], dtype=float32)
"""

from __future__ import annotations

from . import io, recalibration, reference
from ._hidden import token_stats_from_hidden
from ._metrics import SmoothECE, smooth_ece, spiegelhalter
from ._native import cuda_available, cuda_compiled, get_num_threads, set_num_threads
from ._selective import SelectiveStats, selective
from ._sequence import (
    ChoiceConfidence,
    Consistency,
    SequenceStats,
    choice_confidence,
    sample_consistency,
    sequence_stats,
)
from ._token import TokenStats, log_softmax, token_stats
from .calibration import (
    CalibrationAccumulator,
    CalibrationStats,
    ReliabilityBin,
    brier_score,
    calibration_stats,
    classwise_ece,
    ece,
    mce,
    nll,
    rmsce,
    top_label,
)
from .io import read_logprobs

__version__ = "0.1.0"

__all__ = [
    "CalibrationAccumulator",
    "CalibrationStats",
    "ChoiceConfidence",
    "Consistency",
    "ReliabilityBin",
    "SelectiveStats",
    "SequenceStats",
    "SmoothECE",
    "TokenStats",
    "brier_score",
    "calibration_stats",
    "choice_confidence",
    "classwise_ece",
    "cuda_available",
    "cuda_compiled",
    "ece",
    "get_num_threads",
    "io",
    "log_softmax",
    "mce",
    "nll",
    "read_logprobs",
    "recalibration",
    "reference",
    "rmsce",
    "sample_consistency",
    "selective",
    "sequence_stats",
    "set_num_threads",
    "smooth_ece",
    "spiegelhalter",
    "token_stats",
    "token_stats_from_hidden",
    "top_label",
]
