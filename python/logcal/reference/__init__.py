"""Float64 numpy implementations of logcal's public functions.

They are the oracle for the tests and the baseline for the benchmarks: written for clarity,
not speed, each states the definition the fast kernels must match, with the same conventions
(NaN rows, ties to the lower id, ranks on raw logits, exact bin edges).

>>> import numpy as np
>>> from logcal import reference
>>> reference.log_softmax(np.array([0.0, 0.0]))
array([-0.69314718, -0.69314718])
"""

from .selective import selective
from .sequence import choice_confidence, sample_consistency, sequence_stats
from .token import log_softmax, token_stats

__all__ = [
    "choice_confidence",
    "log_softmax",
    "sample_consistency",
    "selective",
    "sequence_stats",
    "token_stats",
]
