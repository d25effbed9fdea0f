"""Recalibration: fit_temperature against scipy's minimize_scalar driving token_stats and torch
LBFGS over all logits (the common recipe); Platt and isotonic against scikit-learn.

    PYTHONPATH=python python3 benchmarks/bench_recalibration.py --rows 4096 --vocab 32000 \
        --true-t 1.3 0.5 3

Synthetic LM-like logits (scaled normal) with targets drawn at each --true-t (1.3 by default);
every method fits the same data; T of each is compared with scipy's. torch's LBFGS runs on the
first --true-t only (it takes minutes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import logcal
from logcal.recalibration import IsotonicCalibration, PlattScaling, fit_temperature


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def lm_logits(rows, vocab, true_t=1.3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, vocab), dtype=np.float32)
    z *= 2.5  # in place: no second copy, so the peak memory below is the fit's
    targets = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, 256):  # draw the targets at true_t, a chunk at a time
        p = np.exp(z[start : start + 256] / true_t)
        p /= p.sum(1, keepdims=True)
        u = rng.uniform(size=(p.shape[0], 1))
        targets[start : start + 256] = np.minimum((u > p.cumsum(1)).sum(1), vocab - 1)
    return z, targets


def scipy_temperature(z, y):
    from scipy.optimize import minimize_scalar

    calls = [0]

    def nll(t):
        calls[0] += 1
        return -float(
            np.mean(logcal.token_stats(z, y, temperature=t).target_logprob, dtype=np.float64)
        )

    r = minimize_scalar(nll, bounds=(0.05, 10.0), method="bounded", options={"xatol": 1e-6})
    return r.x, calls[0]


def torch_lbfgs_temperature(z, y):
    import torch

    logits, targets = torch.from_numpy(z), torch.from_numpy(y)
    t = torch.ones(1, requires_grad=True)
    opt = torch.optim.LBFGS([t], lr=0.01, max_iter=50)  # gpleiss' temperature_scaling

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / t, targets)
        loss.backward()
        return loss

    opt.step(closure)
    return float(t.item())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--confidences", type=int, default=10**6)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-temperature", action="store_true")
    ap.add_argument("--skip-confidences", action="store_true")
    ap.add_argument("--true-t", type=float, nargs="+", default=[1.3])
    a = ap.parse_args()
    if not a.skip_temperature:
        for i, true_t in enumerate(a.true_t):
            bench_temperature(a, true_t, torch=not a.skip_torch and i == 0)
    if not a.skip_confidences:
        bench_confidences(a.confidences)


def bench_temperature(a, true_t, torch):
    z, y = lm_logits(a.rows, a.vocab, true_t)
    print(f"logits [{a.rows}, {a.vocab}] float32, {z.nbytes / 1e6:.0f} MB, targets at T = {true_t}")
    before = peak_rss_mb()
    ts, t_ours = timed(lambda: fit_temperature(z, y))
    grown = peak_rss_mb() - before
    print(f"peak memory: {before:.0f} MB with the logits, {grown:+.0f} MB by fit_temperature")
    (t_scipy, calls), t_sp = timed(lambda: scipy_temperature(z, y))
    print(f"fit_temperature: T = {ts.temperature:.7f}, {ts.n_passes} passes, {t_ours:.2f} s")
    print(f"scipy bounded:   T = {t_scipy:.7f}, {calls} passes, {t_sp:.2f} s")
    rel = abs(ts.temperature / t_scipy - 1)
    print(f"  relative difference {rel:.2e}; speed-up {t_sp / t_ours:.1f}x")
    # scipy's search reads float32 NLLs, whose rounding can move its optimum by more than the
    # fit's error where the NLL is flat; the float64 logits show where the optimum is.
    del z
    z64, _ = lm_logits(a.rows, a.vocab, true_t)
    z64 = z64.astype(np.float64)
    ts64 = fit_temperature(z64, y)
    t_scipy64, _ = scipy_temperature(z64, y)
    print(
        f"  float64 logits: fit_temperature T = {ts64.temperature:.7f} ({ts64.n_passes} passes), "
        f"scipy T = {t_scipy64:.7f}; float32 fit against float64 scipy: "
        f"{abs(ts.temperature / t_scipy64 - 1):.2e}"
    )
    del z64
    if torch:
        z, _ = lm_logits(a.rows, a.vocab, true_t)
        t_torch, t_tl = timed(lambda: torch_lbfgs_temperature(z, y))
        print(f"torch LBFGS:     T = {t_torch:.7f}, {t_tl:.2f} s; speed-up {t_tl / t_ours:.1f}x")


def bench_confidences(n):
    rng = np.random.default_rng(1)
    c = rng.beta(5, 2, n).astype(np.float32).astype(np.float64)
    yc = (rng.uniform(size=n) < c**1.5).astype(np.int64)
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    p, tp = timed(lambda: PlattScaling().fit(c, yc))
    x = (np.log(c) - np.log1p(-c))[:, None]
    lr, tlr = timed(lambda: LogisticRegression(C=1e12, tol=1e-10, max_iter=1000).fit(x, yc))
    print(
        f"Platt, {n} confidences: {tp:.2f} s, scikit-learn {tlr:.2f} s ({tlr / tp:.1f}x); "
        f"|da| = {abs(p.coef_ - lr.coef_[0, 0]):.1e}, "
        f"|db| = {abs(p.intercept_ - lr.intercept_[0]):.1e}"
    )
    iso, ti = timed(lambda: IsotonicCalibration().fit(c, yc))
    ir, tir = timed(lambda: IsotonicRegression(out_of_bounds="clip").fit(c, yc))
    diff = np.abs(iso.transform(c) - ir.predict(c)).max()
    print(
        f"isotonic: {ti:.2f} s, scikit-learn {tir:.2f} s ({tir / ti:.1f}x); max |diff| {diff:.1e}"
    )


if __name__ == "__main__":
    main()
