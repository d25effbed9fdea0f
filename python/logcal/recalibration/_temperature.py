"""Temperature scaling: the NLL-optimal temperature of logits, from a few token passes.

With ``beta = 1 / T`` and ``z`` a row's logits, the mean negative log-likelihood
``NLL(beta) = mean_rows [lse(beta z) - beta z_t]`` is convex in ``beta``. One
:func:`logcal.token_stats` pass at temperature ``T`` gives, per row, ``nll = -target_logprob``
and the entropy ``H``; since ``H = lse(beta z) - beta E_p[z]``, the derivative is exact from the
same pass: ``dNLL/dbeta = mean_rows (E_p[z] - z_t) = mean_rows (nll - H) / beta``. So every pass
gives the loss and its gradient, and a safeguarded secant on the gradient finds the optimum.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._arrays import to_host, view
from .._token import _temperature, log_softmax, token_stats

__all__ = ["TemperatureFit", "TemperatureScaling", "fit_temperature"]

# Per-row values are summed as fixed-point integers in units of 2**-64 (each row truncated by
# less than one unit), so a sum does not depend on chunking or merge order: a streaming fit
# equals the one-shot fit bit for bit. The split below is exact for |value| < 2**30.
_FRAC_BITS = 64
_HIGH_BITS = 20  # floor(v * 2**20): an int64 below 2**50 for |v| < 2**30
_MAX_ROW_VALUE = 2.0**30
_CHUNK = 1 << 12  # int64 partial sums of 2**12 values below 2**50 stay below 2**62


def _fixed_sum(values: np.ndarray) -> int:
    """``sum floor(v * 2**64)`` over float64 ``values`` (|v| < 2**30), exactly, as an int."""
    scaled = np.ldexp(values, _HIGH_BITS)
    high = np.floor(scaled)
    low = np.floor(np.ldexp(scaled - high, _FRAC_BITS - _HIGH_BITS))  # scaled - high is exact
    total = 0
    for start in range(0, values.size, _CHUNK):
        h = int(high[start : start + _CHUNK].astype(np.int64).sum())
        lo = int(low[start : start + _CHUNK].astype(np.int64).sum())
        total += (h << (_FRAC_BITS - _HIGH_BITS)) + lo
    return total


def _host_float64(a: Any, name: str) -> np.ndarray:
    return to_host(view(a, name)).astype(np.float64)


class _PassSums:
    """The exact sums of one pass at one temperature: rows, sum nll, sum (nll - H)."""

    __slots__ = ("n", "nll", "nll_minus_entropy")

    def __init__(self, n: int = 0, nll: int = 0, nll_minus_entropy: int = 0) -> None:
        self.n, self.nll, self.nll_minus_entropy = n, nll, nll_minus_entropy

    def __add__(self, other: _PassSums) -> _PassSums:
        return _PassSums(
            self.n + other.n,
            self.nll + other.nll,
            self.nll_minus_entropy + other.nll_minus_entropy,
        )

    def mean_nll(self) -> float:
        return self.nll / (self.n << _FRAC_BITS)

    def gradient(self, temperature: float) -> float:
        """``dNLL/dbeta`` at ``beta = 1 / temperature``: ``mean (nll - H) * T``."""
        return self.nll_minus_entropy / (self.n << _FRAC_BITS) * temperature


def _row_mask(targets: Any, lead: tuple, ignore_index: int, mask: Any) -> np.ndarray:
    keep = to_host(view(targets, "targets")) != ignore_index
    if mask is not None:
        m = to_host(view(mask, "mask"))
        if m.dtype != np.bool_:
            raise TypeError(f"mask must be an array of booleans, got dtype {m.dtype}")
        if m.shape != lead:
            raise ValueError(
                f"mask must have the leading shape of logits {lead}, got shape {m.shape}"
            )
        keep &= m
    return keep


def _pass_sums(
    logits: Any, targets: Any, temperature: float, ignore_index: int, keep: np.ndarray
) -> _PassSums:
    """One token pass at ``temperature``: the exact sums over the kept rows."""
    s = token_stats(logits, targets, temperature=temperature, ignore_index=ignore_index)
    nll = -_host_float64(s.target_logprob, "target_logprob")[keep]
    entropy = _host_float64(s.entropy, "entropy")[keep]
    bad = ~(np.abs(nll) < _MAX_ROW_VALUE) | ~(np.abs(entropy) < _MAX_ROW_VALUE)
    if bad.any():
        row = int(np.flatnonzero(keep.reshape(-1))[np.flatnonzero(bad)[0]])
        raise ValueError(
            f"logits row {row} has no finite NLL below 2**30 at temperature {temperature!r} "
            "(a NaN or +inf logit, a -inf target logit, or logits too far apart); mask it out"
        )
    return _PassSums(int(nll.size), _fixed_sum(nll), _fixed_sum(nll - entropy))


def _check_has_minimum(logits: Any, targets: Any, ignore_index: int, keep: np.ndarray) -> None:
    """Refuses data whose NLL falls all the way to T -> 0: every target its row's argmax."""
    s = token_stats(logits, targets, ignore_index=ignore_index)
    if (to_host(view(s.target_rank, "target_rank"))[keep] == 0).all():
        raise ValueError(
            "every target is its row's most likely token: the NLL decreases towards T = 0 "
            "and has no minimum"
        )


