"""The reliability diagram: rendered to PNG, and its bars are the per-bin accuracies."""

from __future__ import annotations

import numpy as np
import pytest

import logcal

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

import logcal.plot  # noqa: E402 (after matplotlib is known to be there)


@pytest.fixture
def stats():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 20000)
    correct = rng.random(20000) < conf**2  # overconfident
    conf[:10] = 1.0
    return logcal.calibration_stats(conf, correct, n_bins=10, n_bootstrap=50, seed=1)


def test_bars_are_the_per_bin_accuracy(stats):
    fig = logcal.plot.reliability_diagram(stats)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_gid() == "accuracy"]
    filled = np.asarray(stats.count) > 0
    assert len(bars) == int(filled.sum())
    np.testing.assert_allclose([b.get_height() for b in bars], np.asarray(stats.accuracy)[filled])
    np.testing.assert_allclose([b.get_x() for b in bars], np.asarray(stats.edges)[:-1][filled])
    gaps = [p for p in ax.patches if p.get_gid() == "gap"]
    want_gap = (np.asarray(stats.mean_confidence) - np.asarray(stats.accuracy))[filled]
    np.testing.assert_allclose([g.get_height() for g in gaps], want_gap)
    shares = [p for p in fig.axes[1].patches if p.get_gid() == "share"]
    np.testing.assert_allclose([s.get_height() for s in shares], stats.count / stats.n)
    assert "ECE = " in ax.get_title() and "95% CI" in ax.get_title()
    plt.close(fig)


def test_renders_to_a_png_that_is_not_blank(stats, tmp_path):
    fig = logcal.plot.reliability_diagram(stats, title="overconfident model")
    path = tmp_path / "r.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    image = plt.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.1  # bars and text, not a blank canvas


def test_draws_on_a_given_axes(stats):
    fig, ax = plt.subplots()
    assert logcal.plot.reliability_diagram(stats, ax=ax) is fig
    assert any(p.get_gid() == "accuracy" for p in ax.patches)
    plt.close(fig)
    fig = logcal.plot.confidence_histogram(stats)
    assert len([p for p in fig.axes[0].patches if p.get_gid() == "share"]) == stats.n_bins
    plt.close(fig)
