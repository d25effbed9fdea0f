"""logcal.dask on a 2-process dask.distributed LocalCluster: per-block states merged up a tree
give the one-shot statistics bit for bit, whatever the chunks and fan-in."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")

import logcal  # noqa: E402
import logcal._logprob_parts  # noqa: E402
import logcal.cli  # noqa: E402
import logcal.dask  # noqa: E402
from logcal.io import read_logprobs  # noqa: E402

TIMEOUT_S = 60


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            timeout=TIMEOUT_S,
        ) as cluster,
        distributed.Client(cluster, timeout=TIMEOUT_S) as c,
    ):
        yield c


def _data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    c[::5] = np.round(c[::5], 1)
    return c, rng.uniform(size=n) < c, rng.uniform(0, 4, n)


def _chunks(rng, n: int) -> tuple:
    cuts = sorted(rng.integers(0, n, rng.integers(0, 9)).tolist())
    return tuple(b - a for a, b in zip([0, *cuts], [*cuts, n]))  # empty blocks too


@pytest.mark.parametrize("seed", range(4))
def test_blocks_merged_on_the_cluster_equal_one_call_bit_for_bit(client, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    c, y, w = _data(seed, n)
    kw = [
        {"n_bins": 12},
        {"binning": [0, 0.05, 0.3, 0.3, 0.75, 1.0]},
        {"n_bins": 6, "n_bootstrap": 5, "seed": 3},
        {"n_bins": 6, "n_bootstrap": 4, "bootstrap_block": 7},
    ][seed]
    weighted = seed % 2 == 1
    chunks = _chunks(rng, n)
    job = logcal.dask.calibration_stats(
        da.from_array(c, chunks=(chunks,)),
        da.from_array(y, chunks=(_chunks(rng, n),)),  # other chunks: rechunked to confidence's
        weights=da.from_array(w, chunks=(chunks,)) if weighted else None,
        split_every=int(rng.integers(2, 5)),
        compute=False,
        **kw,
    )
    got = client.compute(job).result(timeout=TIMEOUT_S)
    one = logcal.calibration_stats(c, y, weights=w if weighted else None, **kw)
    assert got == one
    assert got.to_bytes() == one.to_bytes()


def test_two_dimensional_arrays_are_flattened(client):
    c, y, _ = _data(9, 600)
    job = logcal.dask.calibration_stats(
        da.from_array(c.reshape(20, 30), chunks=(7, 11)), y.reshape(20, 30), compute=False
    )
    assert client.compute(job).result(timeout=TIMEOUT_S) == logcal.calibration_stats(c, y)


def test_bad_input_is_refused():
    c = da.from_array(np.array([0.5, 0.7]), chunks=1)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.dask.calibration_stats: binning='quantile' needs all the data at once"
        ),
    ):
        logcal.dask.calibration_stats(c, c, binning="quantile")
    with pytest.raises(ValueError, match=re.escape("split_every must be an integer >= 2, got 1")):
        logcal.dask.calibration_stats(c, c, split_every=1)
    with pytest.raises(
        ValueError, match=re.escape("correct must have as many values as confidence (2), got 3")
    ):
        logcal.dask.calibration_stats(c, np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=re.escape("confidence is empty")):
        logcal.dask.calibration_stats(da.zeros(0, chunks=1), np.zeros(0))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "logcal.dask.calibration_stats: the block from position 1: confidence[0] = 1.5 is outside [0, 1]"
        ),
    ):
        logcal.dask.calibration_stats(
            da.from_array(np.array([0.5, 1.5]), chunks=1), np.array([1, 0])
        )


def _row_chunks(rng, n: int) -> tuple:
    cuts = sorted(rng.integers(0, n + 1, rng.integers(0, 4)).tolist())
    return tuple(b - a for a, b in zip([0, *cuts], [*cuts, n]))  # empty blocks too


@pytest.mark.parametrize("seed", range(3))
def test_token_stats_of_row_blocks_equal_one_call_bit_for_bit(client, seed):
    rng = np.random.default_rng(seed)
    b, t, v = (int(x) for x in rng.integers(1, 9, 3) * (1, 3, 7))
    logits = rng.normal(0, 3, (b, t, v)).astype([np.float32, np.float64, np.float32][seed])
    logits[0, 0, : v // 2] = -np.inf  # masked tokens
    targets = rng.integers(0, v, (b, t))
    targets[-1, -1] = -100
    kw = [
        {"top_k": min(3, v)},
        {"candidate_ids": rng.integers(0, v, 4), "temperature": 0.7},
        {"candidate_ids": rng.integers(0, v, (b, t, 2)), "top_k": 1},
    ][seed]
    chunks = (_row_chunks(rng, b), _row_chunks(rng, t), _row_chunks(rng, v))  # vocab split too
    stats = logcal.dask.token_stats(
        da.from_array(logits, chunks=chunks), da.from_array(targets, chunks=3), **kw
    )
    got = dict(zip(stats.keys(), client.compute(list(stats.values()), sync=True)))
    one = logcal.token_stats(logits, targets, **kw)
    assert sorted(got) == sorted(one)
    for name, value in one.items():
        assert got[name].dtype == value.dtype, name
        assert np.array_equal(got[name], value, equal_nan=True), name


def test_token_stats_without_targets_and_its_bad_input(client):
    logits = np.random.default_rng(5).normal(size=(10, 6))
    stats = logcal.dask.token_stats(da.from_array(logits, chunks=(4, 6)))
    assert not hasattr(stats, "target_logprob")
    got = client.compute(stats.entropy, sync=True)
    assert np.array_equal(got, logcal.token_stats(logits).entropy)
    with pytest.raises(
        ValueError, match=re.escape("targets must have the logits' leading shape (10,), got (9,)")
    ):
        logcal.dask.token_stats(da.from_array(logits), np.zeros(9, int))
    with pytest.raises(
        ValueError, match=re.escape("top_k = 7 is larger than the vocabulary size V = 6")
    ):
        logcal.dask.token_stats(da.from_array(logits), top_k=7)
    bad = logcal.dask.token_stats(da.from_array(logits, chunks=(5, 6)), np.full(10, 6))
    with pytest.raises(  # the index is the block's (each block is one call)
        ValueError, match=re.escape("targets[0] = 6 is outside [0, 6) and is not ignore_index")
    ):
        client.compute(bad.target_logprob, sync=True)


DATA = Path(__file__).parent / "data"


def _report_pairs(path) -> tuple:
    """A file's pairs by the rule of `logcal report`, from the whole batch."""
    batch = read_logprobs(path, errors="skip")
    top = batch.top_logprobs[:, 0]
    keep = np.isfinite(top)
    return np.exp(top[keep]), (batch.tokens == batch.top_tokens[:, 0])[keep]


