"""Float64 numpy implementations of logcal's public functions.

They are the oracle for the tests and the baseline for the benchmarks: written for clarity,
not speed, each states the definition the fast kernels must match, with the same conventions
(NaN rows, ties to the lower id, ranks on raw logits, exact bin edges). The ports of
scikit-learn's and torchmetrics' calibration conventions are in ``reference.calibration``.

>>> import numpy as np
>>> from logcal import reference
>>> reference.log_softmax(np.array([0.0, 0.0]))
array([-0.69314718, -0.69314718])
"""

from . import calibration
from .calibration import (
    ReferenceCalibrationStats,
    bootstrap_weights,
    brier_score,
    calibration_stats,
    classwise_ece,
    ece,
    mce,
    nll,
    quantile_edges,
    rmsce,
    top_label,
    uniform_bin_index,
)
from .recalibration import (
    brier_decomposition,
    fit_temperature,
    isotonic_regression,
    nll_at_temperature,
    platt_scaling,
    spiegelhalter,
)
from .selective import selective
from .sequence import choice_confidence, sample_consistency, sequence_stats
from .token import log_softmax, token_stats

__all__ = [
    "ReferenceCalibrationStats",
    "bootstrap_weights",
    "brier_decomposition",
    "brier_score",
    "calibration",
    "calibration_stats",
    "choice_confidence",
    "classwise_ece",
    "ece",
    "fit_temperature",
    "isotonic_regression",
    "log_softmax",
    "mce",
    "nll",
    "nll_at_temperature",
    "platt_scaling",
    "quantile_edges",
    "rmsce",
    "sample_consistency",
    "selective",
    "sequence_stats",
    "spiegelhalter",
    "token_stats",
    "top_label",
    "uniform_bin_index",
]
