"""``logcal report --recalibrate`` and the demo's before/after: the split by record, each method
against the library on the same split, the JSON, the refusals and their messages, the diagram."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import logcal
from logcal.cli import in_fitting_part, main
from logcal.recalibration import IsotonicCalibration, PlattScaling, fit_temperature

DATA = Path(__file__).with_name("data")
DEMO_FILE = str(logcal.io.demo_path())
METRICS = ("ece", "mce", "rmsce", "brier", "nll")


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def usage_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def refused(capsys, *argv) -> tuple:
    """Exit 1: the (stdout, last stderr line)."""
    assert main(list(argv)) == 1
    out, err = capsys.readouterr()
    return out, err.strip().splitlines()[-1]


def held_out_metrics(before, after, correct, summary):
    """The held-out statistics the report must give, from the library."""
    for side, confidence in (("before", before), ("after", after)):
        stats = logcal.calibration_stats(confidence, correct, n_bins=15)
        table = summary[side]
        assert table["n"] == confidence.size
        for name in METRICS:
            assert table["metrics"][name]["value"] == stats.metric(name), (side, name)
        assert table["mean_confidence"] == pytest.approx(confidence.mean(), rel=1e-12)
    for name in METRICS:
        want = (
            summary["after"]["metrics"][name]["value"] - summary["before"]["metrics"][name]["value"]
        )
        assert summary["change"][name]["value"] == want


# --- the split --------------------------------------------------------------------------------


def by_definition(r: int, fraction: Fraction) -> bool:
    return math.ceil((r + 1) * fraction) > math.ceil(r * fraction)


@given(
    st.integers(2, 2**31 - 1).flatmap(lambda q: st.tuples(st.integers(1, q - 1), st.just(q))),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=50),
)
def test_split_rule_is_its_definition_in_exact_integers(pq, records):
    fraction = Fraction(*pq)
    got = in_fitting_part(np.array(records), fraction)
    assert got.tolist() == [by_definition(r, fraction) for r in records]


@pytest.mark.parametrize(
    "fraction", [Fraction(1, 2), Fraction(1, 3), Fraction(2, 3), Fraction(7, 10)]
)
def test_split_spreads_the_fitting_records_evenly(fraction):
    fit = in_fitting_part(np.arange(1000), fraction)
    for n in (1, 2, 3, 10, 999, 1000):  # of the first n records, exactly ceil(nF) are fitted
        assert int(fit[:n].sum()) == math.ceil(n * fraction)
    gaps = np.diff(np.flatnonzero(fit))  # evenly: no two gaps differ by more than one
    assert gaps.max() - gaps.min() <= 1


def test_half_is_every_other_record_from_the_first():
    assert np.flatnonzero(in_fitting_part(np.arange(9), Fraction(1, 2))).tolist() == [0, 2, 4, 6, 8]


# --- the demo ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    data = logcal.io.load_demo()
    name_of_row = np.repeat(np.arange(len(data.names)), np.diff(data.offsets))
    s = logcal.token_stats(data.logits, data.targets)
    confidence = np.exp(s.max_logprob.astype(np.float64))
    correct = s.argmax == data.targets
    return data, name_of_row, confidence, correct


def test_demo_fits_a_temperature_on_every_other_name(capsys, demo):
    data, name_of_row, confidence, correct = demo
    report = run_json(capsys, "demo", "--no-plot", "--bootstrap", "0")
    summary = report["recalibration"]
    fit = name_of_row % 2 == 0
    want = fit_temperature(data.logits, data.targets, mask=fit)
    assert summary["method"] == "temperature" and summary["fit_fraction"] == 0.5
    assert summary["parameters"] == want.to_dict()
    assert summary["fit"] == {"records": 513, "n": int(fit.sum()), "first_records": [0, 2, 4]}
    assert summary["held_out"] == {
        "records": 512,
        "n": int((~fit).sum()),
        "first_records": [1, 3, 5],
    }
    tempered = want.token_stats(data.logits, data.targets)
    after = np.exp(tempered.max_logprob.astype(np.float64))
    held_out_metrics(confidence[~fit], after[~fit], correct[~fit], summary)
    assert summary["before"]["accuracy"] == summary["after"]["accuracy"]
    # the report of all the names is the one without recalibration
    assert report["n"] == 8842 and report["metrics"]["ece"]["value"] == logcal.ece(
        confidence, correct
    )


def test_demo_text_shows_the_temperature_and_the_change(capsys):
    assert main(["demo", "--no-plot", "--bootstrap", "30"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index(
        "Recalibration (temperature), fitted on 0.5 of the names and compared on the others:"
    )
    # the report comes first, as it was, and the recalibration after it
    assert lines[start - 2].startswith("  [0.933, 1.000)")
    assert lines[start + 1] == "  fitting part  names 0, 2, 4, ... (513 names, 4,462 predictions)"
    assert lines[start + 2] == "  held out      names 1, 3, 5, ... (512 names, 4,380 predictions)"
    assert lines[start + 3].startswith(
        "  fitted temperature T = 0.9647 (mean token NLL 2.1039 nats"
    )
    assert lines[start + 5].split() == ["held", "out", "before", "after", "change"]
    ece = lines[start + 7].split()
    assert ece[0] == "ECE" and ece[1] == "0.0334" and ece[4] == "0.0289" and ece[7] == "-0.0045"
    assert (
        lines[start + 12]
        == "  (15 equal-width bins; 95% bootstrap intervals, paired for the change)"
    )


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_demo_other_methods_on_the_top1_probabilities(capsys, demo, method):
    _, name_of_row, confidence, correct = demo
    summary = run_json(capsys, "demo", "--no-plot", "--bootstrap", "0", "--recalibrate", method)[
        "recalibration"
    ]
    fit = name_of_row % 2 == 0
    estimator = {"platt": PlattScaling, "isotonic": IsotonicCalibration}[method]()
    estimator.fit(confidence[fit], correct[fit])
    assert summary["parameters"] == estimator.to_dict()
    after = estimator.transform(confidence[~fit])
    held_out_metrics(confidence[~fit], after, correct[~fit], summary)


def test_demo_recalibrate_none_is_the_report_alone(capsys):
    assert main(["demo", "--no-plot", "--bootstrap", "0", "--recalibrate", "none"]) == 0
    assert "Recalibration" not in capsys.readouterr().out
    assert "recalibration" not in run_json(
        capsys, "demo", "--no-plot", "--bootstrap", "0", "--recalibrate", "none"
    )


def test_demo_fit_fraction_third(capsys, demo):
    data, name_of_row, _, _ = demo
    summary = run_json(capsys, "demo", "--no-plot", "--bootstrap", "0", "--fit-fraction", "1/3")[
        "recalibration"
    ]
    assert summary["fit_fraction"] == pytest.approx(1 / 3)
    assert summary["fit"]["records"] == math.ceil(1025 / 3)
    assert summary["fit"]["first_records"] == [0, 3, 6]
    assert summary["held_out"]["first_records"] == [1, 2, 4]
    fit = name_of_row % 3 == 0
    assert summary["parameters"] == fit_temperature(data.logits, data.targets, mask=fit).to_dict()


# --- report, token level ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_file():
    batch = logcal.io.read_logprobs(DEMO_FILE)
    confidence, correct = batch.top1_pairs()
    record = np.repeat(batch.record, np.diff(batch.offsets))  # every token has a top list
    assert record.size == confidence.size
    return confidence, correct, record


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_report_fits_on_every_other_record(capsys, demo_file, method):
    confidence, correct, record = demo_file
    report = run_json(capsys, "report", DEMO_FILE, "--recalibrate", method, "--bootstrap", "40")
    summary = report["recalibration"]
    fit = record % 2 == 0
    estimator = {"platt": PlattScaling, "isotonic": IsotonicCalibration}[method]()
    estimator.fit(confidence[fit], correct[fit])
    assert summary["parameters"] == estimator.to_dict()
    assert summary["records"] == "records" and summary["unit"] == "tokens"
    assert summary["fit"]["records"] + summary["held_out"]["records"] == 1025
    after = estimator.transform(confidence[~fit])
    held_out_metrics(confidence[~fit], after, correct[~fit], summary)
    # the intervals: each side's own, and the change's from the same (paired) resamples
    stats = {
        side: logcal.calibration_stats(c, correct[~fit], n_bins=15, n_bootstrap=40, seed=0)
        for side, c in (("before", confidence[~fit]), ("after", after))
    }
    for name in METRICS:
        for side in ("before", "after"):
            lo, hi = stats[side].interval(name)
            assert summary[side]["metrics"][name]["ci95"] == [lo, hi]
        paired = stats["after"].bootstrap(name) - stats["before"].bootstrap(name)
        want = np.nanquantile(paired, [0.025, 0.975]).tolist()
        assert summary["change"][name]["ci95"] == want
    assert set(summary) == {
        "method",
        "fit_fraction",
        "records",
        "unit",
        "fit",
        "held_out",
        "parameters",
        "before",
        "after",
        "change",
    }
    assert (
        set(summary["before"])
        == set(summary["after"])
        == {
            "n",
            "accuracy",
            "mean_confidence",
            "auroc",
            "bins",
            "bootstrap",
            "metrics",
            "reliability",
        }
    )


def test_report_split_is_deterministic_and_by_record(capsys, demo_file):
    _, _, record = demo_file
    argv = ("report", DEMO_FILE, "--recalibrate", "isotonic", "--fit-fraction", "0.3")
    first = run_json(capsys, *argv, "--bootstrap", "20")
    assert run_json(capsys, *argv, "--bootstrap", "20") == first
    summary = first["recalibration"]
    fit = in_fitting_part(record, Fraction(3, 10))
    # by record: a record's tokens are all in one part, so the parts' records add up
    assert summary["fit"]["records"] == np.unique(record[fit]).size == math.ceil(1025 * 0.3)
    assert summary["held_out"]["records"] == np.unique(record[~fit]).size
    assert summary["fit"]["records"] + summary["held_out"]["records"] == np.unique(record).size
    assert summary["fit"]["n"] == int(fit.sum())
    assert summary["fit"]["first_records"] == [0, 3, 6]  # then 10: ceil(3.3) > ceil(3)


def test_report_on_the_small_test_files(capsys):
    # openai_chat: records 0, 1, 2 (two choices), 4 (without top lists); records 0 and 2 fit
    summary = run_json(
        capsys, "report", str(DATA / "openai_chat.jsonl"), "--recalibrate", "isotonic"
    )["recalibration"]
    batch = logcal.io.read_logprobs(DATA / "openai_chat.jsonl")
    confidence, correct = batch.top1_pairs()
    per_token = np.repeat(batch.record, np.diff(batch.offsets))
    record = per_token[np.isfinite(batch.top_logprobs[:, 0])]
    fit = record % 2 == 0
    iso = IsotonicCalibration().fit(confidence[fit], correct[fit])
    assert summary["parameters"] == iso.to_dict()
    assert summary["fit"]["first_records"] == [0, 2]
    assert summary["held_out"] == {"records": 1, "n": int((~fit).sum()), "first_records": [1]}
    for name in ("vllm_completions.jsonl", "openai_completions.json"):
        summary = run_json(
            capsys, "report", str(DATA / name), "--recalibrate", "isotonic", "--bootstrap", "0"
        )["recalibration"]
        assert summary["fit"]["first_records"] == [0] and summary["held_out"]["first_records"] == [
            1
        ]


@pytest.mark.parametrize(
    ("name", "method", "message"),
    [
        (
            "gemini.json",
            "isotonic",
            "--fit-fraction 1/2 leaves the held-out part empty: the tokens come from 1 record, "
            "all in the fitting part; a split by record needs more records",
        ),
        (
            "openai_batch.jsonl",  # records 0 and 2 read, record 1 skipped: both fit
            "platt",
            "--fit-fraction 1/2 leaves the held-out part empty: the tokens come from 2 records, "
            "all in the fitting part; a split by record needs more records",
        ),
        (
            "vllm_token_ids.jsonl",
            "platt",
            "the fitting part (2 tokens of 1 record) holds only correct tokens: platt needs both "
            "outcomes to fit; more data, or another --fit-fraction, is needed",
        ),
        (
            "gemini_sdk.jsonl",
            "isotonic",
            "the fitting part (1 token of 1 record) holds only correct tokens: isotonic needs "
            "both outcomes to fit; more data, or another --fit-fraction, is needed",
        ),
        (
            "vllm_chat.jsonl",
            "platt",
            "cannot fit platt on the fitting part: PlattScaling: the features are collinear, "
            "the fit is not unique",
        ),
    ],
)
def test_report_refuses_a_split_it_cannot_fit_after_printing_the_report(
    capsys, name, method, message
):
    argv = ["report", str(DATA / name), "--recalibrate", method, "--bootstrap", "0"]
    out, last = refused(capsys, *argv, "--errors", "skip")
    assert last == f"logcal: error: {message}"
    assert "ECE (expected calibration error)" in out and "Recalibration" not in out
    out, last = refused(capsys, *argv, "--errors", "skip", "--json")
    report = json.loads(out)
    assert "recalibration" not in report and report["n"] > 0
    assert last == f"logcal: error: {message}"


def test_fitting_part_empty(capsys, tmp_path):
    # two records, the first without top lists: every pair is in record 1, held out
    lines = (DATA / "openai_chat.jsonl").read_text().splitlines()
    empty = json.loads(lines[0])
    for token in empty["choices"][0]["logprobs"]["content"]:
        token["top_logprobs"] = []
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps(empty) + "\n" + lines[1] + "\n")
    _, last = refused(capsys, "report", str(path), "--recalibrate", "isotonic", "--bootstrap", "0")
    assert last == (
        "logcal: error: --fit-fraction 1/2 leaves the fitting part empty: the tokens come from "
        "1 record, all in the held-out part; a split by record needs more records"
    )


# --- report, answer level -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def answers():
    batch = logcal.io.read_logprobs(DEMO_FILE)
    probability = np.exp(logcal.sequence_stats(batch.token_logprob, batch.offsets).sum)
    rng = np.random.default_rng(7)
    # right more often where the model is surer: the rank of its answer's probability
    rank = np.argsort(np.argsort(probability)) / probability.size
    labels = rng.random(probability.size) < 0.2 + 0.6 * rank
    return probability.astype(np.float64), labels, np.asarray(batch.record)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_report_with_labels_recalibrates_the_answers(capsys, tmp_path, answers, method):
    probability, labels, record = answers
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(labels.astype(int).tolist()))
    report = run_json(
        capsys, "report", DEMO_FILE, "--labels", str(path), "--recalibrate", method,
        "--bootstrap", "0",
    )  # fmt: skip
    summary = report["recalibration"]
    assert summary["unit"] == "answers" and summary["held_out"]["n"] == 512
    fit = record % 2 == 0
    estimator = {"platt": PlattScaling, "isotonic": IsotonicCalibration}[method]()
    estimator.fit(probability[fit], labels[fit])
    assert summary["parameters"] == estimator.to_dict()
    held_out_metrics(
        probability[~fit], estimator.transform(probability[~fit]), labels[~fit], summary
    )


# --- refusals and usage errors --------------------------------------------------------------------


def test_temperature_is_refused_on_logprob_files_before_reading(capsys, tmp_path):
    missing = str(tmp_path / "missing.jsonl")  # refused before the file is read
    _, last = refused(capsys, "report", missing, "--recalibrate", "temperature")
    assert last == (
        "logcal: error: --recalibrate temperature needs the model's logits: a logprob file lists "
        "only the top-k alternatives of each token, and a temperature renormalises over the "
        "whole vocabulary, which the file does not give; use --recalibrate platt or isotonic "
        "(they recalibrate the top-1 probabilities), or logcal.recalibration.fit_temperature "
        "on the logits"
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("1\n")
    _, last = refused(
        capsys, "report", missing, "--labels", str(labels), "--recalibrate", "temperature"
    )
    assert last == (
        "logcal: error: --recalibrate temperature is not defined for answers: an answer's "
        "probability is a product of token probabilities, each renormalised over the whole "
        "vocabulary at the temperature, which a logprob file does not give; use --recalibrate "
        "platt or isotonic on the answer probabilities"
    )


def test_unknown_method(capsys):
    assert usage_error(capsys, "report", DEMO_FILE, "--recalibrate", "beta") == (
        "logcal report: error: argument --recalibrate: unknown method 'beta'; "
        "choose temperature, platt or isotonic"
    )
    assert usage_error(capsys, "demo", "--recalibrate", "Platt") == (
        "logcal demo: error: argument --recalibrate: unknown method 'Platt'; "
        "choose temperature, platt, isotonic or none"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be strictly between 0 and 1, got 0"),
        ("1", "must be strictly between 0 and 1, got 1"),
        ("1.5", "must be strictly between 0 and 1, got 1.5"),
        ("-0.25", "must be strictly between 0 and 1, got -0.25"),
        ("half", "'half' is not a number"),
        ("nan", "'nan' is not a number"),
        ("1/0", "'1/0' is not a number"),
        ("0.1234567891", "0.1234567891 is too fine: give at most 9 decimals"),
    ],
)
def test_fit_fraction_outside_zero_one(capsys, value, message):
    got = usage_error(
        capsys, "report", DEMO_FILE, "--recalibrate", "platt", "--fit-fraction", value
    )
    assert got == f"logcal report: error: argument --fit-fraction: {message}"


def test_fit_fraction_needs_recalibrate(capsys):
    want = "logcal: error: --fit-fraction needs --recalibrate"
    assert usage_error(capsys, "report", DEMO_FILE, "--fit-fraction", "0.5") == want
    assert usage_error(capsys, "demo", "--recalibrate", "none", "--fit-fraction", "0.5") == want


def test_demo_temperature_without_a_minimum_is_refused_after_the_report(capsys, monkeypatch):
    # every target its row's argmax on the fitting names: the NLL falls all the way to T -> 0
    demo = logcal.io.load_demo()
    targets = demo.logits.argmax(axis=1)
    targets[demo.offsets[1]] = (targets[demo.offsets[1]] + 1) % 27  # name 1, held out
    monkeypatch.setattr(logcal.io, "load_demo", lambda: demo._replace(targets=targets))
    out, last = refused(capsys, "demo", "--no-plot", "--bootstrap", "0")
    assert last == (
        "logcal: error: cannot fit temperature on the fitting part: every target is its row's "
        "most likely token: the NLL decreases towards T = 0 and has no minimum"
    )
    assert "ECE (expected calibration error)" in out and "Recalibration" not in out


def test_without_bootstrap_no_intervals(capsys):
    summary = run_json(capsys, "demo", "--no-plot", "--bootstrap", "0")["recalibration"]
    assert all("ci95" not in entry for entry in summary["change"].values())
    assert all("ci95" not in e for e in summary["after"]["metrics"].values())


# --- the diagram --------------------------------------------------------------------------------

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the command saves, kept for inspection."""
    from matplotlib.figure import Figure

    saved = []
    savefig = Figure.savefig

    def keep(self, *args, **kwargs):
        saved.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def curves(fig) -> dict:
    return {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}