@pytest.mark.filterwarnings("ignore:read_logprobs skipped 1 malformed record")
@pytest.mark.parametrize("split_every", [2, 3])
def test_read_calibration_of_files_equals_one_accumulator_bit_for_bit(client, split_every):
    files = sorted(DATA.glob("*.json*"))
    job = logcal.dask.read_calibration(
        str(DATA / "*.json*"),
        errors="skip",
        n_bins=5,
        n_bootstrap=20,
        seed=4,
        split_every=split_every,
        compute=False,
    )
    got = client.compute(job).result(timeout=TIMEOUT_S)
    one = logcal.CalibrationAccumulator(n_bins=5, n_bootstrap=20, seed=4)
    for f in files:
        one.update(*_report_pairs(f))
    assert got == one.compute()
    assert got.to_bytes() == one.compute().to_bytes()


@pytest.mark.filterwarnings("ignore:the bootstrap resampled only about")  # a tiny file
def test_read_calibration_of_one_file_gives_logcal_report(client, capsys):
    path = str(DATA / "vllm_chat.jsonl")
    assert logcal.cli.main(["report", path, "--json", "--bootstrap", "30"]) == 0
    report = json.loads(capsys.readouterr().out)
    job = logcal.dask.read_calibration([path], n_bootstrap=30, compute=False)
    got = client.compute(job).result(timeout=TIMEOUT_S)
    assert got.n == report["n"]
    for name, entry in report["metrics"].items():
        assert float(got.metric(name)) == entry["value"]
        assert [float(x) for x in got.interval(name)] == entry["ci95"]


def test_read_calibration_refuses_bad_input(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=re.escape("logcal.dask.read_calibration: no file matches"),
    ):
        logcal.dask.read_calibration(str(tmp_path / "*.jsonl"))
    with pytest.raises(ValueError, match=re.escape("logcal.dask.read_calibration: paths is empty")):
        logcal.dask.read_calibration([])
    with pytest.raises(ValueError, match=re.escape("split_every must be an integer >= 2, got 0")):
        logcal.dask.read_calibration([DATA / "vllm_chat.jsonl"], split_every=0)
    with pytest.raises(ValueError, match=re.escape("openai_batch.jsonl:2: response is null")):
        with dask.config.set(scheduler="sync"):
            logcal.dask.read_calibration([DATA / "openai_batch.jsonl"])


