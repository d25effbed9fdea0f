"""The logcal command, run as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).with_name("data")


# The code under test, also from another working directory (a relative PYTHONPATH would
# find there nothing, or an installed logcal).
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ),
}


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "logcal", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env=ENV,
    )


def test_demo_reports_a_real_model(tmp_path):
    r = run("demo", "--bootstrap", "50", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "reads 1,025 real names, 8,842 characters" in out
    assert "mean log p(next char)    -2.106 nats" in out
    assert "predictions                             8,842" in out
    for label in [
        "ECE (expected calibration error)",
        "MCE",
        "RMSCE",
        "Brier score",
        "NLL",
        "AUROC",
    ]:
        assert label in out
    assert "reliability diagram written to logcal-demo.png" in out
    png = tmp_path / "logcal-demo.png"
    assert png.exists() and png.stat().st_size > 10_000


def test_demo_json_matches_the_library(tmp_path):
    import logcal

    r = run("demo", "--json", "--no-plot", "--bootstrap", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    demo = logcal.io.load_demo()
    s = logcal.token_stats(demo.logits, demo.targets)
    conf = np.exp(s.max_logprob.astype(np.float64))
    correct = s.argmax == demo.targets
    assert report["n"] == 8842
    assert report["metrics"]["ece"]["value"] == logcal.ece(conf, correct)
    assert report["metrics"]["brier"]["value"] == logcal.brier_score(conf, correct)
    assert abs(report["accuracy"] - correct.mean()) < 1e-12
    assert sum(row["count"] for row in report["reliability"]) == 8842
    assert not list(tmp_path.iterdir())  # --no-plot wrote nothing


def test_report_on_a_tiny_file_notes_the_weak_bootstrap():
    r = run("report", str(DATA / "vllm_chat.jsonl"), "--bins", "5")
    assert r.returncode == 0
    assert r.stderr.startswith("logcal: note: the bootstrap resampled only about")
    assert "Traceback" not in r.stderr and "UserWarning" not in r.stderr


def test_report_on_an_openai_file(tmp_path):
    plot = tmp_path / "diagram.png"
    r = run("report", str(DATA / "openai_chat.jsonl"), "--plot", str(plot), "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    assert "(openai_chat, " in r.stdout and "Calibration of" in r.stdout
    assert "ECE (expected calibration error)" in r.stdout
    assert plot.exists() and plot.stat().st_size > 5_000


def test_report_with_labels_is_answer_level(tmp_path):
    import logcal

    batch = logcal.io.read_logprobs(DATA / "openai_chat.jsonl")
    n = int((np.asarray(batch.choice) >= 0).sum())
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i % 2) for i in range(n)))
    r = run("report", str(DATA / "openai_chat.jsonl"), "--labels", str(labels), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == n
    labels.write_text("0 1")
    r = run("report", str(DATA / "openai_chat.jsonl"), "--labels", str(labels))
    assert r.returncode == 1
    assert r.stderr.strip() == f"logcal: error: {labels}: 2 labels for {n} generated sequences"
    labels.write_text("\n".join(["0"] * (n - 1) + ["maybe"]))
    r = run("report", str(DATA / "openai_chat.jsonl"), "--labels", str(labels))
    assert r.returncode == 1 and "labels must be numbers 0 or 1" in r.stderr


def test_report_bad_input_exits_1_with_one_line(tmp_path):
    missing = tmp_path / "missing.jsonl"
    r = run("report", str(missing))
    assert r.returncode == 1
    assert r.stderr == f"logcal: error: cannot read {missing}: No such file or directory\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"choices": [{"logprobs": {"content": [{"token": "a", "logprob": "x"}]}}]}\n')
    r = run("report", str(bad))
    assert r.returncode == 1 and r.stderr.startswith("logcal: error: ")
    assert r.stderr.count("\n") == 1


def test_info_and_usage_errors():
    r = run("info")
    assert r.returncode == 0 and "CPU kernels:" in r.stdout and "CUDA module compiled:" in r.stdout
    r = run()
    assert r.returncode == 2 and "usage: logcal" in r.stderr
    r = run("demo", "--bins", "0")
    assert r.returncode == 2 and "--bins must be at least 1" in r.stderr
    r = run("report")
    assert r.returncode == 2 and "the following arguments are required: file" in r.stderr
    r = run("--help")
    assert r.returncode == 0 and "demo" in r.stdout and "report" in r.stdout


@pytest.mark.parametrize("command", ["demo", "report"])
def test_subcommand_help(command):
    r = run(command, "--help")
    assert r.returncode == 0 and "--bins" in r.stdout and "--json" in r.stdout


def test_demo_without_matplotlib_still_reports(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from logcal.cli import main\n"
        "sys.exit(main(['demo', '--bootstrap', '0']))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "ECE (expected calibration error)" in r.stdout
    assert "reliability diagram skipped: matplotlib is not installed" in r.stdout
    assert not list(tmp_path.iterdir())


# --- hardening: one-line messages, exit codes, the report printed where it can be ---------------

WEAK_NOTE = (
    "logcal: note: the bootstrap resampled only about 5 units of the data; its intervals are "
    "unreliable (more data helps; --bootstrap 0 leaves them out)\n"
)


def test_plot_to_a_name_without_suffix_reports_the_file_written(tmp_path):
    r = run("report", str(DATA / "vllm_chat.jsonl"), "--plot", "diagram", "--bootstrap", "0",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\nreliability diagram written to diagram.png\n")
    assert [p.name for p in tmp_path.iterdir()] == ["diagram.png"]


def test_plot_to_a_directory_is_refused_after_the_report(tmp_path):
    r = run("report", str(DATA / "vllm_chat.jsonl"), "--plot", str(tmp_path), "--bootstrap", "0")
    assert r.returncode == 1
    assert "ECE (expected calibration error)" in r.stdout
    assert r.stderr == (
        f"logcal: error: cannot write the reliability diagram to {tmp_path}: it is a directory; "
        f"give a file name, such as {tmp_path / 'reliability.png'}\n"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("as_json", [False, True])
def test_plot_that_cannot_be_written_still_prints_the_report(tmp_path, as_json):
    target = tmp_path / "missing" / "x.png"
    extra = ["--json"] if as_json else []
    r = run("report", str(DATA / "vllm_chat.jsonl"), "--plot", str(target), "--bootstrap", "0",
            *extra)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr == (
        f"logcal: error: cannot write the reliability diagram to {target}: "
        f"No such file or directory\n"
    )
    if as_json:
        report = json.loads(r.stdout)
        assert report["plot"] is None and report["n"] > 0
    else:
        assert "ECE (expected calibration error)" in r.stdout


def test_plot_asked_for_without_matplotlib_is_an_error(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from logcal.cli import main\n"
        f"sys.exit(main(['report', {str(DATA / 'vllm_chat.jsonl')!r}, '--plot', 'x.png',"
        " '--bootstrap', '0']))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env=ENV,
    )  # fmt: skip
    assert r.returncode == 1
    assert "ECE (expected calibration error)" in r.stdout
    assert r.stderr == (
        "logcal: error: cannot draw the reliability diagram: matplotlib is not installed "
        "(pip install 'logcal[plot]')\n"
    )


def test_huge_bootstrap_and_threads_are_usage_errors():
    r = run("report", str(DATA / "vllm_chat.jsonl"), "--bootstrap", str(10**12))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1] == (
        "logcal: error: --bootstrap x --bins = 15,000,000,000,000 replicate bins is more than "
        "the 67,108,864 (2**26) a report can hold; ask for fewer"
    )
    for args in (["--threads", str(10**10), "info"], ["info", "--threads", "-1"]):
        r = run(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.splitlines()[-1] == (
            "logcal: error: --threads must be from 1 to 1024, or 0 for all CPUs"
        )


def test_threads_after_the_subcommand():
    for args in (["info", "--threads", "3"], ["--threads", "3", "info"],
                 ["--threads", "2", "info", "--threads", "3"]):  # fmt: skip
        r = run(*args)
        assert r.returncode == 0, r.stderr
        assert ", 3 threads" in r.stdout


def test_warnings_are_one_clean_line_each_and_the_bootstrap_note_once(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((DATA / "vllm_chat.jsonl").read_text().splitlines()[0] + "\nnot json\n")
    r = run("report", str(bad), "--errors", "skip", "--plot", str(tmp_path / "d.png"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == (
        f"logcal: warning: skipped 1 malformed record(s) of 2 in {bad}; the first: {bad}:2: "
        f"not valid JSON: Expecting value (column 1)\n"
        + WEAK_NOTE.replace("about 5 units", "about 4 units")
    )
    r = run("report", str(DATA / "vllm_chat.jsonl"), "--plot", str(tmp_path / "e.png"))
    assert r.returncode == 0 and r.stderr == WEAK_NOTE
