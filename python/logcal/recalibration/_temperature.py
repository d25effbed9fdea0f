"""Temperature scaling: the NLL-optimal temperature of logits, from a few token passes.

With ``beta = 1 / T`` and ``z`` a row's logits, the mean negative log-likelihood
``NLL(beta) = mean_rows [lse(beta z) - beta z_t]`` is convex in ``beta``. One
:func:`logcal.token_stats` pass at temperature ``T`` (with ``varentropy=True``) gives, per row,
``nll = -target_logprob``, the entropy ``H`` and the varentropy ``Var_p[ln p]``. Since
``H = lse(beta z) - beta E_p[z]`` and ``ln p = beta z - lse(beta z)``, the first two derivatives
are exact from the same pass::

    dNLL/dbeta   = mean_rows (E_p[z] - z_t) = mean_rows (nll - H) / beta
    d2NLL/dbeta2 = mean_rows Var_p[z]       = mean_rows Var_p[ln p] / beta**2

So every pass gives the loss, its gradient and its curvature, and a safeguarded Newton-type
iteration in ``beta`` finds the optimum in a few passes.
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
    """The exact sums of one pass at one temperature: rows, sum nll, sum (nll - H) and the sum
    of the varentropy."""

    __slots__ = ("n", "nll", "nll_minus_entropy", "varentropy")

    def __init__(
        self, n: int = 0, nll: int = 0, nll_minus_entropy: int = 0, varentropy: int = 0
    ) -> None:
        self.n, self.nll, self.nll_minus_entropy = n, nll, nll_minus_entropy
        self.varentropy = varentropy

    def __add__(self, other: _PassSums) -> _PassSums:
        return _PassSums(
            self.n + other.n,
            self.nll + other.nll,
            self.nll_minus_entropy + other.nll_minus_entropy,
            self.varentropy + other.varentropy,
        )

    def as_list(self) -> list:
        return [self.n, self.nll, self.nll_minus_entropy, self.varentropy]

    def mean_nll(self) -> float:
        return self.nll / (self.n << _FRAC_BITS)

    def gradient(self, temperature: float) -> float:
        """``dNLL/dbeta`` at ``beta = 1 / temperature``: ``mean (nll - H) * T``."""
        return self.nll_minus_entropy / (self.n << _FRAC_BITS) * temperature

    def curvature(self, temperature: float) -> float:
        """``d2NLL/dbeta2`` at ``beta = 1 / temperature``: ``mean Var_p[ln p] * T**2``."""
        return self.varentropy / (self.n << _FRAC_BITS) * temperature * temperature


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


def _token_pass(
    logits: Any, targets: Any, temperature: float, ignore_index: int, keep: np.ndarray
) -> tuple[_PassSums, Any]:
    """One token pass at ``temperature``: the exact sums over the kept rows, and its stats."""
    s = token_stats(
        logits, targets, temperature=temperature, ignore_index=ignore_index, varentropy=True
    )
    nll = -_host_float64(s.target_logprob, "target_logprob")[keep]
    entropy = _host_float64(s.entropy, "entropy")[keep]
    varentropy = _host_float64(s.varentropy, "varentropy")[keep]
    bad = ~(np.abs(nll) < _MAX_ROW_VALUE) | ~(np.abs(entropy) < _MAX_ROW_VALUE)
    bad |= ~(varentropy < _MAX_ROW_VALUE)
    if bad.any():
        row = int(np.flatnonzero(keep.reshape(-1))[np.flatnonzero(bad)[0]])
        raise ValueError(
            f"logits row {row} has no finite NLL below 2**30 at temperature {temperature!r} "
            "(a NaN or +inf logit, a -inf target logit, or logits too far apart); mask it out"
        )
    sums = _PassSums(
        int(nll.size), _fixed_sum(nll), _fixed_sum(nll - entropy), _fixed_sum(varentropy)
    )
    return sums, s


def _gradient_limit(s: Any, temperature: float, keep: np.ndarray) -> float:
    """``lim dNLL/dbeta`` as ``beta -> inf``, ``mean (z_max - z_t)``, from the stats of any
    pass (``z_max - z_t = T (max_logprob - target_logprob)``).

    Refuses data whose NLL falls all the way to T -> 0: every target its row's argmax (read
    from the ranks, which do not depend on T).
    """
    if (to_host(view(s.target_rank, "target_rank"))[keep] == 0).all():
        raise ValueError(
            "every target is its row's most likely token: the NLL decreases towards T = 0 "
            "and has no minimum"
        )
    max_lp = _host_float64(s.max_logprob, "max_logprob")[keep]
    target_lp = _host_float64(s.target_logprob, "target_logprob")[keep]
    return float(np.mean(max_lp - target_lp)) * temperature


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
        Mean NLL of the fitting data at ``temperature`` (NaN when given directly). From
        :func:`fit_temperature`, the last pass's NLL plus the integral of the gradient over
        the last step (which has no pass of its own), from the last two passes' gradients and
        curvatures.
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


def _hermite_cubic(p0: tuple, p1: tuple) -> tuple:
    """``(g0, c1, c2, c3)``: the gradient on ``b0 + u (b1 - b0)`` as ``g0 + c1 u + c2 u^2 +
    c3 u^3``, the cubic that matches the gradient and curvature at the two (beta, gradient,
    curvature) points ``p0`` (u = 0) and ``p1`` (u = 1)."""
    (b0, g0, h0), (b1, g1, h1) = p0, p1
    d = b1 - b0
    return (
        g0,
        h0 * d,
        3.0 * (g1 - g0) - (2.0 * h0 + h1) * d,
        2.0 * (g0 - g1) + (h0 + h1) * d,
    )


def _hermite_root(p0: tuple, p1: tuple) -> float:
    """A root of the cubic that matches the gradient and its derivative (the curvature) at two
    (beta, gradient, curvature) points: the one between them when their gradients differ in
    sign, else the one nearest the Newton step from ``p1``; NaN when it has no real root."""
    (b0, g0, _), (b1, g1, h1) = p0, p1
    d = b1 - b0
    _, c1, c2, c3 = _hermite_cubic(p0, p1)
    roots = np.roots([c3, c2, c1, g0])
    real = roots.real[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots.real))]
    if real.size == 0:
        return math.nan
    if (g0 < 0) != (g1 < 0):
        inside = real[(real >= 0.0) & (real <= 1.0)]
        if inside.size:
            return b0 + float(inside[0]) * d
    newton = 1.0 - g1 / (h1 * d) if h1 > 0 else 1.0
    return b0 + float(real[np.argmin(np.abs(real - newton))]) * d


def _first_step(beta: float, g: float, h: float, g_limit: float) -> float:
    """The step from the first pass alone. Towards smaller T (g < 0) the gradient saturates at
    ``g_limit`` (it is concave there), so Newton falls short; the model
    ``g_limit - B exp(-k beta)`` fitted to this pass's gradient and curvature reaches further.
    Towards larger T, Newton."""
    if g < 0 < g_limit and h > 0:
        return beta + (g_limit - g) / h * math.log1p(-g / g_limit)
    return beta - g / h if h > 0 else math.nan


def _next_beta(points: list, lo: tuple | None, hi: tuple | None, g_limit: float) -> float:
    """The next beta from the (beta, gradient, curvature) points so far.

    From one point, :func:`_first_step`; then the root of the cubic through the last two while
    they are far apart (fourth order: each pass about quadruples the correct digits), Newton
    from the last once they are close (the cubic's coefficients would then carry mostly the
    rounding of the gradients). Inside a bracket (gradient < 0 at ``lo``, > 0 at ``hi``) the
    step must fall strictly inside, else Newton from the last point, else the secant of the
    bracket's ends, else the midpoint; before there is one, it goes downhill by at most a
    factor of 4.
    """
    b1, g1, h1 = points[-1]
    if len(points) == 1:
        step = _first_step(b1, g1, h1, g_limit)
    elif abs(b1 - points[-2][0]) > 1e-3 * b1:
        step = _hermite_root(points[-2], points[-1])
    else:
        step = b1 - g1 / h1 if h1 > 0 else math.nan
    if lo is not None and hi is not None:
        a, b = sorted((lo[0], hi[0]))
        newton = b1 - g1 / h1 if h1 > 0 else math.nan
        secant = lo[0] - lo[1] * (hi[0] - lo[0]) / (hi[1] - lo[1])
        for candidate in (step, newton, secant):
            if a < candidate < b:
                return candidate
        return 0.5 * (a + b)
    far = b1 * 4.0 if g1 < 0 else b1 / 4.0
    return step if min(b1, far) < step < max(b1, far) else far


def _quintic_root(points: list, near: float) -> float:
    """The real root nearest ``near`` of the quintic that matches the gradient and curvature at
    the last three (beta, gradient, curvature) points; NaN when there is none."""
    b_ref = points[-1][0]
    scale = max(abs(b - b_ref) for b, _, _ in points[-3:])
    rows, rhs = [], []
    for b, g, h in points[-3:]:
        x = (b - b_ref) / scale
        rows.append([x**k for k in range(6)])
        rows.append([k * x ** (k - 1) if k else 0.0 for k in range(6)])
        rhs += [g, h * scale]
    try:
        coefficients = np.linalg.solve(np.array(rows), np.array(rhs))
    except np.linalg.LinAlgError:
        return math.nan
    roots = np.roots(coefficients[::-1])
    real = roots.real[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots.real))]
    if real.size == 0:
        return math.nan
    return b_ref + scale * float(real[np.argmin(np.abs(real - (near - b_ref) / scale))])


def _predicted_error(points: list, beta_next: float) -> float:
    """An estimate of the error of ``beta_next``, the step from the last point: the smaller of
    the error a Newton step that long leaves, ``|d3| / (2 h) step**2`` (``h`` the curvature,
    ``d3`` the third derivative from the change of the curvature between the last two points;
    the cubic's step leaves less), and, from three points on, the distance to the root of the
    quintic through the last three (a higher-order estimate of the same root)."""
    (b0, _, h0), (b1, _, h1) = points[-2], points[-1]
    if not (h1 > 0 and b1 != b0):
        return math.inf
    step = beta_next - b1
    newton = abs((h1 - h0) / (b1 - b0)) / (2.0 * h1) * step * step
    if len(points) < 3:
        return newton
    quintic = abs(_quintic_root(points, beta_next) - beta_next)
    return min(newton, quintic) if quintic == quintic else newton


def _gradient_integral(points: list, beta: float) -> float:
    """The integral of the gradient from the last point to ``beta``: of the cubic through the
    last two points, or of the last point's tangent when there is one point."""
    b1, g1, h1 = points[-1]
    if len(points) == 1:
        s = beta - b1
        return s * (g1 + 0.5 * h1 * s)
    b0 = points[-2][0]
    g0, c1, c2, c3 = _hermite_cubic(points[-2], points[-1])

    def antiderivative(u: float) -> float:
        return u * (g0 + u * (c1 / 2.0 + u * (c2 / 3.0 + u * c3 / 4.0)))

    return (b1 - b0) * (antiderivative((beta - b0) / (b1 - b0)) - antiderivative(1.0))


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
    first and second derivatives in ``beta = 1 / T`` (see the module). The first step is
    Newton's (towards smaller T, one that allows for the gradient's saturation); each next one
    goes to the root of the cubic that matches the gradient and curvature of the last two
    passes, kept inside the bracket once the gradient has changed sign (else Newton, the
    secant, then bisection). It stops when the next step, which needs no pass of its own,
    moves ``beta`` by less than ``rtol`` relative, or leaves it within ``rtol`` of the optimum
    by an error estimate (Newton's, the third derivative from the last two curvatures, or the
    distance to the root of the quintic through the last three passes; trusted once the
    optimum is bracketed or the gradient falls a hundredfold in a pass). On LM-like
    logits that is 3 passes when the optimum lies between about half and ten times
    ``initial_temperature`` (within about 1e-8 of it, or of what the float32 outputs resolve
    at large T), one more per further factor of about 1.5 below (4 at 0.4, 6 at 0.2 times).
    The logits are never copied or modified.

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
    >>> bool(1.7 < ts.temperature < 2.3), ts.n, ts.n_passes
    (True, 2000, 3)
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

    def evaluate(beta: float) -> tuple[tuple, _PassSums, Any]:
        sums, s = _token_pass(logits, targets, 1.0 / beta, ignore_index, keep)
        return (beta, sums.gradient(1.0 / beta), sums.curvature(1.0 / beta)), sums, s

    beta = 1.0 / t0
    point, sums, stats = evaluate(beta)
    g_limit = _gradient_limit(stats, t0, keep)
    del stats
    points = [point]
    lo = hi = None  # the bracket's ends (beta, gradient): gradient < 0 at lo, > 0 at hi
    while points[-1][1] != 0.0:
        g = points[-1][1]
        if g < 0:
            lo = (beta, g)
        else:
            hi = (beta, g)
        beta_next = _next_beta(points, lo, hi, g_limit)
        step = abs(beta_next - beta)
        # The error estimate is trusted inside a bracket, or once the last pass cut the
        # gradient a hundredfold: there may be no minimum at all otherwise (the NLL can fall
        # all the way to T = 0 or T = inf, the gradient then levelling off).
        trusted = (lo is not None and hi is not None) or (
            len(points) > 1 and abs(points[-1][1]) <= 1e-2 * abs(points[-2][1])
        )
        if step <= rtol * beta or (trusted and _predicted_error(points, beta_next) <= rtol * beta):
            # Converged: the step needs no pass of its own; the NLL at its end is the last
            # pass's plus the integral of the gradient along the step (of the cubic through
            # the last two passes' gradients and curvatures; from one pass, its quadratic).
            nll = sums.mean_nll() + _gradient_integral(points, beta_next)
            beta = beta_next
            break
        if len(points) == max_passes:
            raise RuntimeError(
                f"fit_temperature did not converge in {max_passes} passes (T = {1 / beta!r}); "
                "the NLL may have no minimum (e.g. every target is its row's argmax)"
            )
        beta = beta_next
        point, sums, _ = evaluate(beta)
        points.append(point)
    else:
        nll = sums.mean_nll()  # the gradient vanished exactly at the last pass
    return TemperatureScaling(1.0 / beta, nll=nll, n=sums.n, n_passes=len(points))


