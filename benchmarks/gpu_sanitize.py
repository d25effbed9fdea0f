"""Small GPU calls that reach every kernel path, for compute-sanitizer (memcheck, racecheck):

    compute-sanitizer --tool memcheck python3 benchmarks/gpu_sanitize.py

Each shape is chosen for the path it reaches: one long row (the row split and its ordered
merge), k = 100 (the passes for k > 64, with temperature), offset and strided rows (the
unaligned heads of the vector loops), a 65,536-token sequence (the long-sequence kernel), 100
bins and the accumulator's equal-mass grid (explicit edges), bad targets (the device check).
Prints one line per call; exits non-zero if a result disagrees with the CPU.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import logcal

failures = []


def same(name: str, got, want, tol: float = 1e-5) -> None:
    g = got.float().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    ok = np.allclose(g, np.asarray(want, dtype=np.float64), rtol=tol, atol=tol, equal_nan=True)
    print(f"{'ok  ' if ok else 'FAIL'} {name}", flush=True)
    if not ok:
        failures.append(name)


def main() -> int:
    gen = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen) * 3

    x = randn(1, 20000)  # one row: split over blocks, merged in order
    t = torch.tensor([7], device="cuda")
    s = logcal.token_stats(x, t, top_k=5)
    c = logcal.token_stats(x.cpu(), t.cpu(), top_k=5)
    same("1x20000 split row", s.entropy, c.entropy)
    same("1x20000 target rank", s.target_rank, c.target_rank, 0)

    x = randn(3, 5000)
    s = logcal.token_stats(x, top_k=100, temperature=0.7)  # k > 64: further passes
    c = logcal.token_stats(x.cpu(), top_k=100, temperature=0.7)
    same("3x5000 k=100 T=0.7 ids", s.topk_ids, c.topk_ids, 0)
    same("3x5000 k=100 T=0.7 logprobs", s.topk_logprobs, c.topk_logprobs)

    base = randn(4, 1031)
    offset = base[:, 3:1027]  # rows start 3 elements past an aligned address
    strided = randn(4, 2060)[:, ::2]
    for name, v in (("offset rows", offset), ("strided rows", strided)):
        same(
            f"{name} token_stats",
            logcal.token_stats(v).logsumexp,
            logcal.token_stats(v.cpu()).logsumexp,
        )
        out = torch.empty(v.shape, device="cuda").t().contiguous().t()  # strided out=
        logcal.log_softmax(v, out=out)
        same(f"{name} log_softmax strided out", out, logcal.log_softmax(v.cpu()))

    lp = -torch.rand(65536, device="cuda", generator=gen)
    off = torch.tensor([0, 65536], device="cuda")
    same(
        "65536-token sequence",
        logcal.sequence_stats(lp, off).sum,
        logcal.sequence_stats(lp.cpu(), off.cpu()).sum,
    )

    conf = torch.rand(1 << 16, device="cuda", generator=gen) ** 0.3  # skewed towards 1
    corr = torch.rand(1 << 16, device="cuda", generator=gen) < conf
    same(
        "100 bins",
        logcal.calibration_stats(conf, corr, n_bins=100).count,
        logcal.calibration_stats(conf.cpu(), corr.cpu(), n_bins=100).count,
        0,
    )
    acc = logcal.CalibrationAccumulator(binning="quantile").update(conf, corr)
    ref = logcal.CalibrationAccumulator(binning="quantile").update(conf.cpu(), corr.cpu())
    same("equal-mass grid", acc.compute().ece(), ref.compute().ece(), 0)

    try:
        logcal.token_stats(randn(2, 10), torch.tensor([1, 10], device="cuda"))
        failures.append("bad target not refused")
    except ValueError as exc:
        print("ok   bad target refused:", exc)
    torch.cuda.synchronize()
    print("failures:", failures or "none")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