def test_report_plot_draws_both_curves(capsys, tmp_path, saved_figures, demo_file):
    confidence, correct, record = demo_file
    plot = tmp_path / "d.png"
    argv = ["report", DEMO_FILE, "--recalibrate", "platt", "--bootstrap", "0", "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"reliability diagram written to {plot}" in out
    assert "\n  fitted Platt map sigmoid(a logit(c) + b): a = " in out
    assert plot.stat().st_size > 10_000
    (fig,) = saved_figures
    lines = curves(fig)
    assert set(lines) == {"before", "after"}
    assert lines["before"].get_label() == "before: ECE 0.0334"
    assert lines["after"].get_label().startswith("after platt: ECE ")
    (ax,) = {line.axes for line in lines.values()}
    assert len(ax.get_lines()) == 3  # the two curves and the diagonal
    assert ax.get_title().startswith("held-out part, platt fitted on the rest\nECE 0.0334 -> ")
    # the curves are the held-out bins' (mean confidence, accuracy)
    held = record % 2 == 1
    platt = PlattScaling().fit(confidence[~held], correct[~held])
    after = logcal.calibration_stats(platt.transform(confidence[held]), correct[held], n_bins=15)
    filled = np.asarray(after.count) > 0
    np.testing.assert_array_equal(lines["after"].get_xdata(), after.mean_confidence[filled])
    np.testing.assert_array_equal(lines["after"].get_ydata(), after.accuracy[filled])
    # and the diagram of the whole file is beside them, as without --recalibrate
    bars = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "accuracy"]
    assert bars