def _check_temperatures(temperatures: Any) -> tuple:
    ts = tuple(_temperature(t) for t in temperatures)
    if not ts:
        raise ValueError("temperatures must not be empty")
    if len(set(ts)) != len(ts):
        raise ValueError(f"temperatures must be distinct, got {ts}")
    return tuple(sorted(ts))


class TemperatureScaling:
    """A fitted temperature: ``softmax(logits / temperature)`` are the calibrated probabilities.

    Made by :func:`fit_temperature` or :meth:`TemperatureFit.solve`, or given directly.

    Attributes
    ----------
    temperature : float
        The temperature (finite, > 0).
    nll : float
        Mean NLL of the fitting data at ``temperature`` (NaN when given directly).
    n : int
        Rows the fit used (0 when given directly).
    n_passes : int
        Token passes over the fitting data (0 when given directly).

    Examples
    --------
    >>> import numpy as np, logcal
    >>> ts = logcal.recalibration.TemperatureScaling(2.0)
    >>> np.round(ts.apply(np.array([[2.0, 0.0]])), 4)
    array([[-0.3133, -1.3133]])
    """

    __slots__ = ("n", "n_passes", "nll", "temperature")

    def __init__(
        self, temperature: float, *, nll: float = math.nan, n: int = 0, n_passes: int = 0
    ) -> None:
        self.temperature = _temperature(temperature)
        self.nll, self.n, self.n_passes = float(nll), int(n), int(n_passes)

    def apply(self, logits: Any, **kwargs: Any) -> Any:
        """Calibrated log-probabilities ``log_softmax(logits / temperature)``; keyword arguments
        go to :func:`logcal.log_softmax`."""
        return log_softmax(logits, temperature=self.temperature, **kwargs)

    def token_stats(self, logits: Any, targets: Any = None, **kwargs: Any) -> Any:
        """:func:`logcal.token_stats` at the fitted temperature."""
        return token_stats(logits, targets, temperature=self.temperature, **kwargs)

    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` restores it."""
        return {
            "method": "temperature",
            "temperature": self.temperature,
            "nll": self.nll,
            "n": self.n,
            "n_passes": self.n_passes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TemperatureScaling:
        """Inverse of :meth:`to_dict`."""
        if d.get("method") != "temperature":
            raise ValueError(f"not a temperature scaling: method = {d.get('method')!r}")
        return cls(d["temperature"], nll=d["nll"], n=d["n"], n_passes=d["n_passes"])

    def __repr__(self) -> str:
        return f"TemperatureScaling(temperature={self.temperature!r}, nll={self.nll:.6g})"


def _cubic_minimum(p0: tuple, p1: tuple) -> float:
    """The minimiser of the cubic through two (beta, NLL, gradient) points (Nocedal & Wright,
    eq. 3.59), NaN when the cubic has none."""
    (a0, f0, g0), (a1, f1, g1) = p0, p1
    d1 = g0 + g1 - 3.0 * (f0 - f1) / (a0 - a1)
    disc = d1 * d1 - g0 * g1
    if disc < 0:
        return math.nan
    d2 = math.copysign(math.sqrt(disc), a1 - a0)
    den = g1 - g0 + 2.0 * d2
    return a1 - (a1 - a0) * (g1 + d2 - d1) / den if den != 0 else math.nan


def _next_beta(points: list, lo: tuple | None, hi: tuple | None) -> float:
    """The next beta from the last two (beta, NLL, gradient) points.

    The cubic through them while they are far apart; once they are close (the NLL difference
    then carries mostly rounding) the secant of the gradient. Inside a bracket (gradient < 0
    at ``lo``, > 0 at ``hi``) the step must fall strictly inside, else the midpoint is taken;
    before there is one, it goes downhill by at most a factor of 4.
    """
    (b0, _, g0), (b1, _, g1) = points[-2], points[-1]
    if abs(b1 - b0) > 1e-3 * b1:
        step = _cubic_minimum(points[-2], points[-1])
    else:
        step = b1 - g1 * (b1 - b0) / (g1 - g0) if g1 != g0 else math.nan
    if lo is not None and hi is not None:
        a, b = sorted((lo[0], hi[0]))
        return step if a < step < b else 0.5 * (a + b)
    far = b1 * 4.0 if g1 < 0 else b1 / 4.0
    return step if min(b1, far) < step < max(b1, far) else far


def fit_temperature(
    logits: Any,
    targets: Any,
    *,
    mask: Any = None,
    ignore_index: int = -100,
    rtol: float = 1e-6,
    max_passes: int = 40,
    initial_temperature: float = 1.0,
) -> TemperatureScaling:
    """The temperature that minimises the mean NLL of ``targets`` under
    ``softmax(logits / T)``.

    Each iteration is one :func:`logcal.token_stats` pass, which gives the NLL and its exact
    derivative in ``beta = 1 / T`` (see the module); a secant on the derivative, kept inside
    the bracket once the derivative has changed sign, stops when a step moves ``beta`` by less
    than ``rtol`` relative. The logits are never copied or modified.

    Parameters
    ----------
    logits : array of shape ``[..., V]``
        As for :func:`logcal.token_stats` (numpy, torch, cupy; CUDA arrays on their GPU).
    targets : integer array of shape ``[...]``
        The observed token of each row.
    mask : boolean array of shape ``[...]``, optional
        Rows to use (``True``); rows whose target is ``ignore_index`` are skipped too.
    ignore_index : int
        Target value that marks a row to skip.
    rtol : float
        Relative tolerance on ``beta`` (and so on ``T``).
    max_passes : int
        Largest number of token passes; reaching it raises RuntimeError.
    initial_temperature : float
        Where the search starts.

    Returns
    -------
    TemperatureScaling

    Examples
    --------
    >>> import numpy as np, logcal
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(2000, 5)).astype(np.float32)
    >>> p = np.exp(z / 2.0); p /= p.sum(1, keepdims=True)  # the truth: T = 2
    >>> y = (rng.uniform(size=(2000, 1)) > p.cumsum(1)).sum(1)
    >>> ts = logcal.recalibration.fit_temperature(z, y)
    >>> bool(1.7 < ts.temperature < 2.3), ts.n
    (True, 2000)
    """
    if not (isinstance(rtol, float) and 0.0 < rtol < 1.0):
        raise ValueError(f"rtol must be a float in (0, 1), got {rtol!r}")
    if not (isinstance(max_passes, int) and max_passes >= 2):
        raise ValueError(f"max_passes must be an int >= 2, got {max_passes!r}")
    t0 = _temperature(initial_temperature)
    lead = tuple(view(logits, "logits").shape[:-1])
    keep = _row_mask(targets, lead, ignore_index, mask)
    if not keep.any():
        raise ValueError("no rows to fit: every row is masked out or has an ignored target")

    def evaluate(beta: float) -> tuple[float, _PassSums]:
        sums = _pass_sums(logits, targets, 1.0 / beta, ignore_index, keep)
        return sums.gradient(1.0 / beta), sums

    _check_has_minimum(logits, targets, ignore_index, keep)
    beta = 1.0 / t0
    g, sums = evaluate(beta)
    points = [(beta, sums.mean_nll(), g)]
    lo = hi = None  # the bracket's ends: gradient < 0 at lo, > 0 at hi
    while g != 0.0:
        if g < 0:
            lo = (beta, g)
        else:
            hi = (beta, g)
        # The first step doubles or halves beta, towards lower NLL.
        beta_next = (beta * 2.0 if g < 0 else beta / 2.0) if len(points) == 1 else None
        beta_next = beta_next or _next_beta(points, lo, hi)
        if abs(beta_next - beta) <= rtol * beta:
            # Converged: the step is below the tolerance, so it needs no pass of its own (the
            # NLL reported is that of the last pass, within rtol of beta_next).
            beta = beta_next
            break
        if len(points) == max_passes:
            raise RuntimeError(
                f"fit_temperature did not converge in {max_passes} passes (T = {1 / beta!r}); "
                "the NLL may have no minimum (e.g. every target is its row's argmax)"
            )
        beta = beta_next
        g, sums = evaluate(beta)
        points.append((beta, sums.mean_nll(), g))
    return TemperatureScaling(1.0 / beta, nll=sums.mean_nll(), n=sums.n, n_passes=len(points))


DEFAULT_TEMPERATURES = tuple(2.0 ** (k / 2) for k in range(-4, 5))  # 0.25 .. 4, ratio sqrt 2


class TemperatureFit:
    """Temperature scaling from a stream: mergeable sums per candidate temperature.

    For each temperature ``T_k`` of a small grid it keeps three exact integers over the rows
    seen: the number of rows, ``sum nll`` and ``sum (nll - H)`` (``nll`` the row's negative
    target log-probability and ``H`` its entropy at ``T_k``), both in fixed point with
    resolution 2**-64 per row, so updates in any chunking and merges in any order give the same
    bits, and the same bits as one update with all the data. Each :meth:`update` makes one
    token pass per grid temperature. :meth:`solve` takes the grid's two neighbours around the
    sign change of the derivative ``dNLL/dbeta = mean (nll - H) T`` and returns the secant root
    between them; for more accuracy, :meth:`refine` gives a fit over a narrower grid inside
    that bracket, for a second pass over the stream.

    Parameters
    ----------
    temperatures : sequence of float
        The grid (distinct, finite, > 0). Default: 0.25 to 4 in ratios of sqrt(2).
    ignore_index : int
        Target value that marks a row to skip.

    Examples
    --------
    >>> import numpy as np, logcal
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(2000, 5)).astype(np.float32)
    >>> p = np.exp(z / 2.0); p /= p.sum(1, keepdims=True)
    >>> y = (rng.uniform(size=(2000, 1)) > p.cumsum(1)).sum(1)
    >>> a, b = logcal.recalibration.TemperatureFit(), logcal.recalibration.TemperatureFit()
    >>> a.update(z[:1000], y[:1000]); b.update(z[1000:], y[1000:])
    >>> fit = a.merge(b)
    >>> second = fit.refine()
    >>> second.update(z, y)
    >>> round(second.solve().temperature, 3) == round(
    ...     logcal.recalibration.fit_temperature(z, y).temperature, 3)
    True
    """

    __slots__ = ("_sums", "ignore_index", "temperatures")

    def __init__(self, temperatures: Any = DEFAULT_TEMPERATURES, *, ignore_index: int = -100):
        self.temperatures = _check_temperatures(temperatures)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        self.ignore_index = int(ignore_index)
        self._sums = [_PassSums() for _ in self.temperatures]

    @property
    def n(self) -> int:
        """Rows accumulated."""
        return self._sums[0].n

    def update(self, logits: Any, targets: Any, *, mask: Any = None) -> None:
        """Adds a chunk of rows (one token pass per grid temperature)."""
        lead = tuple(view(logits, "logits").shape[:-1])
        keep = _row_mask(targets, lead, self.ignore_index, mask)
        new = [_pass_sums(logits, targets, t, self.ignore_index, keep) for t in self.temperatures]
        self._sums = [a + b for a, b in zip(self._sums, new)]

    def merge(self, other: TemperatureFit) -> TemperatureFit:
        """The fit of both streams (exact, associative and commutative)."""
        if not isinstance(other, TemperatureFit):
            raise TypeError(f"can only merge TemperatureFit, got {type(other).__name__}")
        if (other.temperatures, other.ignore_index) != (self.temperatures, self.ignore_index):
            raise ValueError("can only merge fits with the same temperatures and ignore_index")
        out = TemperatureFit(self.temperatures, ignore_index=self.ignore_index)
        out._sums = [a + b for a, b in zip(self._sums, other._sums)]
        return out

    __add__ = merge

    def mean_nll(self) -> np.ndarray:
        """Mean NLL at each grid temperature."""
        self._check_rows()
        return np.array([s.mean_nll() for s in self._sums])

    def gradient(self) -> np.ndarray:
        """``dNLL/dbeta`` at each grid temperature."""
        self._check_rows()
        return np.array([s.gradient(t) for s, t in zip(self._sums, self.temperatures)])

    def _check_rows(self) -> None:
        if self.n == 0:
            raise ValueError("no rows accumulated: call update first")

    def _bracket(self) -> tuple[int, int]:
        """Grid indices (high T, low T) around the optimum: gradient > 0 then < 0 in beta."""
        g = self.gradient()  # temperatures ascend, so beta descends along g
        for k in range(len(g) - 1):
            if g[k] >= 0 >= g[k + 1]:
                return k, k + 1
        raise ValueError(
            f"the NLL-optimal temperature is outside the grid [{self.temperatures[0]!r}, "
            f"{self.temperatures[-1]!r}]: widen temperatures"
        )

    def solve(self) -> TemperatureScaling:
        """The temperature at the secant root of the derivative inside the grid's bracket."""
        k, j = self._bracket()
        (tk, tj), (gk, gj) = (self.temperatures[k], self.temperatures[j]), self.gradient()[[k, j]]
        bk, bj = 1.0 / tk, 1.0 / tj
        beta = bk if gk == gj else bk - gk * (bj - bk) / (gj - gk)
        nearest = k if abs(gk) <= abs(gj) else j
        return TemperatureScaling(
            1.0 / beta,
            nll=self._sums[nearest].mean_nll(),
            n=self.n,
            n_passes=len(self.temperatures),
        )

    def refine(self) -> TemperatureFit:
        """An empty fit over a finer grid inside the current bracket, for one more pass: the
        bracket's ends, the secant estimate, and the estimate moved by 1/64 of the bracket's
        width either way."""
        k, j = self._bracket()
        lo, hi = self.temperatures[k], self.temperatures[j]
        t = self.solve().temperature
        step = (hi - lo) / 64.0
        grid = {lo, hi, t, min(max(t - step, lo), hi), min(max(t + step, lo), hi)}
        return TemperatureFit(sorted(grid), ignore_index=self.ignore_index)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the exact sums; :meth:`from_dict` restores it."""
        return {
            "method": "temperature_fit",
            "temperatures": list(self.temperatures),
            "ignore_index": self.ignore_index,
            "sums": [[s.n, s.nll, s.nll_minus_entropy] for s in self._sums],
        }

    @classmethod
    def from_dict(cls, d: dict) -> TemperatureFit:
        """Inverse of :meth:`to_dict`."""
        if d.get("method") != "temperature_fit":
            raise ValueError(f"not a temperature fit: method = {d.get('method')!r}")
        out = cls(d["temperatures"], ignore_index=d["ignore_index"])
        if len(d["sums"]) != len(out.temperatures):
            raise ValueError("sums must have one entry per temperature")
        out._sums = [_PassSums(int(n), int(a), int(b)) for n, a, b in d["sums"]]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TemperatureFit):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]
