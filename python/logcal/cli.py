"""The ``logcal`` command.

- ``logcal demo``: a real character-level language model (shipped with the package) scored on
  1,025 real names: token statistics, the calibration of its next-character predictions, and
  the reliability diagram.
- ``logcal report FILE``: the same report for a file of logprobs from a model API or server
  (OpenAI, vLLM, Gemini; JSON or JSONL of any size).
- ``logcal info``: how this installation was built.

Exit codes: 0 success, 1 bad input or an output that could not be written (one line on
stderr says why; the report is still printed where it was computed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def _write_plot(stats, path: str, what: str, asked: bool) -> str | None:
    """Draw the reliability diagram to ``path``; the path written. Without matplotlib a
    diagram the user asked for is an error, the demo's default one a note (None)."""
    target = _plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plot import reliability_diagram
    except ImportError:
        if asked:
            raise OutputError(
                "cannot draw the reliability diagram: matplotlib is not installed "
                "(pip install 'logcal[plot]')"
            ) from None
        return None
    fig = reliability_diagram(stats, title=what)
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


def _finish(report: dict, stats, args: argparse.Namespace, what: str) -> int:
    """Print the report and write the diagram; 1 if the diagram could not be written (the
    report is printed all the same)."""
    asked = args.plot is not None
    path = args.plot if asked else getattr(args, "default_plot", None)
    if args.no_plot:
        path = None
    written = problem = None
    if path is not None:
        try:
            written = _write_plot(stats, path, what, asked)
        except OutputError as exc:
            problem = str(exc)
    if args.json:
        if path is not None:
            report["plot"] = written
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
        if path is not None and problem is None:
            print()
            print(
                f"reliability diagram written to {written}"
                if written
                else "reliability diagram skipped: matplotlib is not installed "
                "(pip install 'logcal[plot]')"
            )
    if problem is not None:
        print(f"logcal: error: {problem}", file=sys.stderr)
        return 1
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
        confidence, correct = batch.top1_pairs()
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
    stats = acc.compute()
    report = _calibration_table(stats, ranks.auroc(), args.bins, args.bootstrap)
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
    demo.set_defaults(run=_demo)

    report = sub.add_parser(
        "report",
        parents=[threads],
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
