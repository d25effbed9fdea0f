"""The ``logcal`` command.

- ``logcal demo``: a real character-level language model (shipped with the package) scored on
  1,025 real names: token statistics, the calibration of its next-character predictions, and
  the reliability diagram; then temperature scaling fitted on half of the names and compared
  on the other half.
- ``logcal report FILE [FILE ...]``: the same report for files of logprobs from a model API or
  server (OpenAI, vLLM, Gemini; JSON or JSONL of any size), read by this process, by local
  worker processes (``--workers``) or by a Dask cluster (``--scheduler``); ``--recalibrate
  METHOD`` adds a map fitted on part of the records and its before/after on the rest.
- ``logcal info``: how this installation was built.

Exit codes: 0 success, 1 bad input or an output that could not be written (one line on
stderr says why; the report is still printed where it was computed), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import __version__
from ._native import (
    MAX_THREADS,
    cpu,
    cuda_available,
    cuda_compiled,
    get_num_threads,
    set_num_threads,
)
from ._selective import selective
from ._sequence import sequence_stats
from ._token import token_stats
from .calibration import calibration_stats
from .calibration._state import MAX_REPLICATE_CELLS

_METRIC_ROWS = [
    ("ece", "ECE (expected calibration error)"),
    ("mce", "MCE (largest bin gap)"),
    ("rmsce", "RMSCE (root-mean-square gap)"),
    ("brier", "Brier score"),
    ("nll", "NLL (log loss, nats)"),
]


class InputError(Exception):
    """Bad input from the user: reported in one line, exit code 1."""


class OutputError(Exception):
    """An output that could not be written: reported in one line after the report, exit 1."""


# --- warnings: one line each, once -------------------------------------------------------------

_WEAK_BOOTSTRAP = re.compile(r"the bootstrap resampled only about (\d+) units")


def _one_line(message: str) -> str:
    """A warning as the command says it: on one line, in the command's terms."""
    text = " ".join(message.split())
    weak = _WEAK_BOOTSTRAP.match(text)
    if weak:
        # the library's advice (a smaller bootstrap_block) is no option of the command
        return (
            f"logcal: note: the bootstrap resampled only about {weak.group(1)} units of the "
            f"data; its intervals are unreliable (more data helps; --bootstrap 0 leaves them out)"
        )
    return f"logcal: warning: {text.removeprefix('read_logprobs ')}"