def test_demo_plot_has_both_curves_and_without_recalibration_none(capsys, tmp_path, saved_figures):
    assert main(["demo", "--bootstrap", "0", "--plot", str(tmp_path / "a.png")]) == 0
    assert (
        main(
            ["demo", "--bootstrap", "0", "--plot", str(tmp_path / "b.png"), "--recalibrate", "none"]
        )
        == 0
    )
    with_curves, without = saved_figures
    assert set(curves(with_curves)) == {"before", "after"}
    assert curves(with_curves)["after"].get_label().startswith("after temperature: ECE 0.0289")
    assert curves(without) == {}
    assert len(without.axes) == 2  # the diagram and its histogram, as before


def test_recalibration_diagram_on_its_own():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 4000)
    correct = rng.random(4000) < conf**2
    iso = IsotonicCalibration().fit(conf, correct)
    before = logcal.calibration_stats(conf, correct, n_bins=10)
    after = logcal.calibration_stats(iso.transform(conf), correct, n_bins=10)
    fig = logcal.plot.recalibration_diagram(before, after, labels=("raw", "isotonic"), title="t")
    ax, ax_hist = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == [
        "perfect calibration",
        f"raw: ECE {before.ece():.4f}",
        f"isotonic: ECE {after.ece():.4f}",
    ]
    assert ax.get_title() == f"t\nECE {before.ece():.4f} -> {after.ece():.4f}"
    shares = {p.get_gid(): p for p in ax_hist.patches}
    np.testing.assert_allclose(shares["before"].get_data().values, before.count / before.n)
    np.testing.assert_allclose(shares["after"].get_data().values, after.count / after.n)
    plt.close(fig)


def test_report_over_two_files_numbers_records_through_them(capsys, tmp_path, demo_file):
    """The demo file cut in two: the records run on through the second file, so the split and
    the fit are those of the whole file, with one worker or two."""
    confidence, correct, record = demo_file
    lines = Path(DEMO_FILE).read_bytes().splitlines(keepends=True)
    cut = 401  # odd: numbering the second file from 0 again would swap its two parts
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[:cut]))
    (tmp_path / "b.jsonl").write_bytes(b"".join(lines[cut:]))
    argv = ("--recalibrate", "platt", "--bootstrap", "0")
    whole = run_json(capsys, "report", DEMO_FILE, *argv)["recalibration"]
    for workers in ("1", "2"):
        files = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
        parts = run_json(capsys, "report", *files, *argv, "--workers", workers)["recalibration"]
        assert parts == whole
    fit = record % 2 == 0
    assert whole["parameters"] == PlattScaling().fit(confidence[fit], correct[fit]).to_dict()
