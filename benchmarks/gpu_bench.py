"""The GPU benchmark: check logcal's CUDA results against its CPU core, then time logcal and,
in the same run, the peers of design/PERFORMANCE.md and a device-to-device copy (the ceiling).

    python3 benchmarks/gpu_bench.py [--small] [--no-compile]

Builds nothing (install logcal first). Prints PASS/FAIL per check, then one table: job,
provider, median ms (CUDA events, after warm-up), GB/s of the fewest bytes the job must move,
% of the copy's bandwidth measured in this run, and each peer's time over logcal's. Writes the
numbers after every job to $RESULTS and $OUT/gpu_bench.json where set. About 3 minutes on an
H200 (torch.compile of the composite takes most of it).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

import logcal
from logcal import _native
from logcal._arrays import view

SMALL = "--small" in sys.argv
N, V, K = (256, 32000, 20) if SMALL else (8192, 128256, 20)
M = 1 << (20 if SMALL else 28)  # calibration pairs
SEQS = 1 << (12 if SMALL else 20)  # ragged sequences of M tokens in all
REPS = 10
rows: list[dict] = []
checks: list[tuple[str, bool, str]] = []


def sync() -> None:
    torch.cuda.synchronize()


def bench(fn, reps: int = REPS, warm: int = 3) -> float:
    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def record(job: str, provider: str, ms: float, nbytes: float, note: str = "") -> None:
    rows.append(
        {"job": job, "provider": provider, "ms": ms, "GB_s": nbytes / ms / 1e6, "note": note}
    )
    print(
        f"  {job:34s} {provider:34s} {ms:9.3f} ms  {nbytes / ms / 1e6:8.1f} GB/s {note}", flush=True
    )
    save()  # after every job: a run cut short still leaves what it measured


def save() -> None:
    """The results so far, as JSON: to $RESULTS and $OUT/gpu_bench.json where set. Per job:
    each provider's ms, GB/s and % of this run's device-to-device copy bandwidth."""
    copy = next((r["GB_s"] for r in rows if r["job"].startswith("copy")), None)
    jobs: dict = {}
    for r in rows:
        entry = {k: r[k] for k in ("ms", "GB_s", "note")}
        if copy:
            entry["pct_of_copy"] = 100 * r["GB_s"] / copy
        jobs.setdefault(r["job"], {})[r["provider"]] = entry
    doc = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "shapes": {"N": N, "V": V, "K": K, "M": M, "SEQS": SEQS},
        "copy_GB_s": copy,
        "jobs": jobs,
        "checks": checks,
    }
    paths = [os.environ.get("RESULTS")]
    if os.environ.get("OUT"):
        paths.append(os.path.join(os.environ["OUT"], "gpu_bench.json"))
    for path in filter(None, paths):
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)


def check(name: str, ok: bool, detail: str = "") -> None:
    checks.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name} {detail}", flush=True)
    save()


def close(a, b, tol) -> bool:
    a = a.float().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.float().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    return a.shape == b.shape and np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


def exact(a, b) -> bool:
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


# ---------------------------------------------------------------------------------------------
# 1. correctness against the CPU core, on smaller inputs
# ---------------------------------------------------------------------------------------------


def run_checks() -> None:
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        for n, v in ((64, 32000), (3, 128256), (300, 7), (2, 151936)):
            x = (torch.randn(n, v, generator=g) * 3).to(dtype)
            x[0, : v // 2] = float("-inf")
            if n > 2:
                x[1] = float("-inf")
                x[2, v // 3] = float("nan")
            t = torch.randint(0, v, (n,), generator=g)
            t[::4] = -100
            k = min(20, v)
            cpu = logcal.token_stats(x, t, top_k=k)
            gpu = logcal.token_stats(x.cuda(), t.cuda(), top_k=k)
            tol = 1e-10 if dtype == torch.float64 else 2e-5
            ok = all(
                (
                    exact(gpu[f], cpu[f])
                    if cpu[f].dtype == torch.int64
                    else close(gpu[f], cpu[f], tol)
                )
                for f in cpu
            )
            check(f"token_stats {str(dtype)[6:]} [{n}, {v}] top-{k}", ok)
            for out in (None, torch.bfloat16):
                ls_c = logcal.log_softmax(x, dtype=out)
                ls_g = logcal.log_softmax(x.cuda(), dtype=out)
                check(
                    f"log_softmax {str(dtype)[6:]}->{str(ls_c.dtype)[6:]} [{n}, {v}]",
                    close(ls_g, ls_c, 1e-2 if out is not None else tol),
                )
    x = (torch.randn(40, 5000, generator=g) * 2).to(torch.bfloat16)
    check(
        "token_stats top-100 (two passes)",
        exact(
            logcal.token_stats(x.cuda(), top_k=100).topk_ids,
            logcal.token_stats(x, top_k=100).topk_ids,
        ),
    )
    lens = torch.randint(0, 3000, (5000,), generator=g)
    lens[7] = 600_000
    off = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)])
    lp = -torch.rand(int(off[-1]), generator=g, dtype=torch.float64).float() * 5
    sc, sg = (
        logcal.sequence_stats(lp, offsets=off),
        logcal.sequence_stats(lp.cuda(), offsets=off.cuda()),
    )
    check(
        "sequence_stats flat, bitwise",
        all(exact(sg[f], sc[f]) for f in ("sum", "mean", "min", "count")),
    )
    pad = -torch.rand(100, 9000, generator=g)
    mask = torch.rand(100, 9000, generator=g) < 0.8
    sc, sg = (
        logcal.sequence_stats(pad, mask=mask),
        logcal.sequence_stats(pad.cuda(), mask=mask.cuda()),
    )
    check(
        "sequence_stats padded+mask, bitwise",
        all(exact(sg[f], sc[f]) for f in ("sum", "mean", "min", "count")),
    )
    conf = torch.rand(1 << 20, generator=g, dtype=torch.float64)
    corr = torch.rand(1 << 20, generator=g, dtype=torch.float64) < conf
    check(
        "calibration_stats 15 bins, bitwise state",
        logcal.calibration_stats(conf.cuda(), corr.cuda()) == logcal.calibration_stats(conf, corr),
    )
    check(
        "calibration_stats float32 soft labels, bitwise state",
        logcal.calibration_stats(conf.float().cuda(), conf.float().cuda())
        == logcal.calibration_stats(conf.float(), conf.float()),
    )
    acc_g = logcal.CalibrationAccumulator(binning="quantile")
    acc_g.update(conf.cuda(), corr.cuda())
    acc_c = logcal.CalibrationAccumulator(binning="quantile").update(conf, corr)
    check("accumulator (quantile fine grid), bitwise state", acc_g.to_dict() == acc_c.to_dict())
    xl = (torch.randn(512, 32000, generator=g) * 2).to(torch.bfloat16).cuda()
    tl = torch.randint(0, 32000, (512,), generator=g).cuda()
    acc = logcal.CalibrationAccumulator().update_from_logits(xl, tl)
    st = logcal.token_stats(xl)
    lpm = np.ascontiguousarray(st.max_logprob.cpu().numpy())
    cf = _native.cpu.calib_confidence_from_max_logprob(lpm)
    ref = logcal.CalibrationAccumulator().update(cf, st.argmax.cpu().numpy() == tl.cpu().numpy())
    check("update_from_logits (fused), bitwise vs CPU replay", acc.to_dict() == ref.to_dict())


# ---------------------------------------------------------------------------------------------
# 2. timings
# ---------------------------------------------------------------------------------------------


def composite(x, tgt):
    lp = torch.log_softmax(x.float(), dim=-1)
    tl = lp.gather(1, tgt[:, None])[:, 0]
    ent = -(lp.exp() * lp).sum(-1)
    mx, am = lp.max(-1)
    rank = (lp > tl[:, None]).sum(-1)
    tv, ti = lp.topk(K, dim=-1)
    return tl, ent, mx, am, rank, tv, ti


def run_timings() -> None:
    print(
        f"\ntimings (median of {REPS}, CUDA events): N={N} V={V} bf16, M={M} pairs, "
        f"{SEQS} sequences",
        flush=True,
    )
    big = torch.empty(1 << (26 if SMALL else 31), dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(big)
    record("copy (read+write)", "torch copy_", bench(lambda: dst.copy_(big)), 2 * big.numel())
    big = dst = None  # free the copy's 4 GB

    torch.manual_seed(0)
    x = (torch.randn(N, V, device="cuda") * 3).to(torch.bfloat16)
    tgt = torch.randint(0, V, (N,), device="cuda")
    in_bytes = x.numel() * 2
    job = f"token stats top-{K} [{N},{V}] bf16"
    record(
        job,
        "logcal.token_stats",
        bench(lambda: logcal.token_stats(x, tgt, top_k=K)),
        in_bytes,
        "targets check included",
    )
    # the kernel alone (no targets, so no check and no synchronisation)
    core = _native.cuda
    lead = {"logsumexp": (N,), "max_logprob": (N,), "argmax": (N,), "entropy": (N,)}
    outs = {
        f: view(
            torch.empty(
                (N, K) if f.startswith("topk") else shape,
                dtype=torch.int64 if f in ("argmax", "topk_ids") else torch.float32,
                device="cuda",
            ),
            f,
        )
        for f, shape in {**lead, "topk_ids": (N, K), "topk_logprobs": (N, K)}.items()
    }
    xv = view(x, "logits")
    record(
        job,
        "logcal token_stats kernel",
        bench(lambda: core.token_stats(logits=xv, top_k=K, **outs)),
        in_bytes,
        "no targets",
    )
    record(
        job, "torch eager composite", bench(lambda: composite(x, tgt), reps=REPS, warm=2), in_bytes
    )
    record(job, f"torch.topk k={K} (top-k only)", bench(lambda: torch.topk(x, K, dim=-1)), in_bytes)
    try:
        from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction

        xf = x.clone()
        record(
            job,
            "liger cross_entropy fwd (NLL only)",
            bench(lambda: LigerCrossEntropyFunction.apply(xf, tgt, None, -100, 0.0, 0.0, "none")),
            in_bytes,
            "writes grad in place",
        )
        xf = None
    except Exception as e:
        print("  liger: skipped:", repr(e)[:120], flush=True)
    acc = logcal.CalibrationAccumulator()
    record(
        job,
        "logcal update_from_logits (fused)",
        bench(lambda: acc.update_from_logits(x, tgt)),
        in_bytes,
        "token pass + binning",
    )

    job = f"log_softmax bf16->bf16 [{N},{V}]"
    record(
        job,
        "logcal.log_softmax",
        bench(lambda: logcal.log_softmax(x, dtype="bfloat16")),
        2 * in_bytes,
    )
    record(job, "torch.log_softmax", bench(lambda: torch.log_softmax(x, dim=-1)), 2 * in_bytes)
    job = f"log_softmax bf16->fp32 [{N},{V}]"
    record(job, "logcal.log_softmax", bench(lambda: logcal.log_softmax(x)), 3 * in_bytes)
    record(
        job,
        "torch.log_softmax(dtype=fp32)",
        bench(lambda: torch.log_softmax(x, dim=-1, dtype=torch.float32)),
        3 * in_bytes,
    )

    # calibration: M (confidence, correct) pairs into 15 bins
    conf = torch.rand(M, device="cuda")
    corr = torch.rand(M, device="cuda") < conf
    job = f"calibration 15 bins, {M} pairs"
    c, y = view(conf, "confidence"), view(corr, "correct")
    count = view(torch.zeros(15, dtype=torch.int64, device="cuda"), "count")
    sums = view(torch.zeros((15, 7, 2), dtype=torch.int64, device="cuda"), "sums")
    for light, name in (
        (True, "logcal kernel (binned sums: ECE)"),
        (False, "logcal kernel (all sums)"),
    ):
        record(
            job,
            name,
            bench(
                lambda light=light: core.calibration_stats(
                    confidence=c,
                    correct=y,
                    n_bins=15,
                    eps=1e-12,
                    light=light,
                    count=count,
                    sums=sums,
                )
            ),
            M * 5,
            "validation read (one sync) included",
        )
    record(
        job,
        "logcal.calibration_stats",
        bench(lambda: logcal.calibration_stats(conf, corr)),
        M * 5,
        "validation sync + host result",
    )
    edges = torch.linspace(0, 1, 16, device="cuda")
    corr_f = corr.float()

    def bins_torch():
        idx = torch.bucketize(conf, edges[1:-1], right=False)
        return (
            torch.bincount(idx, minlength=15),
            torch.bincount(idx, weights=conf, minlength=15),
            torch.bincount(idx, weights=corr_f, minlength=15),
        )

    record(job, "torch bucketize + 3 bincount", bench(bins_torch), M * 5)
    try:
        import cupy as cp

        cc, cy = cp.asarray(conf), cp.asarray(corr_f)
        record(
            job,
            "cupy.histogram x2",
            bench(
                lambda: (
                    cp.histogram(cc, bins=15, range=(0.0, 1.0)),
                    cp.histogram(cc, bins=15, range=(0.0, 1.0), weights=cy),
                )
            ),
            M * 5,
        )
        cc = cy = None
    except Exception as e:
        print("  cupy: skipped:", repr(e)[:120], flush=True)
    conf = corr = corr_f = c = y = None

    # ragged sums: M tokens into SEQS sequences
    lens = torch.randint(1, 2 * (M // SEQS), (SEQS,), device="cuda")
    lens = (lens.double() * (M / lens.sum().item())).long().clamp(min=1)
    lens[-1] += M - lens.sum()
    lens = lens.clamp(min=0)
    offsets = torch.zeros(SEQS + 1, dtype=torch.long, device="cuda")
    offsets[1:] = lens.cumsum(0)
    mt = int(offsets[-1].item())
    lp_tok = -torch.rand(mt, device="cuda") * 5
    job = f"ragged sums, {mt} tokens / {SEQS} seqs"
    nbytes = mt * 4 + offsets.numel() * 8
    outs5 = {f: view(torch.empty(SEQS, device="cuda"), f) for f in ("sum", "mean", "min")}
    outs5["perplexity"] = view(torch.empty(SEQS, device="cuda"), "perplexity")
    outs5["count"] = view(torch.empty(SEQS, dtype=torch.int64, device="cuda"), "count")
    lp_view, off_view = view(lp_tok, "token_logprobs"), view(offsets, "offsets")
    record(
        job,
        "logcal sequence_stats kernel",
        bench(lambda: core.sequence_stats(token_logprobs=lp_view, offsets=off_view, **outs5)),
        nbytes,
        "sum, mean, min, count, perplexity; offsets check (one sync) included",
    )
    record(
        job,
        "logcal.sequence_stats",
        bench(lambda: logcal.sequence_stats(lp_tok, offsets=offsets)),
        nbytes,
        "offsets check: one 8-byte read",
    )
    record(
        job,
        "torch.segment_reduce sum",
        bench(lambda: torch.segment_reduce(lp_tok, "sum", lengths=lens)),
        nbytes,
    )

    if "--no-compile" not in sys.argv:
        try:
            t0 = time.time()
            cfn = torch.compile(composite)
            cfn(x, tgt)
            sync()
            print(f"  (torch.compile took {time.time() - t0:.1f} s)", flush=True)
            record(
                f"token stats top-{K} [{N},{V}] bf16",
                "torch.compile composite",
                bench(lambda: cfn(x, tgt)),
                in_bytes,
            )
        except Exception as e:
            print("  compile: skipped:", repr(e)[:200], flush=True)


def table() -> None:
    copy_gbs = next(r["GB_s"] for r in rows if r["job"].startswith("copy"))
    print("\n" + "=" * 118)
    print(f"{'job':38s} {'provider':36s} {'ms':>9s} {'GB/s':>8s} {'% copy':>7s} {'x logcal':>9s}")
    print("-" * 118)
    for job in dict.fromkeys(r["job"] for r in rows):
        group = [r for r in rows if r["job"] == job]
        ours = next((r for r in group if r["provider"].startswith("logcal")), None)
        for r in group:
            ratio = "" if ours is None or r is ours else f"{r['ms'] / ours['ms']:9.2f}"
            print(
                f"{job[:38]:38s} {r['provider'][:36]:36s} {r['ms']:9.3f} {r['GB_s']:8.1f} "
                f"{100 * r['GB_s'] / copy_gbs:6.1f}% {ratio:>9s}"
            )
    print("=" * 118)
    n_fail = sum(not ok for _, ok, _ in checks)
    print(f"checks: {len(checks) - n_fail} PASS, {n_fail} FAIL")
    print(
        "targets (H200): token stats <= 0.65 ms; log_softmax bf16->bf16 <= 1.2 ms, "
        "bf16->fp32 <= 1.8 ms; calibration <= 0.45 ms; ragged sums <= 0.4 ms"
    )


def main() -> int:
    if not logcal.cuda_available():
        print("no usable CUDA device (or logcal was built without its CUDA module)")
        return 2
    print(
        "device:",
        torch.cuda.get_device_name(0),
        "| torch",
        torch.__version__,
        "| logcal CUDA module compiled:",
        logcal.cuda_compiled(),
        flush=True,
    )
    run_checks()
    run_timings()
    table()
    save()
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