DEFAULT_TEMPERATURES = tuple(2.0 ** (k / 2) for k in range(-4, 5))  # 0.25 .. 4, ratio sqrt 2


class TemperatureFit:
    """Temperature scaling from a stream: mergeable sums per candidate temperature.

    For each temperature ``T_k`` of a small grid it keeps four exact integers over the rows
    seen: the number of rows, ``sum nll``, ``sum (nll - H)`` and ``sum Var_p[ln p]`` (``nll``
    the row's negative target log-probability, ``H`` its entropy and ``Var_p[ln p]`` its
    varentropy at ``T_k``), the sums in fixed point with resolution 2**-64 per row, so updates
    in any chunking and merges in any order give the same bits, and the same bits as one
    update with all the data. Each :meth:`update` makes one token pass per grid temperature.
    :meth:`solve` takes the grid's two neighbours around the sign change of the derivative
    ``dNLL/dbeta = mean (nll - H) T`` and returns the root between them of the cubic that
    matches the derivative and the curvature ``d2NLL/dbeta2 = mean Var_p[ln p] T**2`` at both;
    for more accuracy, :meth:`refine` gives a fit over a narrower grid inside that bracket, for
    a second pass over the stream.

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
        new = [
            _token_pass(logits, targets, t, self.ignore_index, keep)[0] for t in self.temperatures
        ]
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

    def curvature(self) -> np.ndarray:
        """``d2NLL/dbeta2`` at each grid temperature."""
        self._check_rows()
        return np.array([s.curvature(t) for s, t in zip(self._sums, self.temperatures)])

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
        """The temperature at the root, inside the grid's bracket, of the cubic that matches the
        derivative and the curvature at the bracket's ends."""
        k, j = self._bracket()
        (tk, tj), (gk, gj) = (self.temperatures[k], self.temperatures[j]), self.gradient()[[k, j]]
        hk, hj = self.curvature()[[k, j]]
        bk, bj = 1.0 / tk, 1.0 / tj
        if gk == 0.0 or gj == 0.0:
            beta = bk if gk == 0.0 else bj
        else:
            beta = _hermite_root((bk, gk, hk), (bj, gj, hj))
            if not min(bk, bj) < beta < max(bk, bj):  # no root strictly inside: the secant
                beta = bk - gk * (bj - bk) / (gj - gk)
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
            "sums": [s.as_list() for s in self._sums],
        }

    @classmethod
    def from_dict(cls, d: dict) -> TemperatureFit:
        """Inverse of :meth:`to_dict`. A dict without the varentropy sums (three numbers per
        temperature, from a logcal before the curvature was kept) is refused: the curvature
        cannot be recovered from it."""
        if d.get("method") != "temperature_fit":
            raise ValueError(f"not a temperature fit: method = {d.get('method')!r}")
        out = cls(d["temperatures"], ignore_index=d["ignore_index"])
        if len(d["sums"]) != len(out.temperatures):
            raise ValueError("sums must have one entry per temperature")
        if any(len(entry) != 4 for entry in d["sums"]):
            raise ValueError(
                "sums must hold 4 integers per temperature (n, nll, nll - entropy, varentropy); "
                "a dict with 3 was saved before TemperatureFit kept the curvature: update a new "
                "fit with the data"
            )
        out._sums = [_PassSums(*(int(v) for v in entry)) for entry in d["sums"]]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TemperatureFit):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]
