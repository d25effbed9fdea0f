"""read_logprobs against plain JSON parsing, on a generated OpenAI chat JSONL file.

Run:  python benchmarks/bench_io.py [--mb 290] [--rss-mb 1100] [--runs 1]

The file is the shipped demo JSONL (OpenAI chat completions, top-5 logprobs) repeated to
``--mb`` megabytes in a temporary directory, removed afterwards. Each reader runs over the
whole file, ``--runs`` times interleaved (the least time of each kept), after a first pass
that fills the page cache: parsing only, with ``json.loads``, ``orjson.loads`` and untyped
``msgspec.json.decode`` per line, then ``read_logprobs`` with 1 and 2 worker processes, which
also validates every field and packs the arrays. Wall time and CPU time (this process's and
its finished children's) are both given: on a machine shared with others the CPU time is the
steadier measure of one process's work, and the ratios of the CPU times are what the targets
are read from; beside them, what two processes gain on this machine at that moment. Then the peak
RSS of ``read_logprobs(chunk_tokens=...)`` streaming a ``--rss-mb`` file into a
CalibrationAccumulator, measured in a fresh process (VmHWM, Linux), against the same on a
file 4x smaller: streaming memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import logcal

# The peak is VmHWM, the high-water mark of this process's own memory: ru_maxrss of a child
# starts at its parent's RSS at the fork (Linux keeps it across exec), which here would be the
# timing runs' arrays.
_STREAM = """
import sys, numpy as np, logcal
acc = logcal.CalibrationAccumulator(n_bins=15)
for b in logcal.read_logprobs(sys.argv[1], chunk_tokens=1 << 18, progress=False):
    acc.update(np.exp(b.top_logprobs[:, 0]), b.tokens == b.top_tokens[:, 0])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
print(acc.n, peak)
"""


def write_file(path: str, megabytes: float) -> int:
    demo = logcal.io.demo_path().read_bytes()
    copies = max(1, round(megabytes * 1e6 / len(demo)))
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(demo)
    return os.path.getsize(path)


def per_line(parse, path: str) -> None:
    with open(path, "rb") as f:
        for line in f:
            parse(line)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (the workers)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    cpu, start = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - start, _cpu() - cpu


def parallel_capacity(path: str) -> float:
    """What two processes gain here now: the json.loads loop run twice in two processes,
    against twice in one. On a machine shared with others this is the most the workers can
    gain (about 2.0 on two free cores)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        list(pool.map(per_line, [json.loads] * 2, [path] * 2))  # start the workers
        parallel = timed(lambda: list(pool.map(per_line, [json.loads] * 2, [path] * 2)))
    serial = timed(lambda: [per_line(json.loads, path) for _ in range(2)])
    return serial / parallel


def stream_rss(path: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _STREAM, path], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    n, kib = out.stdout.split()
    return int(n), int(kib) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=290.0, help="size of the timed file")
    parser.add_argument("--rss-mb", type=float, default=1100.0, help="size of the RSS file")
    parser.add_argument("--runs", type=int, default=1, help="runs of each reader (least kept)")
    args = parser.parse_args()
    import msgspec

    try:
        import orjson
    except ImportError:
        orjson = None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chat.jsonl")
        size = write_file(path, args.mb)
        print(f"file: {size / 1e6:.0f} MB, OpenAI chat JSONL, top-5; {os.cpu_count()} CPUs")
        per_line(json.loads, path)  # into the page cache
        jobs = {"json.loads per line": lambda: per_line(json.loads, path)}
        if orjson is not None:
            jobs["orjson.loads per line"] = lambda: per_line(orjson.loads, path)
        jobs["msgspec.json.decode per line (untyped)"] = lambda: per_line(msgspec.json.decode, path)
        for workers in (1, 2):
            jobs[f"read_logprobs, workers={workers}"] = lambda w=workers: logcal.read_logprobs(
                path, workers=w, progress=False
            )
        load_before = os.getloadavg()
        best = {name: (float("inf"), float("inf")) for name in jobs}
        for _ in range(args.runs):
            for name, job in jobs.items():
                wall, cpu = measured(job)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        load_after = os.getloadavg()
        loads = " ".join(f"{x:.2f}" for x in load_before)
        loads_after = " ".join(f"{x:.2f}" for x in load_after)
        print(f"  load average (1, 5, 15 min): {loads} before, {loads_after} after")
        base_wall, base_cpu = best["json.loads per line"]
        one_wall, _ = best["read_logprobs, workers=1"]
        for name, (wall, cpu) in best.items():
            print(
                f"  {name:40s} {wall:7.2f} s {size / 1e6 / wall:7.1f} MB/s  CPU {cpu:7.2f} s "
                f"{base_cpu / cpu:5.2f}x json.loads (CPU)  {base_wall / wall:5.2f}x (wall)  "
                f"{one_wall / wall:5.2f}x read_logprobs(1) (wall)"
            )
        os.remove(path)
        write_file(path, args.mb / 8)
        print(
            f"  two processes gain {parallel_capacity(path):.2f}x here now (the json.loads loop, "
            f"twice in two processes against twice in one, on {args.mb / 8:.0f} MB)"
        )
        os.remove(path)
        rss = {}
        for mb in (args.rss_mb / 4, args.rss_mb):
            write_file(path, mb)
            size = os.path.getsize(path)
            n, peak = stream_rss(path)
            rss[size] = peak
            print(
                f"  streaming {size / 1e6:6.0f} MB ({n:,} tokens) into an accumulator: "
                f"peak RSS {peak / 2**20:.0f} MiB"
            )
            os.remove(path)


if __name__ == "__main__":
    main()
