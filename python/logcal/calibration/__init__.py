"""Calibration: exact, mergeable binned statistics, the ECE family, and a one-pass bootstrap.

Every sum behind every metric is kept per bin as a fixed-point integer (see
:class:`CalibrationStats`), so the statistics of a dataset are the same bits however it is
split into chunks, ordered, threaded or merged. Both :class:`CalibrationStats` and
:class:`CalibrationAccumulator` hold one :class:`CalibrationState`, which merges and
serialises them (``to_dict``/``from_dict``, ``to_bytes``/``from_bytes``).
"""

from __future__ import annotations

from ._accumulator import CalibrationAccumulator
from ._functions import (
    brier_score,
    calibration_stats,
    classwise_ece,
    ece,
    mce,
    nll,
    rmsce,
    top_label,
)
from ._state import CalibrationState
from ._stats import BrierDecomposition, CalibrationStats, ReliabilityBin

__all__ = [
    "BrierDecomposition",
    "CalibrationAccumulator",
    "CalibrationState",
    "CalibrationStats",
    "ReliabilityBin",
    "brier_score",
    "calibration_stats",
    "classwise_ece",
    "ece",
    "mce",
    "nll",
    "rmsce",
    "top_label",
]