@contextmanager
def _warnings_as_notes() -> Iterator[None]:
    """Warnings printed on stderr as they come, one line each and each once, without the
    file and line of the code that gave them."""
    said: set = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = _one_line(str(message))
        if text not in said:
            said.add(text)
            print(text, file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


# --- the calibration report shared by `demo` and `report` ---------------------------------------


def _calibration_report(confidence, correct, *, bins: int, bootstrap: int, seed: int) -> tuple:
    stats = calibration_stats(confidence, correct, n_bins=bins, n_bootstrap=bootstrap, seed=seed)
    auroc = selective(confidence, correct).auroc
    return stats, _calibration_table(stats, auroc, bins, bootstrap)


def _calibration_table(stats, auroc: float, bins: int, bootstrap: int) -> dict:
    report: dict[str, Any] = {
        "n": int(stats.n),
        "accuracy": float(np.sum(stats.sum_correct) / stats.n),
        "mean_confidence": float(np.sum(stats.sum_confidence) / stats.n),
        "auroc": None if np.isnan(auroc) else float(auroc),
        "bins": bins,
        "bootstrap": bootstrap,
        "metrics": {},
    }
    for name, _ in _METRIC_ROWS:
        entry = {"value": float(stats.metric(name))}
        if bootstrap:
            lo, hi = stats.interval(name)
            entry["ci95"] = [float(lo), float(hi)]
        report["metrics"][name] = entry
    report["reliability"] = [
        {
            "lower": float(stats.edges[i]),
            "upper": float(stats.edges[i + 1]),
            "count": int(stats.count[i]),
            "mean_confidence": float(stats.mean_confidence[i]),
            "accuracy": float(stats.accuracy[i]),
        }
        for i in range(stats.n_bins)
        if stats.count[i] > 0
    ]
    return report


def _print_report(report: dict) -> None:
    gap = report["mean_confidence"] - report["accuracy"]
    print(f"  {'predictions':34s} {report['n']:>10,d}")
    print(f"  {'accuracy':34s} {report['accuracy']:>10.4f}")
    print(
        f"  {'mean confidence':34s} {report['mean_confidence']:>10.4f}   "
        f"({'over' if gap > 0 else 'under'}confident by {abs(gap):.4f})"
    )
    ci = " 95% bootstrap interval" if report["bootstrap"] else ""
    for name, label in _METRIC_ROWS:
        entry = report["metrics"][name]
        line = f"  {label:34s} {entry['value']:>10.4f}"
        if "ci95" in entry:
            line += f"   [{entry['ci95'][0]:.4f}, {entry['ci95'][1]:.4f}]"
        print(line)
    if report["auroc"] is not None:
        print(f"  {'AUROC (confidence vs correctness)':34s} {report['auroc']:>10.4f}")
    print(f"  ({report['bins']} equal-width bins{';' + ci if ci else ''})")
    print()
    print(f"  {'bin':>13s} {'count':>9s} {'confidence':>11s} {'accuracy':>9s}")
    for row in report["reliability"]:
        print(
            f"  [{row['lower']:.3f}, {row['upper']:.3f}) {row['count']:>9,d} "
            f"{row['mean_confidence']:>11.4f} {row['accuracy']:>9.4f}"
        )


def _plot_path(path: str) -> Path:
    """Where the diagram is written: a name without a suffix gets ``.png``, as matplotlib
    would give it (and then the name said is the name written)."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(
            f"cannot write the reliability diagram to {path}: it is a directory; give a file "
            f"name, such as {target / 'reliability.png'}"
        )
    return target if target.suffix else target.with_name(target.name + ".png")


def _write_plot(
    stats, path: str, what: str, asked: bool, recalibration: _Recalibration | None = None
) -> str | None:
    """Draw the reliability diagram to ``path``; the path written. Without matplotlib a
    diagram the user asked for is an error, the demo's default one a note (None). With a
    recalibration, its before/after curves are drawn beside the diagram."""
    target = _plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plot import recalibration_diagram, reliability_diagram
    except ImportError:
        if asked:
            raise OutputError(
                "cannot draw the reliability diagram: matplotlib is not installed "
                "(pip install 'logcal[plot]')"
            ) from None
        return None
    if recalibration is None:
        fig = reliability_diagram(stats, title=what)
    else:
        fig, (ax_all, ax_recalibrated) = plt.subplots(1, 2, figsize=(10.5, 4.5))
        fig.subplots_adjust(wspace=0.3)
        reliability_diagram(stats, ax=ax_all, title=what)
        recalibration_diagram(
            recalibration.before,
            recalibration.after,
            ax=ax_recalibrated,
            labels=("before", f"after {recalibration.summary['method']}"),
            title=f"held-out part, {recalibration.summary['method']} fitted on the rest",
        )
    try:
        fig.savefig(target, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise OutputError(
            f"cannot write the reliability diagram to {target}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:  # a suffix matplotlib has no format for
        raise OutputError(
            f"cannot write the reliability diagram to {target}: {' '.join(str(exc).split())}"
        ) from None
    finally:
        plt.close(fig)
    return str(target)


def _finish(
    report: dict,
    stats,
    args: argparse.Namespace,
    what: str,
    recalibrate: Callable[[], _Recalibration] | None = None,
) -> int:
    """Print the report (and the before/after of ``recalibrate``, when given) and write the
    diagram; 1 if the recalibration was refused or the diagram could not be written (the
    report is printed all the same)."""
    asked = args.plot is not None
    path = args.plot if asked else getattr(args, "default_plot", None)
    if args.no_plot:
        path = None
    written = recalibration = None
    plotted = False  # the diagram written, or skipped for want of matplotlib
    problems = []
    if recalibrate is not None:
        try:
            recalibration = recalibrate()
        except InputError as exc:
            problems.append(str(exc))
    if path is not None:
        try:
            written = _write_plot(stats, path, what, asked, recalibration)
            plotted = True
        except OutputError as exc:
            problems.append(str(exc))
    if args.json:
        if recalibration is not None:
            report["recalibration"] = recalibration.summary
        if path is not None:
            report["plot"] = written
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
        if recalibration is not None:
            print()
            _print_recalibration(recalibration.summary)
        if plotted:
            print()
            print(
                f"reliability diagram written to {written}"
                if written
                else "reliability diagram skipped: matplotlib is not installed "
                "(pip install 'logcal[plot]')"
            )
    for problem in problems:
        print(f"logcal: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


# --- demo ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .io import load_demo

    data = load_demo()
    logits, targets, offsets, names = data.logits, data.targets, data.offsets, data.names
    token_stats(logits, targets)  # warm up: first-touch page faults, thread start
    t0 = time.perf_counter()
    s = token_stats(logits, targets, top_k=3)
    seq = sequence_stats(s.target_logprob, offsets)
    elapsed = time.perf_counter() - t0
    confidence = np.exp(s.max_logprob.astype(np.float64))
    correct = s.argmax == targets

    if not args.json:
        print(
            f"logcal {__version__} demo: a character-level language model (pokepy-generator, "
            f"MIT) reads {len(names):,} real names, {targets.size:,} characters; at each one "
            f"it predicts the next."
        )
        print()
        mean_lp = float(np.mean(s.target_logprob))
        print(f"  mean log p(next char)  {mean_lp:8.3f} nats   (uniform guess: {-np.log(27):.3f})")
        print(f"  perplexity per char    {np.exp(-mean_lp):8.3f}")
        print(f"  mean entropy           {float(np.mean(s.entropy)):8.3f} nats")
        print(f"  next char in top-3     {np.mean((s.topk_ids == targets[:, None]).any(1)):8.3f}")
        order = np.argsort(seq.mean)
        print("  names the model finds most and least likely (mean log p per char):")
        for i in [*order[::-1][:3], *order[:3]]:
            print(f"    {names[i]:14s} {float(seq.mean[i]):7.3f}")
        print()
        print(
            f"Calibration of its top-1 next-character predictions (token_stats and "
            f"sequence_stats took {elapsed * 1e3:.1f} ms):"
        )
    stats, report = _calibration_report(
        confidence, correct, bins=args.bins, bootstrap=args.bootstrap, seed=args.seed
    )
    recalibrate = None
    if args.recalibrate != "none":

        def recalibrate() -> _Recalibration:
            # a name is a record: its characters stay together in one part
            name_of_row = np.repeat(np.arange(len(names)), np.diff(offsets))
            split = _Split(name_of_row, args.fit_fraction, records="names", unit="predictions")
            if args.recalibrate == "temperature":
                return _recalibrate_logits(logits, targets, split, args)
            return _recalibrate_confidences(confidence, correct, split, args)

    return _finish(report, stats, args, "pokepy next-character predictions", recalibrate)


# --- report ------------------------------------------------------------------------------------


def _read_labels(path: str, n: int) -> np.ndarray:
    text = Path(path).read_text()
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = text.split()
    try:
        labels = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"{path}: labels must be numbers 0 or 1 (a JSON list or one per line)"
        ) from None
    if labels.ndim != 1 or labels.size != n:
        raise InputError(f"{path}: {labels.size} labels for {n} generated sequences")
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{path}: label {i} is {values[i]!r}, expected 0 or 1")
    return labels.astype(bool)


def _report(args: argparse.Namespace) -> int:
    if args.recalibrate == "temperature":  # refused before the files are read
        raise InputError(_NO_TEMPERATURE_ANSWERS if args.labels else _NO_TEMPERATURE_TOKENS)
    if args.labels:
        return _report_answers(args)
    # Token level: the probability of the top-1 alternative, and whether it is the token that
    # was actually produced (teacher-forced prompt tokens and sampled tokens alike).
    files = _input_files(args)
    read = _read_inputs(args, files)
    source, totals = _source(files), _totals(files, read.summaries)
    if totals["n_tokens"] == 0:
        raise InputError(f"{source}: no tokens with log-probabilities")
    if totals["k"] == 0:
        raise InputError(
            f"{source}: no top_logprobs to calibrate; request them from the API "
            "(top_logprobs / logprobs=k), or pass --labels for answer-level calibration"
        )
    acc = read.state if read.state is not None else _settings(args).accumulator()
    if not args.json:
        _print_source(source, totals)
        print(f"Calibration of {acc.n:,} tokens: top-1 probability vs the token produced:")
    stats = acc.compute()
    report = _calibration_table(stats, read.ranks.auroc(), args.bins, args.bootstrap)
    report["source"] = _source_entry(files, totals)
    return _finish(report, stats, args, _title(files), _recalibration(args, files))


def _report_answers(args: argparse.Namespace) -> int:
    """Sequence level: the model's probability of each generated answer, against the labels."""

    def labels_for(summaries: list) -> np.ndarray:
        if _totals(files, summaries)["n_tokens"] == 0:
            raise InputError(f"{_source(files)}: no tokens with log-probabilities")
        return _read_labels(args.labels, sum(s.n_pairs for s in summaries))

    files = _input_files(args)
    read = _read_inputs(args, files, labels_for)
    source, totals = _source(files), _totals(files, read.summaries)
    n = sum(s.n_pairs for s in read.summaries)
    if read.state is None:  # no answers: the one-shot call's error
        calibration_stats(np.empty(0), np.empty(0, bool), n_bins=args.bins)
    what = f"{n:,} answers: probability of the answer vs its label"
    if not args.json:
        _print_source(source, totals)
        print(f"Calibration of {what}:")
    stats = read.state
    report = _calibration_table(stats, read.ranks.auroc(), args.bins, args.bootstrap)
    report["source"] = _source_entry(files, totals)
    return _finish(report, stats, args, _title(files), _recalibration(args, files))


# --- report: its inputs, read by this process, local processes or a Dask cluster -------------

# How long --scheduler waits for the scheduler to answer.
_CONNECT_TIMEOUT_S = 10


def _settings(args: argparse.Namespace) -> Any:
    from ._logprob_parts import Settings

    return Settings(
        format=args.format,
        errors=args.errors,
        answers=bool(args.labels),
        n_bins=args.bins,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
    )


# --- recalibration: a map fitted on one part of the records, compared on the other -----------

_NO_TEMPERATURE_TOKENS = (
    "--recalibrate temperature needs the model's logits: a logprob file lists only the top-k "
    "alternatives of each token, and a temperature renormalises over the whole vocabulary, "
    "which the file does not give; use --recalibrate platt or isotonic (they recalibrate the "
    "top-1 probabilities), or logcal.recalibration.fit_temperature on the logits"
)
_NO_TEMPERATURE_ANSWERS = (
    "--recalibrate temperature is not defined for answers: an answer's probability is a "
    "product of token probabilities, each renormalised over the whole vocabulary at the "
    "temperature, which a logprob file does not give; use --recalibrate platt or isotonic "
    "on the answer probabilities"
)


def _fit_fraction(text: str) -> Fraction:
    """``--fit-fraction``: a decimal or a ratio (``0.5``, ``1/3``), kept exact."""
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    if value.denominator >= 2**31:
        raise argparse.ArgumentTypeError(f"{text} is too fine: give at most 9 decimals")
    return value


def _method_type(methods: tuple) -> Any:
    """``--recalibrate``'s argument type: one of ``methods``, or a message listing them."""

    def method(text: str) -> str:
        if text not in methods:
            raise argparse.ArgumentTypeError(
                f"unknown method {text!r}; choose {', '.join(methods[:-1])} or {methods[-1]}"
            )
        return text

    return method


def in_fitting_part(record: np.ndarray, fraction: Fraction) -> np.ndarray:
    """Whether each record goes to the fitting part: record ``r`` does when
    ``ceil((r + 1) F) > ceil(r F)``.

    The fitting records are spread evenly through the file -- the first, then one every
    ``1/F`` -- so a file sorted by topic or by time puts every stretch in both parts in
    proportion (the first ``F`` of the records would fit on some topics and test on others).
    Of the first ``R`` records, exactly ``ceil(R F)`` are fitting records. Computed in exact
    integers: with ``F = p/q``, ``r`` fits when ``((r mod q) p - 1) mod q + p >= q``.

    >>> import numpy as np
    >>> from fractions import Fraction
    >>> np.flatnonzero(in_fitting_part(np.arange(10), Fraction(1, 2)))
    array([0, 2, 4, 6, 8])
    >>> np.flatnonzero(in_fitting_part(np.arange(10), Fraction(2, 3)))
    array([0, 1, 3, 4, 6, 7, 9])
    """
    p, q = fraction.numerator, fraction.denominator  # q < 2**31: the products fit in int64
    r = np.asarray(record, dtype=np.int64) % q
    return (r * p - 1) % q + p >= q


class _Split:
    """The split of predictions into the fitting part and the held-out part, by record.

    ``records`` names a record in messages (``"records"``, ``"names"``), ``unit`` a prediction
    (``"tokens"``, ``"answers"``).
    """

    def __init__(self, record: np.ndarray, fraction: Fraction, *, records: str, unit: str):
        self.record = np.asarray(record, dtype=np.int64)
        if self.record.size == 0:
            raise InputError(f"no {unit} to recalibrate")
        self.fraction, self.records, self.unit = fraction, records, unit
        self.fit = in_fitting_part(self.record, fraction)
        for part, rows, empty in (
            ("fitting", self.fit, "held-out"),
            ("held-out", ~self.fit, "fitting"),
        ):
            if rows.all():
                n = np.unique(self.record).size
                raise InputError(
                    f"--fit-fraction {fraction} leaves the {empty} part empty: the {unit} come "
                    f"from {_count(n, records)}, all in the {part} part; a split by record "
                    f"needs more {records}"
                )

    def part(self, rows: np.ndarray) -> dict:
        """The records and predictions of one part, for the report."""
        records = np.unique(self.record[rows])
        return {
            "records": int(records.size),
            "n": int(np.count_nonzero(rows)),
            "first_records": records[:3].tolist(),
        }

    def check_fittable(self, correct: np.ndarray, method: str) -> None:
        """Refuses a fitting part with one outcome only: no map of confidences can fit it."""
        outcomes = correct[self.fit]
        if outcomes.all() or not outcomes.any():
            part = self.part(self.fit)
            which = "correct" if outcomes.all() else "incorrect"
            raise InputError(
                f"the fitting part ({_count(part['n'], self.unit)} of "
                f"{_count(part['records'], self.records)}) holds only {which} {self.unit}: "
                f"{method} needs both outcomes to fit; more data, or another --fit-fraction, "
                "is needed"
            )


class _KeptPairs:
    """The (confidence, correct) pairs of a stream and the record of each, kept in memory
    (17 bytes a pair) for a recalibration's split."""

    def __init__(self) -> None:
        self.chunks: list = []

    def add(self, confidence: np.ndarray, correct: np.ndarray, record: np.ndarray) -> None:
        self.chunks.append((confidence, correct, record))

    def arrays(self) -> tuple:
        return tuple(np.concatenate(column) for column in zip(*self.chunks))


def _recalibration(args: argparse.Namespace, files: list[str]) -> Callable | None:
    """With ``--recalibrate``, the function that makes the report's recalibration section.

    The split needs each pair's record, which the parts' states do not keep: the pairs are
    read again, here, in this process (a second pass over the files, held in memory at 17
    bytes a pair), the records numbered through the files in the order given.
    """
    if not args.recalibrate:
        return None

    def recalibrate() -> _Recalibration:
        from ._logprob_parts import READ_CHUNK, _answers
        from .io import read_logprobs

        kept, first = _KeptPairs(), 0
        for path in files:
            last = -1  # the file's last record, read or skipped
            for batch in read_logprobs(
                path, format=args.format, errors=args.errors, chunk_tokens=READ_CHUNK
            ):
                records = np.asarray(batch.record)
                skipped = np.asarray(batch.skipped_records)
                last = max(last, int(records.max(initial=-1)), int(skipped.max(initial=-1)))
                if args.labels:  # correct: placeholders until the labels are read
                    pairs = _answers(batch)
                    record = records[np.asarray(batch.choice) >= 0]
                else:
                    pairs, record = batch.top1_pairs(), _top1_records(batch)
                kept.add(*pairs, record + first)
            first += last + 1
        confidence, correct, record = kept.arrays()
        if args.labels:
            correct = _read_labels(args.labels, confidence.size)
        unit = "answers" if args.labels else "tokens"
        split = _Split(record, args.fit_fraction, records="records", unit=unit)
        return _recalibrate_confidences(confidence, correct, split, args)

    return recalibrate


def _top1_records(batch) -> np.ndarray:
    """The record of each pair ``batch.top1_pairs()`` gives: of the tokens it keeps, those
    with a top-1 alternative."""
    per_token = np.repeat(np.asarray(batch.record), np.diff(batch.offsets))
    return per_token[np.isfinite(batch.top_logprobs[:, 0])]


class _Recalibration(NamedTuple):
    """A recalibration's report section (``summary``, JSON-ready) and the held-out part's
    statistics before and after it, for the diagram."""

    summary: dict
    before: Any
    after: Any


def _recalibrate_confidences(
    confidence: np.ndarray, correct: np.ndarray, split: _Split, args: argparse.Namespace
) -> _Recalibration:
    """Platt scaling or isotonic regression fitted on the fitting part's confidences."""
    from .recalibration import IsotonicCalibration, PlattScaling

    split.check_fittable(correct, args.recalibrate)
    estimator = {"platt": PlattScaling, "isotonic": IsotonicCalibration}[args.recalibrate]()
    try:
        estimator.fit(confidence[split.fit], correct[split.fit])
    except ValueError as exc:
        raise InputError(f"cannot fit {args.recalibrate} on the fitting part: {exc}") from None
    held = ~split.fit
    after = estimator.transform(confidence[held])
    return _compare(split, estimator.to_dict(), confidence[held], after, correct[held], args)


def _recalibrate_logits(
    logits: np.ndarray, targets: np.ndarray, split: _Split, args: argparse.Namespace
) -> _Recalibration:
    """Temperature scaling fitted on the fitting part's logits (rows masked, not copied)."""
    from .recalibration import fit_temperature

    before = token_stats(logits, targets)
    correct = before.argmax == targets
    try:
        fitted = fit_temperature(logits, targets, mask=split.fit)
    except (ValueError, RuntimeError) as exc:  # e.g. no minimum: every target its row's argmax
        raise InputError(f"cannot fit temperature on the fitting part: {exc}") from None
    after = fitted.token_stats(logits, targets)
    held = ~split.fit
    # the top-1 token is the same at every temperature, so correctness is unchanged
    return _compare(
        split,
        fitted.to_dict(),
        np.exp(before.max_logprob.astype(np.float64))[held],
        np.exp(after.max_logprob.astype(np.float64))[held],
        correct[held],
        args,
    )


def _compare(
    split: _Split,
    parameters: dict,
    before: np.ndarray,
    after: np.ndarray,
    correct: np.ndarray,
    args: argparse.Namespace,
) -> _Recalibration:
    """The held-out part's report before and after, and the change in each metric.

    Both sets of statistics resample the same samples with the same seed, so their bootstrap
    replicates are paired: the change's interval is that of the replicates' differences.
    """
    options = {"bins": args.bins, "bootstrap": args.bootstrap, "seed": args.seed}
    stats_before, table_before = _calibration_report(before, correct, **options)
    stats_after, table_after = _calibration_report(after, correct, **options)
    change = {}
    for name, _ in _METRIC_ROWS:
        entry = {"value": float(stats_after.metric(name) - stats_before.metric(name))}
        if args.bootstrap:
            paired = stats_after.bootstrap(name) - stats_before.bootstrap(name)
            lo, hi = np.nanquantile(paired, [0.025, 0.975])
            entry["ci95"] = [float(lo), float(hi)]
        change[name] = entry
    summary = {
        "method": args.recalibrate,
        "fit_fraction": float(split.fraction),
        "records": split.records,
        "unit": split.unit,
        "fit": split.part(split.fit),
        "held_out": split.part(~split.fit),
        "parameters": parameters,
        "before": table_before,
        "after": table_after,
        "change": change,
    }
    return _Recalibration(summary, stats_before, stats_after)


def _count(n: int, plural: str) -> str:
    """``"1 record"``, ``"2 records"``."""
    return f"{n:,} {plural[:-1] if n == 1 else plural}"


def _describe_parameters(parameters: dict) -> str:
    method = parameters["method"]
    if method == "temperature":
        return (
            f"fitted temperature T = {parameters['temperature']:.4f} (mean token NLL "
            f"{parameters['nll']:.4f} nats on the fitting part; {parameters['n_passes']} "
            "token passes)"
        )
    if method == "platt":
        return (
            f"fitted Platt map sigmoid(a logit(c) + b): a = {parameters['coef']:.4f}, "
            f"b = {parameters['intercept']:.4f}"
        )
    x = parameters["x"]
    return (
        f"fitted isotonic map: non-decreasing, piecewise linear through {len(x):,} points "
        f"from confidence {x[0]:.4f} to {x[-1]:.4f}"
    )


_RECALIBRATION_ROWS = [
    ("ece", "ECE"),
    ("mce", "MCE"),
    ("rmsce", "RMSCE"),
    ("brier", "Brier score"),
    ("nll", "NLL (log loss)"),
]


def _print_recalibration(summary: dict) -> None:
    records, unit = summary["records"], summary["unit"]
    print(
        f"Recalibration ({summary['method']}), fitted on {summary['fit_fraction']:g} of the "
        f"{records} and compared on the others:"
    )
    for label, part in (("fitting part", summary["fit"]), ("held out", summary["held_out"])):
        first = ", ".join(str(r) for r in part["first_records"])
        more = ", ..." if part["records"] > len(part["first_records"]) else ""
        print(
            f"  {label:13s} {records} {first}{more} ({_count(part['records'], records)}, "
            f"{_count(part['n'], unit)})"
        )
    print(f"  {_describe_parameters(summary['parameters'])}")
    print()
    before, after, change = summary["before"], summary["after"], summary["change"]

    def cell(entry: dict, sign: str = "") -> str:
        text = f"{entry['value']:{sign}.4f}"
        if "ci95" in entry:
            lo, hi = entry["ci95"]
            text += f" [{lo:{sign}.4f}, {hi:{sign}.4f}]"
        return text

    rows = [("held out", "before", "after", "change")]
    rows.append(
        (
            "mean confidence",
            *(cell({"value": part["mean_confidence"]}) for part in (before, after)),
            cell({"value": after["mean_confidence"] - before["mean_confidence"]}, "+"),
        )
    )
    for name, label in _RECALIBRATION_ROWS:
        rows.append(
            (
                label,
                cell(before["metrics"][name]),
                cell(after["metrics"][name]),
                cell(change[name], "+"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "   ".join(f"{text:{width}s}" for text, width in zip(row, widths)).rstrip())
    bins = f"{before['bins']} equal-width bins"
    print(
        f"  ({bins}; 95% bootstrap intervals, paired for the change)"
        if before["bootstrap"]
        else f"  ({bins})"
    )


def _input_files(args: argparse.Namespace) -> list[str]:
    """The files named on the command line, globs expanded (sorted, in the order given)."""
    from ._logprob_parts import input_files

    try:
        return input_files(args.files, "logcal report")
    except FileNotFoundError as exc:  # a glob that matches nothing
        raise InputError(str(exc).removeprefix("logcal report: ")) from None


def _read_inputs(args: argparse.Namespace, files: list[str], labels_for: Any = None) -> Any:
    """The files' parts read and merged (:func:`logcal._logprob_parts.calibrate`) here, by
    ``--workers`` local processes (large JSONL files cut into byte ranges) or on the Dask
    cluster of ``--scheduler``: only the parts' counts and states come back."""
    from . import _logprob_parts as parts
    from .io._parallel import _MAX_RANGE, _MIN_RANGE

    settings = _settings(args)
    if args.scheduler is not None:
        with _dask_client(args.scheduler) as client:
            from .dask import _ClientEngine

            workers = max(1, sum(client.nthreads().values()))
            step = parts.range_step(files, 8 * workers, _MIN_RANGE, _MAX_RANGE)
            cut = parts.split(files, settings, step)
            engine = _ClientEngine(client, cut, settings, workers)
            return parts.calibrate(files, cut, settings, engine, labels_for)
    if args.workers > 1:
        step = parts.range_step(files, 8 * args.workers, _MIN_RANGE, _MAX_RANGE)
        cut = parts.split(files, settings, step)
        engine = parts.LocalProcesses(cut, settings, min(args.workers, len(cut)))
    else:
        cut = parts.split(files, settings, None)
        engine = parts.InProcess(cut, settings)
    return parts.calibrate(files, cut, settings, engine, labels_for)


def _dask_client(address: str) -> Any:
    """A client of the Dask scheduler at ``address``; InputError saying why there is none."""
    try:
        from dask.distributed import Client
        from distributed.comm import connect
    except ImportError:
        raise InputError(
            f"--scheduler {address}: dask.distributed is not installed (pip install 'logcal[dask]')"
        ) from None

    async def reach() -> None:
        comm = await connect(address, timeout=_CONNECT_TIMEOUT_S)
        await comm.close()

    # A connection tried first: a Client that fails to connect waits again, for its own
    # timeout, when it is collected.
    try:
        asyncio.run(reach())
    except Exception as exc:  # whatever the address or the peer did: said in one line
        raise InputError(
            f"cannot connect to the Dask scheduler at {address}: {' '.join(str(exc).split())}"
        ) from None
    return Client(address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False)


def _totals(files: list[str], summaries: list) -> dict:
    """What the report says of its inputs: sequences, tokens, records skipped, the widest top
    list, and the format(s) of the files in order."""
    from ._logprob_parts import file_format

    formats = []
    for index in range(len(files)):
        fmt = file_format([s for s in summaries if s.file == index])
        if fmt is not None and fmt not in formats:
            formats.append(fmt)
    return {
        "n_sequences": sum(s.n_sequences for s in summaries),
        "n_tokens": sum(s.n_tokens for s in summaries),
        "skipped": sum(s.skipped for s in summaries),
        "k": max((s.k for s in summaries), default=0),
        "format": ", ".join(formats) if formats else None,
    }


def _source(files: list[str]) -> str:
    """The inputs as messages name them."""
    return files[0] if len(files) == 1 else f"{len(files)} files ({files[0]} ... {files[-1]})"


def _title(files: list[str]) -> str:
    """The inputs as the diagram's title names them."""
    return Path(files[0]).name if len(files) == 1 else f"{len(files)} files"


def _print_source(source: str, totals: dict) -> None:
    skipped = totals["skipped"]
    print(
        f"logcal {__version__} report: {source} ({totals['format']}, "
        f"{totals['n_sequences']:,} sequences, {totals['n_tokens']:,} tokens"
        f"{f', {skipped} records skipped' if skipped else ''})"
    )


def _source_entry(files: list[str], totals: dict) -> dict:
    """The report's ``source``: ``file`` for one, ``files`` for several."""
    where = {"file": files[0]} if len(files) == 1 else {"files": files}
    return {**where, "format": totals["format"], "skipped": totals["skipped"]}


# --- info --------------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    print(f"logcal {__version__}")
    print(
        f"CPU kernels: {cpu.isa()} (best on this CPU: {cpu.best_isa()}), "
        f"{get_num_threads()} threads"
    )
    print(f"CUDA module compiled: {cuda_compiled()}; CUDA device usable: {cuda_available()}")
    return 0


# --- the command line ----------------------------------------------------------------------------


def _add_report_options(p: argparse.ArgumentParser, default_plot: str | None) -> None:
    p.set_defaults(default_plot=default_plot, no_plot=False)
    p.add_argument("--bins", type=int, default=15, help="equal-width confidence bins (default 15)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="bootstrap replicates for the 95%% intervals, 0 for none (default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write the reliability diagram here (.png added to a name without a suffix)"
        + (f" (default {default_plot})" if default_plot else ""),
    )
    if default_plot:
        p.add_argument("--no-plot", action="store_true", help="do not draw the diagram")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


RECALIBRATION_METHODS = ("temperature", "platt", "isotonic")


def _add_recalibrate_options(
    p: argparse.ArgumentParser, *, methods: tuple, default: str | None, help: str
) -> None:
    p.add_argument(
        "--recalibrate",
        metavar="METHOD",
        type=_method_type(methods),
        default=default,
        help=help,
    )
    p.add_argument(
        "--fit-fraction",
        metavar="F",
        type=_fit_fraction,
        default=None,
        help="share of the records the map is fitted on, in (0, 1), a decimal or a ratio "
        "such as 1/3 (default 1/2). The records are spread evenly, not taken from the start: "
        "record r (0-based, in file order; a name in the demo) is fitted on when "
        "ceil((r+1)F) > ceil(rF) -- for 1/2 records 0, 2, 4, ..., for 1/3 records 0, 3, "
        "6, ... -- so a file sorted by topic or time has every stretch in both parts. All the "
        "predictions of a record stay in one part (samples of one prompt written on separate "
        "lines are separate records)",
    )


def _threads_option(default: Any) -> argparse.ArgumentParser:
    """``--threads``, before the command or after it: the subcommands' copy has no default,
    so that it leaves a value given before the command as it is."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--threads",
        type=int,
        default=default,
        help="CPU threads for the kernels (default: all CPUs available)",
    )
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logcal",
        description="Confidence and calibration statistics for language models.",
        epilog="Exit codes: 0 success, 1 bad input or an output not written, 2 usage error.",
        parents=[_threads_option(0)],
    )
    parser.add_argument("--version", action="version", version=f"logcal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    threads = _threads_option(argparse.SUPPRESS)

    demo = sub.add_parser(
        "demo",
        parents=[threads],
        help="report on a real model's predictions shipped with logcal",
        description="Score the next-character predictions of a small real "
        "language model on 1,025 names: token statistics, calibration "
        "metrics with bootstrap intervals, and the reliability diagram.",
    )
    _add_report_options(demo, "logcal-demo.png")
    _add_recalibrate_options(
        demo,
        methods=(*RECALIBRATION_METHODS, "none"),
        default="temperature",
        help="after the report, fit this map on every other name (see --fit-fraction) and "
        "show its before/after on the others: temperature (the default; on the logits), "
        "platt or isotonic (on the top-1 probabilities), or none",
    )
    demo.set_defaults(run=_demo)

    report = sub.add_parser(
        "report",
        parents=[threads],
        help="calibration report of logprob files",
        description="Calibration report of files of logprobs (OpenAI chat "
        "or completions, vLLM, Gemini; JSON or JSONL, .gz too), taken in the "
        "order given as one stream. Without "
        "--labels: token level, the top-1 alternative's probability against "
        "whether it is the token produced. With --labels: answer level, the "
        "probability of each generated sequence against its 0/1 label.",
    )
    report.add_argument(
        "files",
        nargs="+",
        metavar="file",
        help="JSON or JSONL files of API or server responses; a quoted glob "
        "('logs/*.jsonl') is expanded in sorted order",
    )
    report.add_argument(
        "--format",
        default="auto",
        help="openai_chat, openai_completions, vllm_chat, vllm_completions, "
        "gemini, or auto (default)",
    )
    report.add_argument(
        "--labels",
        metavar="FILE",
        help="0/1 per generated sequence, in order (of all the files; JSON list or one per line)",
    )
    report.add_argument(
        "--errors",
        choices=["raise", "skip"],
        default="raise",
        help="malformed records: stop (default) or skip and count them",
    )
    report.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local processes reading the files (large JSONL files in byte ranges) at once; "
        "only their counts and calibration states come back, and the report is the same "
        "(default 1)",
    )
    report.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="read the files on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786; its workers must see the files at the same paths; needs "
        "logcal[dask]); the report is the same",
    )
    _add_report_options(report, None)
    _add_recalibrate_options(
        report,
        methods=RECALIBRATION_METHODS,
        default=None,
        help="after the report, fit a recalibration map on part of the records "
        "(--fit-fraction) and show its before/after on the rest, with the diagram's curves: "
        "platt (sigmoid(a logit(c) + b)) or isotonic, on the top-1 probabilities, or with "
        "--labels on the answer probabilities. temperature is refused: a logprob file lists "
        "only the top-k alternatives, and a temperature renormalises over the whole "
        "vocabulary (fit_temperature needs the logits). The pairs are read again by this "
        "process, with their records numbered through the files in order, and kept in "
        "memory, 17 bytes each",
    )
    report.set_defaults(run=_report)

    info = sub.add_parser("info", parents=[threads], help="show how this installation was built")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``logcal`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "bins", 1) < 1:
        parser.error("--bins must be at least 1")
    if getattr(args, "bootstrap", 0) < 0:
        parser.error("--bootstrap must be >= 0")
    cells = getattr(args, "bins", 0) * getattr(args, "bootstrap", 0)
    if cells > MAX_REPLICATE_CELLS:
        parser.error(
            f"--bootstrap x --bins = {cells:,} replicate bins is more than the "
            f"{MAX_REPLICATE_CELLS:,} (2**26) a report can hold; ask for fewer"
        )
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    if args.command in ("demo", "report"):
        if args.fit_fraction is None:
            args.fit_fraction = Fraction(1, 2)
        elif args.recalibrate in (None, "none"):
            parser.error("--fit-fraction needs --recalibrate")
    if getattr(args, "scheduler", None) is not None and args.workers != 1:
        parser.error(
            "--workers and --scheduler do not combine: the cluster's workers read the files"
        )
    if not 0 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be from 1 to {MAX_THREADS}, or 0 for all CPUs")
    if args.threads:
        set_num_threads(args.threads)
    try:
        with _warnings_as_notes():
            return args.run(args)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else ""
        print(f"logcal: error: cannot read {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (InputError, ValueError, TypeError) as exc:
        print(f"logcal: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
