"""Drop-in replacements for the calibration functions of other libraries.

Same signatures, same conventions (their quirks included), same numbers to 1e-12 on float64
input -- only faster:

- :mod:`logcal.compat.sklearn`: ``calibration_curve``, ``brier_score_loss``, ``log_loss``
  (scikit-learn 1.9);
- :mod:`logcal.compat.torchmetrics`: ``binary_calibration_error``,
  ``multiclass_calibration_error`` (torchmetrics 1.9; needs torch).

Each runs logcal's exact one-pass kernel on the common inputs (numeric labels, probabilities
in [0, 1]) and hands anything else (NaN, string labels, multiclass probabilities, ...) to a
faithful port of the original, so errors and edge cases behave as there.

>>> from logcal.compat import sklearn
>>> import numpy as np
>>> sklearn.calibration_curve(np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9]), n_bins=2)
(array([0., 1.]), array([0.1 , 0.85]))
"""

__all__ = ["sklearn", "torchmetrics"]


def __getattr__(name: str):
    # Imported on first use, so `import logcal.compat` needs neither peer nor torch.
    if name in __all__:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
