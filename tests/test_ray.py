"""logcal.ray on a local 2-CPU Ray: per-block accumulators merged by Ray give one
accumulator's statistics bit for bit, whatever the blocks."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# --- calibration_stats: the states made where the rows are, merged by the driver ----------


@pytest.mark.parametrize(
    ("seed", "kw"),
    [
        (2, {"n_bins": 12}),
        (3, {"binning": "quantile", "n_bins": 7, "weights": "w"}),
        (4, {"binning": [0.0, 0.25, 0.5, 0.9, 1.0], "weights": "w"}),
    ],
)
def test_states_made_per_block_equal_one_accumulator_bit_for_bit(seed, kw):
    c, y, w, frames = _blocks(seed, int(np.random.default_rng(seed).integers(1, 5000)))
    got = logcal.ray.calibration_stats(ray.data.from_pandas(frames), "conf", "ok", **kw)
    settings = {k: v for k, v in kw.items() if k != "weights"}
    one = logcal.CalibrationAccumulator(**settings).update(
        c, y, weights=w if "weights" in kw else None
    )
    assert got == one.compute()
    assert got.to_bytes() == one.compute().to_bytes()


@pytest.mark.parametrize("in_order", [True, False])
def test_bootstrap_at_the_positions_of_a_column_equals_one_accumulator(in_order):
    """Rows placed by their position column: blocks of consecutive positions, or rows
    shuffled across blocks; one accumulator fed the rows in position order (from 1000 on)
    gives the same bits."""
    rng = np.random.default_rng(5 + in_order)
    n = int(rng.integers(2000, 5000))
    c, y, w, frames = _blocks(6 + in_order, n)
    pos = np.arange(1000, 1000 + n)
    if not in_order:
        pos = rng.permutation(pos)
    shift = 0
    for f in frames:
        f["pos"] = pos[shift : shift + len(f)]
        shift += len(f)
    settings = dict(n_bins=10, n_bootstrap=30, seed=7)
    got = logcal.ray.calibration_stats(
        ray.data.from_pandas(frames), "conf", "ok", weights="w", position="pos", **settings
    )
    order = np.argsort(pos)
    one = logcal.CalibrationAccumulator(**settings).update(
        c[order], y[order], weights=w[order], offset=1000
    )
    assert got == one.compute()
    assert got.to_bytes() == one.compute().to_bytes()
    assert got.n_bootstrap == 30 and got.interval() == one.compute().interval()


def test_rows_generated_by_map_batches():
    """Rows generated by a map_batches step (the state is made in the same task)."""
    ds = ray.data.range(3, override_num_blocks=3).map_batches(_generated, batch_size=1)
    got = logcal.ray.calibration_stats(ds, "conf", "ok", position="pos", n_bootstrap=5)
    one = logcal.CalibrationAccumulator(n_bootstrap=5)
    for i in range(3):
        one.update(*_partition(i)[:2])
    assert got.to_bytes() == one.compute().to_bytes()


def _partition(i: int) -> tuple:
    rng = np.random.default_rng(i)
    conf = rng.uniform(size=100 + i)
    return conf, rng.uniform(size=conf.size) < conf, sum(100 + j for j in range(i))


def _generated(batch: dict) -> dict:
    conf, correct, start = _partition(int(batch["id"][0]))
    return {"conf": conf, "ok": correct, "pos": np.arange(start, start + conf.size)}


def _frames_ds(*frames: dict):
    return ray.data.from_pandas([pd.DataFrame(f) for f in frames])


def test_a_bad_value_in_a_block_is_refused_by_calibration_stats():
    ds = _frames_ds({"conf": [0.5], "ok": [True]}, {"conf": [0.25, 1.5], "ok": [False, True]})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.ray.calibration_stats: a block of 2 rows: confidence[1] = 1.5 is outside [0, 1]"
        ),
    ):
        logcal.ray.calibration_stats(ds, "conf", "ok")
    ds = _frames_ds({"conf": [0.5, 0.25, 1.5], "ok": [False, True, True], "pos": [9, 4, 5]})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.ray.calibration_stats: a block of 3 rows, the rows at positions [4, 6): "
            "confidence[1] = 1.5 is outside [0, 1]"
        ),
    ):
        logcal.ray.calibration_stats(ds, "conf", "ok", position="pos", n_bootstrap=3)


def test_positions_taken_twice_are_refused():
    taken_twice = re.escape("positions [4, 5) of the bootstrap's stream are taken twice")
    within = _frames_ds({"conf": [0.5, 0.25, 0.75], "ok": [0, 1, 1], "pos": [4, 3, 4]})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.ray.calibration_stats: a block of 3 rows, the rows at positions [4, 5): "
            "CalibrationAccumulator.update: "
        )
        + taken_twice,
    ):
        logcal.ray.calibration_stats(within, "conf", "ok", position="pos", n_bootstrap=3)
    across = _frames_ds(
        {"conf": [0.5, 0.25], "ok": [0, 1], "pos": [3, 4]},
        {"conf": [0.75], "ok": [1], "pos": [4]},
    )
    with pytest.raises(
        ValueError,
        match=re.escape("logcal.ray.calibration_stats: cannot merge accumulators: ") + taken_twice,
    ):
        logcal.ray.calibration_stats(across, "conf", "ok", position="pos", n_bootstrap=3)


def test_bad_positions_are_refused():
    floats = _frames_ds({"conf": [0.5], "ok": [1], "pos": [0.0]})
    with pytest.raises(
        TypeError,
        match=re.escape(
            "logcal.ray.calibration_stats: the position column 'pos' must hold integers, got "
            "dtype float64"
        ),
    ):
        logcal.ray.calibration_stats(floats, "conf", "ok", position="pos", n_bootstrap=3)
    negative = _frames_ds({"conf": [0.5, 0.5], "ok": [1, 0], "pos": [0, -2]})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.ray.calibration_stats: the position column 'pos' holds -2, positions must "
            "be >= 0"
        ),
    ):
        logcal.ray.calibration_stats(negative, "conf", "ok", position="pos", n_bootstrap=3)


def test_bad_arguments_of_calibration_stats_are_refused_before_any_task():
    ds = _frames_ds({"conf": [0.5], "ok": [1], "pos": [0]})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.ray.calibration_stats: n_bootstrap > 0 needs position= (a column of each "
            "row's position in the stream"
        ),
    ):
        logcal.ray.calibration_stats(ds, "conf", "ok", n_bootstrap=10)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.ray.calibration_stats: position= places rows for the bootstrap; pass "
            "n_bootstrap > 0 or leave it out"
        ),
    ):
        logcal.ray.calibration_stats(ds, "conf", "ok", position="pos")
    with pytest.raises(TypeError, match=re.escape("confidence must be a column name (str), got 1")):
        logcal.ray.calibration_stats(ds, 1, "ok")
    with pytest.raises(
        TypeError, match=re.escape("position must be a column name (str) or None, got 0")
    ):
        logcal.ray.calibration_stats(ds, "conf", "ok", position=0, n_bootstrap=2)
    with pytest.raises(ValueError, match="n_bins"):
        logcal.ray.calibration_stats(ds, "conf", "ok", n_bins=0)


def test_the_state_step_is_fused_with_the_map_batches_before_it():
    """Only states leave the tasks: Ray runs the generating step and the state step as one
    operator, whose blocks are the states."""
    ds = ray.data.range(3, override_num_blocks=3).map_batches(_generated, batch_size=1)
    states = logcal.ray._block_states(
        ds, "conf", "ok", weights=None, position=None, n_bins=15, n_bootstrap=0
    )
    assert len(states.take_all()) == 3
    assert "MapBatches(_generated)->Project->MapBatches(_block_state)" in states.stats()


@given(
    st.lists(st.integers(0, 200), min_size=0, max_size=60, unique=True),
    st.lists(st.integers(0, 60), max_size=4),
    st.randoms(use_true_random=False),
)
def test_rows_at_any_positions_in_any_blocks_equal_one_row_at_a_time(positions, cuts, rnd):
    """Positions with gaps, in any order, cut into any blocks: the runs of each block give
    the state of every row added alone at its position (no Ray: the block step itself)."""
    rnd.shuffle(positions)
    n = len(positions)
    rng = np.random.default_rng(n)
    c, y, w = rng.uniform(size=n), rng.uniform(size=n) < 0.5, rng.uniform(0, 2, n)
    c[::3] = np.round(c[::3], 1)
    pos = np.array(positions, dtype=np.int64)
    settings = dict(n_bins=6, n_bootstrap=4, seed=1)
    one = logcal.CalibrationAccumulator(**settings)
    for i in range(n):
        one.update(c[i : i + 1], y[i : i + 1], weights=w[i : i + 1], offset=int(pos[i]))
    merged = logcal.CalibrationAccumulator(**settings)
    bounds = sorted({0, n, *(k for k in cuts if k < n)})
    for a, b in zip(bounds[:-1], bounds[1:]):
        block = logcal.CalibrationAccumulator(**settings)
        logcal.ray._update_at_positions(block, c[a:b], y[a:b], w[a:b], pos[a:b], "pos")
        merged.merge(block)
    assert merged.to_bytes() == one.to_bytes()


def test_token_stats_in_map_batches_then_calibration_stats():
    """The README's recipe: logits scored by token_stats in a map_batches step, the top-1
    confidence and correctness calibrated with the bootstrap by the rows' ids -- the bits of
    one accumulator fed token_stats of all the rows in one process."""
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((300, 50)) * 3).astype(np.float32)
    targets = rng.integers(0, 50, 300)
    ds = ray.data.from_items(
        [{"id": i, "logits": logits[i], "target": int(targets[i])} for i in range(300)],
        override_num_blocks=4,
    )

    def score(batch: dict) -> dict:
        s = logcal.token_stats(np.stack(batch["logits"]), batch["target"])
        correct = s.argmax == batch["target"]
        return {"id": batch["id"], "confidence": np.exp(s.max_logprob), "correct": correct}

    scored = ds.map_batches(score, batch_format="numpy")
    got = logcal.ray.calibration_stats(
        scored, "confidence", "correct", position="id", n_bootstrap=20, seed=3
    )
    s = logcal.token_stats(logits, targets)
    one = logcal.CalibrationAccumulator(n_bootstrap=20, seed=3)
    want = one.update(np.exp(s.max_logprob), s.argmax == targets).compute()
    assert got.to_bytes() == want.to_bytes()
