"""logcal.compat against scikit-learn and torchmetrics themselves: same numbers (1e-12 on
float64; torchmetrics bit for bit), same quirks, same errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcal.compat import sklearn as S
from logcal.reference import calibration as RC

try:  # a missing peer skips its tests, not the others
    import sklearn.calibration as sk_cal
    import sklearn.metrics as sk_metrics
except ImportError:  # pragma: no cover - scikit-learn is in the test extra
    sk_cal = sk_metrics = None
try:
    import torch
    import torchmetrics.functional.classification as tmf

    from logcal.compat import torchmetrics as T
except ImportError:  # pragma: no cover - torch and torchmetrics are in the test extra
    torch = tmf = T = None


@pytest.fixture(autouse=True)
def _peers(request):
    if "torchmetrics" in request.node.name:
        pytest.importorskip("torchmetrics")
    else:
        pytest.importorskip("sklearn")


TOL = {"rtol": 1e-12, "atol": 1e-15}


def _probs(seed: int, n: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    p[::4] = np.round(p[::4], 1)  # on the edges of tenths and fifths
    p[1::9] = 1.0
    p[2::11] = 0.0
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return p.astype(dtype), y


def _same_outcome(ours, theirs, *args, **kwargs):
    """Both return equal values (to 1e-12), or both raise the same exception and message."""
    try:
        expected = theirs(*args, **kwargs)
    except Exception as exc:
        with pytest.raises(type(exc), match="^" + re.escape(str(exc)) + "$"):
            ours(*args, **kwargs)
        return
    got = ours(*args, **kwargs)
    if isinstance(expected, tuple):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, **TOL)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


# --- scikit-learn -----------------------------------------------------------------------------


@given(
    st.integers(1, 2000),
    st.integers(1, 25),
    st.sampled_from(["uniform", "quantile"]),
    st.integers(0, 2**31),
    st.sampled_from(["int", "bool", "int32", "list"]),
)
def test_calibration_curve_matches_sklearn(n, n_bins, strategy, seed, label_kind):
    p, y = _probs(seed, n)
    y = {"int": y, "bool": y.astype(bool), "int32": y.astype(np.int32), "list": y.tolist()}[
        label_kind
    ]
    _same_outcome(
        S.calibration_curve, sk_cal.calibration_curve, y, p, n_bins=n_bins, strategy=strategy
    )


def test_calibration_curve_quirks():
    # right-closed bins: 0.1 shares the first bin with 0.05; empty bins are dropped
    p = np.array([0.05, 0.1, 0.3, 1.0])
    y = np.array([0, 1, 0, 1])
    t, m = S.calibration_curve(y, p, n_bins=10)
    assert t.tolist() == [0.5, 0.0, 1.0] and m[0] == pytest.approx(0.075)
    _same_outcome(S.calibration_curve, sk_cal.calibration_curve, y, p, n_bins=10)
    # float32 probabilities, column vectors
    p32, y32 = _probs(1, 500, np.float32)
    _same_outcome(S.calibration_curve, sk_cal.calibration_curve, y32, p32, n_bins=7)
    _same_outcome(S.calibration_curve, sk_cal.calibration_curve, y32[:, None], p32[:, None])


@pytest.mark.parametrize(
    "case",
    [
        {"y": ["a", "b", "a"], "p": [0.2, 0.9, 0.1], "pos_label": "b"},  # strings: the slow path
        {"y": [2, 5, 5], "p": [0.2, 0.9, 0.1], "pos_label": 5},
        {"y": [-1, 1, 1], "p": [0.2, 0.9, 0.1]},
        {"y": [0, 1, 1], "p": [0.2, np.nan, 0.1]},  # NaN passes, gives NaN
        {"y": [0, 1, 1], "p": [0.2, 1.3, 0.1]},  # errors are sklearn's
        {"y": [0, 1, 2], "p": [0.2, 0.3, 0.1]},
        {"y": [2, 5], "p": [0.2, 0.3]},
        {"y": [0, 1], "p": [0.2, 0.3, 0.4]},
        {"y": [0, 1], "p": [0.2, 0.3], "n_bins": 0},
        {"y": [0, 1], "p": [0.2, 0.3], "strategy": "log"},
    ],
)
def test_calibration_curve_edge_cases_are_sklearns(case):
    case = dict(case)
    y, p = case.pop("y"), np.asarray(case.pop("p"))
    try:
        expected = sk_cal.calibration_curve(y, p, **case)
    except Exception as exc:
        with pytest.raises(type(exc), match="^" + re.escape(str(exc)) + "$"):
            S.calibration_curve(y, p, **case)
        return
    got = S.calibration_curve(y, p, **case)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@given(
    st.integers(2, 2000),
    st.integers(0, 2**31),
    st.booleans(),
    st.sampled_from(["auto", True, False]),
)
def test_brier_and_log_loss_match_sklearn(n, seed, weighted, half):
    p, y = _probs(seed, n)
    w = np.random.default_rng(seed).uniform(0, 2, n) if weighted else None
    _same_outcome(
        S.brier_score_loss, sk_metrics.brier_score_loss, y, p, sample_weight=w, scale_by_half=half
    )
    for normalize in (True, False):
        _same_outcome(S.log_loss, sk_metrics.log_loss, y, p, sample_weight=w, normalize=normalize)


def test_brier_and_log_loss_other_inputs():
    p, y = _probs(3, 300)
    # float32: scikit-learn computes in float32 (its eps too), logcal sums exactly
    p32 = p.astype(np.float32)
    assert S.log_loss(y, p32) == pytest.approx(sk_metrics.log_loss(y, p32), rel=1e-6)
    assert S.brier_score_loss(y, p32) == pytest.approx(
        sk_metrics.brier_score_loss(y, p32), rel=1e-6
    )
    # the eps follows the dtype: certain and wrong
    assert S.log_loss([1, 0], np.array([0.0, 0.0])) == pytest.approx(
        sk_metrics.log_loss([1, 0], np.array([0.0, 0.0])), rel=1e-12
    )
    # multiclass, strings, one class, NaN, negative weights: scikit-learn's results and errors
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), 50)
    L = rng.integers(0, 4, 50)
    for args, kw in [
        ((L, P), {}),
        ((np.array(["a", "b", "b"]), [0.2, 0.7, 0.9]), {"pos_label": "b"}),
        (([1, 1, 1], [0.2, 0.7, 0.9]), {}),
        (([0, 1, 1], [0.2, np.nan, 0.9]), {}),
        (([0, 1, 1], [0.2, 0.7, 1.9]), {}),
        (([0, 1, 2], [0.2, 0.7, 0.9]), {}),
        (([0, 1, 1], [0.2, 0.7, 0.9]), {"sample_weight": [1.0, -1.0, 2.0]}),
    ]:
        _same_outcome(S.brier_score_loss, sk_metrics.brier_score_loss, *args, **kw)
        if "pos_label" not in kw:
            _same_outcome(S.log_loss, sk_metrics.log_loss, *args, **kw)


def test_reference_ports_match_sklearn():
    p, y = _probs(4, 1000)
    for strategy in ("uniform", "quantile"):
        for g, e in zip(
            RC.calibration_curve(y, p, n_bins=8, strategy=strategy),
            sk_cal.calibration_curve(y, p, n_bins=8, strategy=strategy),
        ):
            np.testing.assert_array_equal(g, e)
    assert RC.brier_score_loss(y, p) == pytest.approx(sk_metrics.brier_score_loss(y, p), rel=1e-14)
    assert RC.log_loss(y, p) == pytest.approx(sk_metrics.log_loss(y, p), rel=1e-14)
    P = np.random.default_rng(1).dirichlet(np.ones(3), 40)
    L = np.arange(40) % 3
    assert RC.log_loss(L, P) == pytest.approx(sk_metrics.log_loss(L, P), rel=1e-14)
    assert RC.brier_score_loss(L, P) == pytest.approx(sk_metrics.brier_score_loss(L, P), rel=1e-14)


# --- torchmetrics -----------------------------------------------------------------------------


def _tm_same(ours, theirs, *args, **kwargs):
    try:
        expected = theirs(*args, **kwargs)
    except Exception as exc:
        with pytest.raises(type(exc), match="^" + re.escape(str(exc)) + "$"):
            ours(*args, **kwargs)
        return
    got = ours(*args, **kwargs)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected) or (torch.isnan(got) and torch.isnan(expected))


@given(
    st.integers(1, 3000),
    st.integers(1, 25),
    st.sampled_from(["l1", "l2", "max"]),
    st.sampled_from(["float32", "float64"]),
    st.integers(0, 2**31),
    st.sampled_from([None, -100]),
)
def test_binary_calibration_error_is_torchmetrics_bit_for_bit(n, n_bins, norm, dtype, seed, ignore):
    p, y = _probs(seed, n)
    preds, target = torch.from_numpy(p).to(getattr(torch, dtype)), torch.from_numpy(y)
    if ignore is not None:
        target[::3] = ignore
    _tm_same(
        T.binary_calibration_error,
        tmf.binary_calibration_error,
        preds,
        target,
        n_bins,
        norm,
        ignore_index=ignore,
    )


@given(
    st.integers(1, 1000),
    st.integers(2, 8),
    st.integers(1, 20),
    st.sampled_from(["l1", "l2", "max"]),
    st.sampled_from(["float32", "float64"]),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_multiclass_calibration_error_is_torchmetrics_bit_for_bit(
    n, k, n_bins, norm, dtype, logits, seed
):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g, dtype=getattr(torch, dtype)) * 3
    preds = x if logits else torch.softmax(x, 1)
    target = torch.randint(0, k, (n,), generator=g)
    _tm_same(
        T.multiclass_calibration_error,
        tmf.multiclass_calibration_error,
        preds,
        target,
        k,
        n_bins,
        norm,
    )


def test_torchmetrics_quirks_and_slow_paths():
    # 1.0 sits in a bin of its own: torchmetrics issue #3510 (B8 of the peer report)
    preds, target = torch.tensor([0.95, 1.0], dtype=torch.float64), torch.tensor([1, 0])
    assert float(T.binary_calibration_error(preds, target, 10)) == pytest.approx(0.525)
    assert float(T.binary_calibration_error(preds, target, 10, "max")) == 1.0
    # l2 of a perfect model: torch.tensor(0), an int64 tensor
    z = T.binary_calibration_error(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 5, "l2")
    assert z.dtype == torch.int64 and int(z) == 0
    # logits (any value outside [0, 1]), NaN, float targets, 3-D inputs: the torch port
    rng = np.random.default_rng(0)
    cases = [
        torch.from_numpy(rng.normal(size=200)),
        torch.from_numpy(np.where(np.arange(200) == 7, np.nan, rng.uniform(size=200))),
    ]
    tgt = torch.from_numpy(rng.integers(0, 2, 200))
    for preds in cases:
        _tm_same(T.binary_calibration_error, tmf.binary_calibration_error, preds, tgt)
    _tm_same(
        T.binary_calibration_error,
        tmf.binary_calibration_error,
        cases[1].abs().nan_to_num(0.5),
        tgt.double(),
    )
    p3 = torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(1))
    t3 = (torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(2)) < p3).long()
    _tm_same(T.binary_calibration_error, tmf.binary_calibration_error, p3, t3)
    pm = torch.softmax(torch.randn(4, 3, 5), 1)
    tm = torch.randint(0, 3, (4, 5))
    _tm_same(T.multiclass_calibration_error, tmf.multiclass_calibration_error, pm, tm, 3)
    # validate_args=False with odd targets: same sums as torchmetrics
    _tm_same(
        T.binary_calibration_error, tmf.binary_calibration_error, p3, t3 * 2, validate_args=False
    )


_BINARY_BAD = [  # (preds, target, kwargs), built when the test runs
    lambda: (torch.rand(5), torch.tensor([0, 1, 2, 1, 0]), {}),
    lambda: (torch.rand(5), torch.tensor([0, 1, 1, 0]), {}),
    lambda: (torch.rand(5), torch.tensor([0, 1, 1, 0, 1]), {"n_bins": 0}),
    lambda: (torch.rand(5), torch.tensor([0, 1, 1, 0, 1]), {"norm": "l3"}),
    lambda: (torch.rand(5), torch.tensor([0, 1, 1, 0, 1]), {"ignore_index": 1.5}),
    lambda: (torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 1, 1, 0, 1]), {}),
    lambda: (torch.rand(5), torch.tensor([0, 1, 7, 0, 1]), {"ignore_index": -1}),
]
_MULTICLASS_BAD = [
    lambda: (torch.rand(5, 3), torch.tensor([0, 1, 2, 1, 0]), 1, {}),
    lambda: (torch.rand(5, 3), torch.tensor([0, 1, 2, 1, 0]), 4, {}),
    lambda: (torch.rand(5, 3), torch.tensor([0, 1, 2, 1]), 3, {}),
    lambda: (torch.rand(5, 3), torch.tensor([0, 1, 2, 3, 4]), 3, {}),
    lambda: (torch.rand(5, 3), torch.tensor([0, 1, 2, 1, 0]), 3, {"norm": "l3"}),
]


@pytest.mark.parametrize("make", _BINARY_BAD)
def test_binary_errors_are_torchmetrics(make):
    preds, target, kwargs = make()
    _tm_same(T.binary_calibration_error, tmf.binary_calibration_error, preds, target, **kwargs)


@pytest.mark.parametrize("make", _MULTICLASS_BAD)
def test_multiclass_errors_are_torchmetrics(make):
    preds, target, k, kwargs = make()
    _tm_same(
        T.multiclass_calibration_error, tmf.multiclass_calibration_error, preds, target, k, **kwargs
    )


def test_reference_ports_match_torchmetrics():
    p, y = _probs(5, 2000)
    for n_bins in (1, 10, 15):
        for norm in ("l1", "l2", "max"):
            ours = RC.binary_calibration_error(p, y, n_bins, norm)
            theirs = float(
                tmf.binary_calibration_error(torch.from_numpy(p), torch.from_numpy(y), n_bins, norm)
            )
            assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    P = torch.softmax(torch.randn(500, 4, dtype=torch.float64), 1)
    L = torch.randint(0, 4, (500,))
    ours = RC.multiclass_calibration_error(P.numpy(), L.numpy(), 4)
    assert ours == pytest.approx(float(tmf.multiclass_calibration_error(P, L, 4)), rel=1e-5)


def test_sklearn_compat_takes_weights_too_small_for_the_fixed_point_sums():
    """Weights below the fixed-point minimum go to scikit-learn itself, which accepts them."""
    import sklearn.metrics

    y, p, w = [1, 0], [0.2, 0.9], [1e-19, 1e-19]
    assert S.brier_score_loss(y, p, sample_weight=w) == pytest.approx(
        sklearn.metrics.brier_score_loss(y, p, sample_weight=w), rel=1e-12
    )
