"""Benchmark harness: every job is timed for logcal and its baselines in the same run, and the
ratios (baseline median / logcal median) are printed at the end and saved as JSON.

Run:  python -m pytest benchmarks/bench_token.py   (add --benchmark-only to skip nothing else)
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

import logcal

THREADS = int(os.environ.get("LOGCAL_BENCH_THREADS", "2"))
_MEDIANS: dict[str, dict[str, float]] = {}


@pytest.fixture(autouse=True, scope="session")
def _threads():
    logcal.set_num_threads(THREADS)
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass
    yield
    logcal.set_num_threads(0)


@pytest.fixture
def timed(benchmark):
    """timed(job, provider, fn, rounds=5): time fn with pytest-benchmark and keep its median."""

    def run(job: str, provider: str, fn, rounds: int = 5):
        # A job may be timed from several tests: one pytest-benchmark entry per (job, provider).
        benchmark.group = job
        benchmark.name = provider
        result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
        _MEDIANS.setdefault(job, {})[provider] = benchmark.stats.stats.median
        return result

    return run


def pytest_terminal_summary(terminalreporter):
    if not _MEDIANS:
        return
    tr = terminalreporter
    tr.section(f"logcal ratios ({THREADS} threads; each median time / logcal's median time)")
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.processor() or platform.machine(),
        "cpu_isa": logcal._native.cpu.isa(),
        "threads": THREADS,
        "jobs": {},
    }
    for job, medians in _MEDIANS.items():
        ours = medians.get("logcal")
        report["jobs"][job] = {"median_s": medians}
        for provider, t in medians.items():
            line = f"{job:40s} {provider:28s} {t * 1e3:10.2f} ms"
            if ours and provider != "logcal":
                ratio = t / ours
                report["jobs"][job].setdefault("speedup", {})[provider] = ratio
                line += f"   {ratio:8.2f}x logcal's time"
            tr.write_line(line)
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "last_run.json").write_text(json.dumps(report, indent=2))
    tr.write_line(f"saved {out / 'last_run.json'}")
