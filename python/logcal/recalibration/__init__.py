"""Recalibration: fit a map that makes confidences calibrated, then apply it.

On logits, :func:`fit_temperature` (the NLL-optimal temperature in a few token passes) and
:class:`TemperatureFit` (the same from a stream, mergeable across processes). On confidences,
:class:`PlattScaling`, :class:`BetaCalibration`, :class:`IsotonicCalibration` and
:class:`HistogramBinning`, with scikit-learn's ``fit``/``transform`` conventions. Every fitted
map serialises with ``to_dict``/``from_dict``.
"""

from __future__ import annotations

from ._confidence import BetaCalibration, HistogramBinning, IsotonicCalibration, PlattScaling
from ._temperature import TemperatureFit, TemperatureScaling, fit_temperature

__all__ = [
    "BetaCalibration",
    "HistogramBinning",
    "IsotonicCalibration",
    "PlattScaling",
    "TemperatureFit",
    "TemperatureScaling",
    "fit_temperature",
]
