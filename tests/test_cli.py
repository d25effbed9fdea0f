"""The logcal command, run as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import subprocess
import sys


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "logcal", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_prints_the_table():
    r = run("demo", "--sequences", "3", "--length", "5", "--vocab", "1000")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "logcal 0.1.0 demo: 3 generated sequences x 5 tokens, vocabulary 1000"
    assert "mean logprob" in lines[2] and "confidence" in lines[2]
    rows = [line for line in lines if line[:4].strip().isdigit()]
    assert [row.split()[0] for row in rows] == ["0", "1", "2"]
    assert any(line.startswith("all") and " 15 " in line for line in lines)
    assert "The model says it is" in r.stdout


def test_demo_is_reproducible():
    a = run("demo", "--sequences", "2", "--length", "4", "--vocab", "300", "--seed", "3")
    b = run("demo", "--sequences", "2", "--length", "4", "--vocab", "300", "--seed", "3")
    table = lambda out: [line for line in out.splitlines() if "G logits/s" not in line]  # noqa: E731
    assert table(a.stdout) == table(b.stdout)


def test_info_and_usage_errors():
    r = run("info")
    assert r.returncode == 0 and "CPU kernels:" in r.stdout and "CUDA module compiled:" in r.stdout
    r = run()
    assert r.returncode == 2 and "usage: logcal" in r.stderr
    r = run("demo", "--vocab", "0")
    assert r.returncode == 2 and "--vocab must be at least 1" in r.stderr
    r = run("--help")
    assert r.returncode == 0 and "demo" in r.stdout and "info" in r.stdout
