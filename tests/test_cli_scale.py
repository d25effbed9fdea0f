"""`logcal report` over many files, by local worker processes and on a Dask cluster: the same
report bit for bit whatever the workers, the scheduler or the byte ranges a large JSONL file
is cut into, and the numbers of one process over the files in order."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

import logcal
import logcal.cli
from logcal._logprob_parts import RankCounts, Settings, split

DATA = Path(__file__).parent / "data"
TIMEOUT_S = 60


def _report(capsys, *argv: str) -> tuple:
    """(exit code, stdout, stderr) of ``logcal report ARGV``."""
    code = logcal.cli.main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A JSONL file of OpenAI chat records (random log-probabilities) of about 2.5 MB, long
    enough to be cut into byte ranges, with one malformed line in its second half."""
    lines = [line for line in (DATA / "openai_chat.jsonl").read_text().splitlines() if line]
    rng = np.random.default_rng(7)
    out, size = [], 0
    while size < 2_500_000:
        rec = json.loads(lines[rng.integers(len(lines))])
        for choice in rec["choices"]:
            for token in (choice.get("logprobs") or {}).get("content") or []:
                token["logprob"] = float(-rng.exponential(0.5))
                for alt in token.get("top_logprobs") or []:
                    alt["logprob"] = round(float(-rng.exponential(1.0)), 3)  # ties
        out.append(json.dumps(rec))
        size += len(out[-1]) + 1
    out.insert(3 * len(out) // 4, '{"choices": [')
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_text("\n".join(out) + "\n")
    assert len(split([str(path)], Settings(), 1 << 20)) == 3  # as --workers 2 cuts it
    return path


@pytest.fixture(scope="module")
def scheduler():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        timeout=TIMEOUT_S,
    ) as cluster:
        yield cluster.scheduler_address


def _token_pairs(files: list, errors: str = "raise") -> tuple:
    """The pairs of one process reading the files in order, by the report's rule."""
    pairs = [logcal.read_logprobs(str(f), errors=errors).top1_pairs() for f in files]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _answers(files: list, errors: str = "raise") -> np.ndarray:
    """The probability of each generated answer of the files, in order."""
    out = []
    for f in files:
        batch = logcal.read_logprobs(str(f), errors=errors)
        sums = logcal.sequence_stats(batch.token_logprob, batch.offsets).sum
        out.append(np.exp(np.asarray(sums, np.float64)[np.asarray(batch.choice) >= 0]))
    return np.concatenate(out)


def _assert_numbers(report: dict, stats, auroc: float) -> None:
    assert report["n"] == stats.n
    assert report["auroc"] == auroc
    for name, entry in report["metrics"].items():
        assert entry["value"] == float(stats.metric(name)), name
        if "ci95" in entry:
            assert entry["ci95"] == [float(x) for x in stats.interval(name)], name


@pytest.mark.filterwarnings("ignore:the bootstrap resampled only")  # small files
def test_many_files_are_one_stream_in_the_order_given(capsys):
    files = [DATA / "vllm_chat.jsonl", DATA / "openai_chat.jsonl", DATA / "gemini.json"]
    code, out, err = _report(capsys, *map(str, files), "--json", "--bootstrap", "40")
    assert code == 0, err
    report = json.loads(out)
    conf, correct = _token_pairs(files)
    one = logcal.CalibrationAccumulator(n_bootstrap=40).update(conf, correct).compute()
    _assert_numbers(report, one, logcal.selective(conf, correct).auroc)
    assert report["source"] == {
        "files": [str(f) for f in files],
        "format": "vllm_chat, openai_chat, gemini",
        "skipped": 0,
    }
    # in another order, another stream: the bootstrap's replicates differ
    code, out, _ = _report(capsys, *map(str, files[::-1]), "--json", "--bootstrap", "40")
    assert json.loads(out)["metrics"]["ece"]["value"] == report["metrics"]["ece"]["value"]
    assert json.loads(out)["metrics"]["ece"]["ci95"] != report["metrics"]["ece"]["ci95"]


