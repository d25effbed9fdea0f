"""logcal.ray on a local 2-CPU Ray: per-block accumulators merged by Ray give one
accumulator's statistics bit for bit, whatever the blocks."""

from __future__ import annotations

import re

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pd = pytest.importorskip("pandas")
pytest.importorskip("ray.data")

import logcal  # noqa: E402
import logcal.ray  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _blocks(seed: int, n: int) -> tuple:
    """n pairs with weights, and a random partition of them into data frames (empty ones
    too): the blocks of the dataset."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    c[::5] = np.round(c[::5], 1)  # values on the bin edges
    y = rng.uniform(size=n) < c
    w = rng.uniform(0, 4, n)
    cuts = sorted(rng.integers(0, n, rng.integers(1, 9)).tolist())
    frames = [
        pd.DataFrame({"conf": c[a:b], "ok": y[a:b], "w": w[a:b]})
        for a, b in zip([0, *cuts], [*cuts, n])
    ]
    return c, y, w, frames


@pytest.fixture(params=["default", "sort_shuffle_pull_based"])
def shuffle_strategy(request):
    """Ray's default strategy (which gathers blocks before aggregating them) and the sort
    shuffle (which aggregates each block in its own task: the states of blocks of several
    sizes are merged)."""
    context = ray.data.DataContext.get_current()
    default = context.shuffle_strategy
    if request.param != "default":
        context.shuffle_strategy = ray.data.context.ShuffleStrategy(request.param)
    yield
    context.shuffle_strategy = default


@pytest.mark.parametrize(
    ("seed", "kw"),
    [
        (0, {"n_bins": 12}),
        (1, {"binning": "quantile", "n_bins": 7, "weights": "w"}),
    ],
)
def test_blocks_merged_by_ray_equal_one_accumulator_bit_for_bit(seed, kw, shuffle_strategy):
    c, y, w, frames = _blocks(seed, int(np.random.default_rng(seed).integers(1, 5000)))
    agg = logcal.ray.CalibrationAggregate("conf", "ok", name="cal", **kw)
    got = ray.data.from_pandas(frames).aggregate(agg)["cal"]
    settings = {k: v for k, v in kw.items() if k != "weights"}
    one = logcal.CalibrationAccumulator(**settings).update(
        c, y, weights=w if "weights" in kw else None
    )
    assert got == one.compute()
    assert got.to_bytes() == one.compute().to_bytes()
    if settings.get("binning", "uniform") != "quantile":  # the one-shot call too
        assert got == logcal.calibration_stats(
            c, y, weights=w if "weights" in kw else None, **settings
        )


def test_a_bad_value_in_a_block_is_refused():
    frames = [
        pd.DataFrame({"conf": [0.5], "ok": [True]}),
        pd.DataFrame({"conf": [1.5], "ok": [False]}),
    ]
    with pytest.raises(
        ValueError,
        match=r"logcal\.ray\.CalibrationAggregate: a block of [12] rows: "
        + re.escape("confidence[")
        + "[01]"
        + re.escape("] = 1.5 is outside [0, 1]"),
    ):
        ray.data.from_pandas(frames).aggregate(logcal.ray.CalibrationAggregate("conf", "ok"))


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match=re.escape("correct must be a column name (str), got 3")):
        logcal.ray.CalibrationAggregate("conf", 3)
    with pytest.raises(
        TypeError, match=re.escape("weights must be a column name (str) or None, got ['w']")
    ):
        logcal.ray.CalibrationAggregate("conf", "ok", weights=["w"])
    with pytest.raises(ValueError, match="n_bins"):
        logcal.ray.CalibrationAggregate("conf", "ok", n_bins=0)
