#!/usr/bin/env bash
# The prepared GPU session (issue 5): build with CUDA, GPU tests, benchmark, sanitizers.
# Run from the repository root on the GPU machine, e.g. device.run("bash benchmarks/gpu_check.sh",
# timeout_s=600). Writes its logs to $OUT (or ./gpu-out). About 9-11 minutes on an H200.
# If the budget is short: SKIP_SANITIZERS=1, then BENCH_ARGS=--no-compile.
set -uo pipefail
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=16 LOGCAL_CUDA=ON
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install --no-build-isolation --no-deps -q . 2>&1 | tail -5
python3 -c "import logcal; assert logcal.cuda_available(), 'no usable GPU'" || exit 1
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.txt" | tail -30
timeout 240 python3 benchmarks/gpu_bench.py ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt" | tail -45
if [ -z "${SKIP_SANITIZERS:-}" ]; then
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -q -x -m gpu \
    -p no:cacheprovider tests/test_gpu_token.py -k "3x7 or 1x1" 2>&1 | tee "$OUT/memcheck.txt" | tail -4
  timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 python3 -m pytest -q -x -m gpu \
    -p no:cacheprovider tests/test_gpu_token.py -k "3x7 and bfloat16" 2>&1 | tee "$OUT/racecheck.txt" | tail -4
fi