def test_a_quoted_glob_is_its_matches_in_sorted_order(capsys):
    code, out, err = _report(
        capsys, str(DATA / "*.jsonl"), "--errors", "skip", "--json", "--bootstrap", "0"
    )
    assert code == 0, err
    files = sorted(DATA.glob("*.jsonl"))
    assert json.loads(out)["source"]["files"] == [str(f) for f in files]
    assert err == (
        "logcal: warning: skipped 1 malformed record(s) of 3 in "
        f"{DATA / 'openai_batch.jsonl'}; the first: {DATA / 'openai_batch.jsonl'}:2: response "
        "is null (the request failed: {'code': 'batch_expired', 'message': 'This request "
        "could ...)\n"
    )
    with pytest.warns(UserWarning, match="read_logprobs skipped 1"):
        conf, correct = _token_pairs(files, "skip")
    one = logcal.CalibrationAccumulator().update(conf, correct).compute()
    _assert_numbers(json.loads(out), one, logcal.selective(conf, correct).auroc)
    code, out, err = _report(capsys, str(DATA / "*.nothing"))
    assert (code, out) == (1, "")
    assert err == f"logcal: error: no file matches {str(DATA / '*.nothing')!r}\n"


def _runs(capsys, argv: list, scheduler: str | None) -> list:
    """The report of ``argv`` by 1, 2 and 3 local processes and on the cluster."""
    runs = [_report(capsys, *argv, "--workers", w) for w in ("1", "2", "3")]
    if scheduler is not None:
        runs.append(_report(capsys, *argv, "--scheduler", scheduler))
    return runs


@pytest.mark.parametrize("extra", [["--json"], ["--bootstrap", "0", "--bins", "7"]])
def test_the_report_is_the_same_whatever_the_workers_or_scheduler(capsys, big, scheduler, extra):
    # files, a file cut into byte ranges (with a malformed record in one), files again
    files = [str(DATA / "vllm_chat.jsonl"), str(big), str(DATA / "openai_batch.jsonl")]
    argv = [*files, "--errors", "skip", *extra]
    runs = _runs(capsys, argv, scheduler)
    assert runs[0][0] == 0, runs[0][2]
    for run in runs[1:]:
        assert run == runs[0]
    assert "skipped 1 malformed record(s) of" in runs[0][2]
    assert f"in {big}; the first: {big}:" in runs[0][2]  # the line of the whole file
    if "--json" in extra:
        with pytest.warns(UserWarning, match="read_logprobs skipped 1"):
            conf, correct = _token_pairs(files, "skip")
        one = logcal.CalibrationAccumulator(n_bootstrap=200).update(conf, correct).compute()
        _assert_numbers(json.loads(runs[0][1]), one, logcal.selective(conf, correct).auroc)


def test_answers_with_labels_are_the_same_whatever_the_workers_or_scheduler(
    capsys, big, scheduler, tmp_path
):
    files = [str(DATA / "openai_chat.jsonl"), str(big)]
    with pytest.warns(UserWarning, match="read_logprobs skipped 1"):
        answers = _answers(files, "skip")
    labels = np.random.default_rng(3).integers(0, 2, answers.size)
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(map(str, labels)))
    argv = [*files, "--labels", str(path), "--errors", "skip", "--json", "--bootstrap", "30"]
    runs = _runs(capsys, argv, scheduler)
    assert runs[0][0] == 0, runs[0][2]
    for run in runs[1:]:
        assert run == runs[0]
    one = logcal.calibration_stats(answers, labels, n_bootstrap=30)
    _assert_numbers(json.loads(runs[0][1]), one, logcal.selective(answers, labels).auroc)
    path.write_text("0 1")
    for code, out, err in _runs(capsys, argv, scheduler):
        assert (code, out) == (1, "")
        assert err.endswith(
            f"logcal: error: {path}: 2 labels for {answers.size} generated sequences\n"
        )


