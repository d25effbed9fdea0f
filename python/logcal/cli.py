"""The ``logcal`` command.

- ``logcal demo``: a real character-level language model (shipped with the package) scored on
  1,025 real names: token statistics, the calibration of its next-character predictions, and
  the reliability diagram.
- ``logcal report FILE``: the same report for a file of logprobs from a model API or server
  (OpenAI, vLLM, Gemini; JSON or JSONL of any size).
- ``logcal info``: how this installation was built.

Exit codes: 0 success, 1 bad input (one line on stderr says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._native import cpu, cuda_available, cuda_compiled, get_num_threads, set_num_threads
from ._selective import selective
from ._sequence import sequence_stats
from ._token import token_stats
from .calibration import calibration_stats

_METRIC_ROWS = [
    ("ece", "ECE (expected calibration error)"),
    ("mce", "MCE (largest bin gap)"),
    ("rmsce", "RMSCE (root-mean-square gap)"),
    ("brier", "Brier score"),
    ("nll", "NLL (log loss, nats)"),
]


class InputError(Exception):
    """Bad input from the user: reported in one line, exit code 1."""


# --- the calibration report shared by `demo` and `report` ---------------------------------------


def _calibration_report(confidence, correct, *, bins: int, bootstrap: int, seed: int) -> tuple:
    def compute() -> tuple:
        stats = calibration_stats(
            confidence, correct, n_bins=bins, n_bootstrap=bootstrap, seed=seed
        )
        return stats, selective(confidence, correct).auroc

    return _noted(compute, bins, bootstrap)


def _noted(compute, bins: int, bootstrap: int) -> tuple:
    """``compute()``'s statistics and AUROC as a report; its warnings as notes on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats, auroc = compute()
        report = _calibration_table(stats, auroc, bins, bootstrap)
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"logcal: note: {message}", file=sys.stderr)
    return stats, report


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


def _write_plot(stats, path: str | None, what: str) -> str | None:
    """Draw the reliability diagram to `path`; returns a note for the user."""
    if path is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plot import reliability_diagram
    except ImportError:
        return (
            "reliability diagram skipped: matplotlib is not installed (pip install 'logcal[plot]')"
        )
    fig = reliability_diagram(stats, title=what)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return f"reliability diagram written to {path}"


def _finish(report: dict, stats, args: argparse.Namespace, what: str) -> int:
    note = _write_plot(stats, args.plot, what)
    if args.json:
        if note:
            report["plot"] = args.plot if note.startswith("reliability diagram written") else None
        print(json.dumps(report, indent=2))
        return 0
    _print_report(report)
    if note:
        print()
        print(note)
    return 0


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
    return _finish(report, stats, args, "pokepy next-character predictions")


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


class _RankCounts:
    """Right and wrong answers counted per distinct confidence, chunk by chunk: the AUROC of
    a stream in memory bounded by its distinct values, not its length."""

    def __init__(self) -> None:
        self.values = np.empty(0)
        self.right = np.empty(0, dtype=np.int64)
        self.total = np.empty(0, dtype=np.int64)

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        values = np.concatenate([self.values, confidence])
        right = np.concatenate([self.right, correct.astype(np.int64)])
        total = np.concatenate([self.total, np.ones(confidence.size, dtype=np.int64)])
        self.values, where = np.unique(values, return_inverse=True)
        self.right = np.bincount(where, weights=right, minlength=self.values.size)
        self.total = np.bincount(where, weights=total, minlength=self.values.size)

    def auroc(self) -> float:
        """Probability that a right answer is more confident than a wrong one, ties half
        (the Mann-Whitney statistic, as :func:`logcal.selective` computes it)."""
        wrong = self.total - self.right
        n_right, n_wrong = float(self.right.sum()), float(wrong.sum())
        if n_right == 0 or n_wrong == 0:
            return math.nan
        below = np.cumsum(wrong) - wrong
        return math.fsum(self.right * (below + wrong / 2)) / (n_right * n_wrong)


# Tokens per chunk of a streamed report: about 100 MB of working memory.
_REPORT_CHUNK = 1 << 20