def _file_in_lines(tmp_path, n_records: int, bad: tuple = ()) -> Path:
    """A JSONL file of the records of the data files, again and again (malformed lines at
    the indices ``bad``)."""
    lines = [
        line
        for f in ("openai_chat.jsonl", "vllm_chat.jsonl")
        for line in (DATA / f).read_text().splitlines()
        if line.strip()
    ]
    text = [lines[i % len(lines)] for i in range(n_records)]
    for i in bad:
        text[i] = '{"choices": [{"logprobs": '
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(text) + "\n")
    return path


@pytest.mark.filterwarnings("ignore:read_logprobs skipped")
@pytest.mark.parametrize("seed", range(3))
def test_read_calibration_of_byte_ranges_equals_one_accumulator_bit_for_bit(client, tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = _file_in_lines(tmp_path, int(rng.integers(20, 60)), bad=(7, 23)[: seed + 1])
    blocksize = int(rng.integers(300, 4000))
    parts = logcal._logprob_parts.split([str(path)], logcal._logprob_parts.Settings(), blocksize)
    assert len(parts) > 2 and all(p.stop is not None for p in parts)  # cut into ranges
    settings = dict(n_bins=int(rng.integers(3, 20)), n_bootstrap=25, seed=seed)
    job = logcal.dask.read_calibration(
        str(path), errors="skip", blocksize=blocksize, split_every=2, compute=False, **settings
    )
    got = client.compute(job).result(timeout=TIMEOUT_S)
    one = logcal.CalibrationAccumulator(**settings).update(*_report_pairs(path))
    assert got.to_bytes() == one.compute().to_bytes()


@pytest.mark.filterwarnings("ignore:read_logprobs skipped")
def test_read_calibration_of_files_and_ranges_equals_one_accumulator_bit_for_bit(client, tmp_path):
    long = _file_in_lines(tmp_path, 40, bad=(30,))
    gz = tmp_path / "openai_batch.jsonl.gz"
    gz.write_bytes(gzip.compress((DATA / "openai_batch.jsonl").read_bytes()))
    files = [DATA / "gemini.json", long, gz, DATA / "vllm_chat.jsonl"]
    parts = logcal._logprob_parts.split(
        [str(f) for f in files], logcal._logprob_parts.Settings(), 500
    )
    # the JSON document and the gzip file whole, the JSONL files in ranges
    ranges = [sum(p.file == i for p in parts) for i in range(len(files))]
    assert ranges[0] == ranges[2] == 1 and ranges[1] > 2 and ranges[3] > 1
    assert [p.stop is None for p in parts if p.file in (0, 2)] == [True, True]
    job = logcal.dask.read_calibration(
        files, errors="skip", blocksize=500, n_bootstrap=30, seed=2, compute=False
    )
    got = client.compute(job).result(timeout=TIMEOUT_S)
    one = logcal.CalibrationAccumulator(n_bootstrap=30, seed=2)
    for f in files:
        one.update(*_report_pairs(f))
    assert got.to_bytes() == one.compute().to_bytes()
    whole = logcal.dask.read_calibration(
        files, errors="skip", blocksize=None, n_bootstrap=30, seed=2, compute=False
    )
    assert client.compute(whole).result(timeout=TIMEOUT_S).to_bytes() == got.to_bytes()


def test_read_calibration_of_ranges_says_what_one_reader_would(tmp_path):
    path = _file_in_lines(tmp_path, 40, bad=(31,))
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match=re.escape(f"{path}:32: not valid JSON")):
            logcal.dask.read_calibration(path, blocksize=400)
        with pytest.warns(
            UserWarning,
            match=re.escape(f"read_logprobs skipped 1 malformed record(s) of 40 in {path}"),
        ):
            logcal.dask.read_calibration(path, blocksize=400, errors="skip")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n" * 3000)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(
            ValueError, match=re.escape(f"none of the 3000 records of {bad} could be read")
        ):
            logcal.dask.read_calibration(bad, blocksize=1000, errors="skip")
    with pytest.raises(
        ValueError, match=re.escape("blocksize must be a positive integer or None, got 0")
    ):
        logcal.dask.read_calibration(path, blocksize=0)
