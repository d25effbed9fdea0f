"""calibration_stats(preset=...): the bins and norm each convention fixes, against transcriptions
of the conventions; the preset in the result, its dict and merges; bad names and conflicts."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import logcal
from logcal import CalibrationStats

FIXED = {
    "helm": (10, "quantile", "l1"),
    "lm-polygraph": (10, "uniform", "l1"),
    "mapie": (50, "uniform", "l1"),
    "torchmetrics": (15, "uniform", "l1"),
    "sklearn": (5, "uniform", "l1"),
}


def data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.permutation(n) / n * 0.5 + 0.5  # distinct confidences in [0.5, 1)
    return c, rng.random(n) < c**2


@pytest.mark.parametrize("name", sorted(FIXED))
def test_a_preset_is_its_bins_and_norm(name):
    n_bins, binning, norm = FIXED[name]
    c, y = data()
    s = logcal.calibration_stats(c, y, preset=name)
    plain = logcal.calibration_stats(c, y, n_bins=n_bins, binning=binning)
    assert s.preset == name and plain.preset is None
    assert s.binning == binning and s.n_bins == plain.n_bins
    np.testing.assert_array_equal(s.edges, plain.edges)
    assert s.ece() == plain.ece(norm=norm)
    assert s.brier() == plain.brier()


def _hle_calib_err(confidence, correct, beta=100, drop_last=True):
    """Humanity's Last Exam's calib_err (p="2"), transcribed; drop_last=False sums every bin."""
    idxs = np.argsort(confidence)
    confidence, correct = confidence[idxs], correct[idxs]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1] = [bins[-1][0], len(confidence)]
    cerr = 0.0
    for lo, hi in bins[:-1] if drop_last else bins:
        diff = abs(np.nanmean(confidence[lo:hi]) - np.nanmean(correct[lo:hi]))
        cerr += (hi - lo) / len(confidence) * diff**2
    return math.sqrt(cerr)


@pytest.mark.parametrize("n", [1000, 1234])
def test_hle_is_rms_over_bins_of_100_with_the_last_bin(n):
    c, y = data(n, seed=1)
    s = logcal.calibration_stats(c, y, preset="hle")
    assert s.preset == "hle" and s.binning == "quantile" and s.n_bins == n // 100
    assert s.ece() == s.rmsce()
    if n % 100 == 0:  # then the equal-mass bins are exactly HLE's
        assert s.ece() == pytest.approx(_hle_calib_err(c, y, drop_last=False), rel=1e-12)
        last = s.count[-1] / n * (s.accuracy[-1] - s.mean_confidence[-1]) ** 2
        dropped = math.sqrt(s.ece() ** 2 - last)
        assert dropped == pytest.approx(_hle_calib_err(c, y), rel=1e-10)


def test_hle_with_fewer_than_100_samples_is_one_bin():
    c, y = data(60)
    assert logcal.calibration_stats(c, y, preset="hle").n_bins == 1


def test_preset_in_dict_repr_and_merge():
    c, y = data()
    s = logcal.calibration_stats(c, y, preset="mapie")
    d = json.loads(json.dumps(s.to_dict()))
    assert d["preset"] == "mapie"
    back = CalibrationStats.from_dict(d)
    assert back.preset == "mapie" and back == s and back.ece() == s.ece()
    assert "preset='mapie'" in repr(s)
    assert "preset" not in logcal.calibration_stats(c, y).to_dict()
    other = logcal.calibration_stats(c[:10], y[:10], preset="mapie")
    assert s.merge(other).preset == "mapie"
    plain = logcal.calibration_stats(c[:10], y[:10], n_bins=50)
    assert s.merge(plain).preset is None


def test_explicit_arguments_that_agree_are_accepted():
    c, y = data()
    s = logcal.calibration_stats(c, y, preset="helm", n_bins=10, binning="quantile")
    assert s.preset == "helm"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"preset": "HELM"},
            "preset must be one of ('helm', 'hle', 'lm-polygraph', 'mapie', "
            "'torchmetrics', 'sklearn'), got 'HELM'",
        ),
        (
            {"preset": 3},
            "preset must be one of ('helm', 'hle', 'lm-polygraph', 'mapie', "
            "'torchmetrics', 'sklearn'), got 3",
        ),
        (
            {"preset": "helm", "n_bins": 15},
            "preset='helm' fixes n_bins=10, got n_bins=15: pass one or the other",
        ),
        (
            {"preset": "mapie", "binning": "quantile"},
            "preset='mapie' fixes binning='uniform', got binning='quantile': pass one or the other",
        ),
        (
            {"preset": "hle", "n_bins": 15},
            "preset='hle' fixes n_bins=10, got n_bins=15: pass one or the other",
        ),
    ],
)
def test_bad_presets(kwargs, message):
    c, y = data()
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        logcal.calibration_stats(c, y, **kwargs)