def test_the_first_error_in_file_order_is_the_one_said(capsys, big, tmp_path):
    # a malformed record early in the first range too: one process meets it first
    text = big.read_text().splitlines()
    text[5] = "not json"
    path = tmp_path / "two_errors.jsonl"
    path.write_text("\n".join(text) + "\n")
    for workers in ("1", "2", "3"):
        code, out, err = _report(capsys, str(path), "--workers", workers)
        assert (code, out) == (1, "")
        assert err.startswith(f"logcal: error: {path}:6: not valid JSON")


def test_scheduler_errors_name_the_address(capsys, monkeypatch):
    monkeypatch.setattr(logcal.cli, "_CONNECT_TIMEOUT_S", 1)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    path = str(DATA / "vllm_chat.jsonl")
    code, out, err = _report(capsys, path, "--scheduler", address)
    assert (code, out) == (1, "")
    assert err == (
        f"logcal: error: cannot connect to the Dask scheduler at {address}: Timed out trying "
        f"to connect to {address} after 1 s\n"
    )
    code, out, err = _report(capsys, path, "--scheduler", "nowhere::")
    assert code == 1
    assert err.startswith(
        "logcal: error: cannot connect to the Dask scheduler at nowhere::: invalid address"
    )
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if not installed
    code, out, err = _report(capsys, path, "--scheduler", address)
    assert (code, out) == (1, "")
    assert err == (
        f"logcal: error: --scheduler {address}: dask.distributed is not installed "
        "(pip install 'logcal[dask]')\n"
    )


def test_workers_and_scheduler_do_not_combine(capsys):
    with pytest.raises(SystemExit) as exit_:
        logcal.cli.main(["report", "x.jsonl", "--workers", "2", "--scheduler", "tcp://a:1"])
    assert exit_.value.code == 2
    assert "--workers and --scheduler do not combine" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(6))
def test_rank_counts_merged_give_the_auroc_of_selective_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    conf = np.round(rng.uniform(size=n), int(rng.integers(1, 4)))  # many ties
    correct = rng.uniform(size=n) < conf
    cuts = sorted(rng.integers(0, n, rng.integers(0, 6)).tolist())
    whole = RankCounts()
    for a, b in reversed(list(zip([0, *cuts], [*cuts, n]))):  # any order
        part = RankCounts()
        part.add(conf[a:b], correct[a:b])
        whole.merge(part)
    assert whole.auroc() == logcal.selective(conf, correct).auroc
    assert int(whole.total.sum()) == n
    one = RankCounts()
    one.add(conf, np.ones(n, bool))
    assert np.isnan(one.auroc())  # no wrong pair: undefined, as selective says
    assert re.fullmatch(r"nan", str(logcal.selective(conf, np.ones(n, bool)).auroc))


def test_streaming_chunks_after_other_records_refuse_byte_ranges(capsys, tmp_path):
    """A stream of chunks may go on across a range's end: a file that mixes chunks with whole
    completions is refused in ranges, naming the line, and read whole by one process."""
    demo = logcal.io.demo_path().read_text()
    head = {"id": "s", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    entry = {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [
        {"token": "a", "logprob": -0.5, "bytes": [97]}]}  # fmt: skip
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"content": "a"},
                              "logprobs": {"content": [entry]}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                              "finish_reason": "stop"}]},
    ]  # fmt: skip
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(demo + "".join(json.dumps(c) + "\n" for c in chunks) + demo)
    line = demo.count("\n") + 1
    code, _, err = _report(capsys, str(mixed), "--workers", "2", "--bootstrap", "0")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"logcal: error: {mixed}:{line}: streaming chunks after other records; a file that "
        "mixes them is read whole, by one process (workers=1)"
    )
    code, out, _ = _report(capsys, str(mixed), "--bootstrap", "0", "--json")
    assert code == 0 and json.loads(out)["n"] == 2 * 8842 + 1