def _report(args: argparse.Namespace) -> int:
    from . import CalibrationAccumulator
    from .io import read_logprobs

    if args.labels:
        batch = read_logprobs(
            args.file, format=args.format, errors=args.errors, workers=args.workers
        )
        return _report_answers(args, batch)
    # Token level, streamed: the probability of the top-1 alternative, and whether it is the
    # token that was actually produced (teacher-forced prompt tokens and sampled tokens alike).
    acc = CalibrationAccumulator(n_bins=args.bins, n_bootstrap=args.bootstrap, seed=args.seed)
    ranks = _RankCounts()
    n_sequences = n_tokens = k = skipped = 0
    fmt = None
    batches = read_logprobs(
        args.file,
        format=args.format,
        errors=args.errors,
        workers=args.workers,
        chunk_tokens=_REPORT_CHUNK,
    )
    for batch in batches:
        n_sequences += batch.n_sequences
        n_tokens += batch.n_tokens
        skipped += batch.skipped
        k = max(k, batch.k)
        fmt = batch.format
        if batch.k == 0:
            continue
        top = batch.top_logprobs[:, 0]
        has_top = np.isfinite(top)
        confidence = np.exp(top[has_top])
        correct = (batch.tokens == batch.top_tokens[:, 0])[has_top].astype(bool)
        acc.update(confidence, correct)
        ranks.add(confidence, correct)
    if n_tokens == 0:
        raise InputError(f"{args.file}: no tokens with log-probabilities")
    if k == 0:
        raise InputError(
            f"{args.file}: no top_logprobs to calibrate; request them from the API "
            "(top_logprobs / logprobs=k), or pass --labels for answer-level calibration"
        )
    if not args.json:
        print(
            f"logcal {__version__} report: {args.file} ({fmt}, "
            f"{n_sequences:,} sequences, {n_tokens:,} tokens"
            f"{f', {skipped} records skipped' if skipped else ''})"
        )
        print(f"Calibration of {acc.n:,} tokens: top-1 probability vs the token produced:")
    stats, report = _noted(lambda: (acc.compute(), ranks.auroc()), args.bins, args.bootstrap)
    report["source"] = {"file": args.file, "format": fmt, "skipped": skipped}
    return _finish(report, stats, args, Path(args.file).name)


def _report_answers(args: argparse.Namespace, batch) -> int:
    """Sequence level: the model's probability of each generated answer, against the labels."""
    if batch.n_tokens == 0:
        raise InputError(f"{args.file}: no tokens with log-probabilities")
    generated = np.flatnonzero(np.asarray(batch.choice) >= 0)
    sums = sequence_stats(batch.token_logprob, batch.offsets).sum
    labels = _read_labels(args.labels, generated.size)
    confidence = np.exp(np.asarray(sums, dtype=np.float64)[generated])
    what = f"{generated.size:,} answers: probability of the answer vs its label"
    if not args.json:
        print(
            f"logcal {__version__} report: {args.file} ({batch.format}, "
            f"{batch.n_sequences:,} sequences, {batch.n_tokens:,} tokens"
            f"{f', {batch.skipped} records skipped' if batch.skipped else ''})"
        )
        print(f"Calibration of {what}:")
    stats, report = _calibration_report(
        confidence, labels, bins=args.bins, bootstrap=args.bootstrap, seed=args.seed
    )
    report["source"] = {"file": args.file, "format": batch.format, "skipped": batch.skipped}
    return _finish(report, stats, args, Path(args.file).name)


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
        default=default_plot,
        help="write the reliability diagram here"
        + (f" (default {default_plot})" if default_plot else ""),
    )
    if default_plot:
        p.add_argument(
            "--no-plot",
            dest="plot",
            action="store_const",
            const=None,
            help="do not draw the diagram",
        )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logcal",
        description="Confidence and calibration statistics for language models.",
        epilog="Exit codes: 0 success, 1 bad input, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"logcal {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for the kernels (default: all CPUs available)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="report on a real model's predictions shipped with logcal",
        description="Score the next-character predictions of a small real "
        "language model on 1,025 names: token statistics, calibration "
        "metrics with bootstrap intervals, and the reliability diagram.",
    )
    _add_report_options(demo, "logcal-demo.png")
    demo.set_defaults(run=_demo)

    report = sub.add_parser(
        "report",
        help="calibration report of a logprob file",
        description="Calibration report of a file of logprobs (OpenAI chat "
        "or completions, vLLM, Gemini; JSON or JSONL, .gz too). Without "
        "--labels: token level, the top-1 alternative's probability against "
        "whether it is the token produced. With --labels: answer level, the "
        "probability of each generated sequence against its 0/1 label.",
    )
    report.add_argument("file", help="JSON or JSONL file of API or server responses")
    report.add_argument(
        "--format",
        default="auto",
        help="openai_chat, openai_completions, vllm_chat, vllm_completions, "
        "gemini, or auto (default)",
    )
    report.add_argument(
        "--labels",
        metavar="FILE",
        help="0/1 per generated sequence, in order (JSON list or one per line)",
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
        help="processes decoding a large JSONL file in parallel (default 1)",
    )
    _add_report_options(report, None)
    report.set_defaults(run=_report)

    info = sub.add_parser("info", help="show how this installation was built")
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
    if args.threads:
        set_num_threads(args.threads)
    try:
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
