#!/usr/bin/env bash
# The GPU check, in one command that fits a 10-minute device call (about 9 minutes at most):
#   device run: bash benchmarks/gpu_check.sh      (timeout_s=600)
# 1. versions; 2. build for the GPU present (<= 150 s, log kept); 3. the GPU tests with a
# per-test timeout (<= 180 s); 4. the benchmark without torch.compile (<= 150 s), its JSON
# written after every job; 5. memcheck and racecheck on small shapes that reach every path
# (<= 60 s). Every step's exit code is kept and summarised at the end; a step that times out
# does not stop the next. Logs and JSON go to $OUT (./gpu-out by default) and the JSON also to
# benchmarks/results/gpu-<device>-<date>.json.
set -u
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=16 LOGCAL_CUDA=ON
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" benchmarks/results
declare -A rc

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt, keep rc
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s)"
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  rc[$name]=$?
  tail -n 25 "$OUT/$name.txt"
}

{
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv
  nvcc --version | tail -n 2
  python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)"
  python3 -c "import cupy; print('cupy', cupy.__version__)" 2>/dev/null || echo "cupy: not installed"
} 2>&1 | tee "$OUT/versions.txt"

arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
step build 150 python3 -m pip install --no-build-isolation --no-deps -v \
  -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${arch}-real" -C cmake.define.LOGCAL_PTXAS_VERBOSE=ON .
grep -c "0 bytes spill stores, 0 bytes spill loads" "$OUT/build.txt" | sed 's/^/kernels without spills: /'
grep "spill" "$OUT/build.txt" | grep -v " 0 bytes spill stores, 0 bytes spill loads" | head -n 5

if python3 -c "import logcal, sys; sys.exit(0 if logcal.cuda_available() else 1)"; then
  step tests 180 python3 -m pytest -q -m gpu -p no:cacheprovider -p timeout --timeout 60 tests
  device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1 | tr ' ' '-')
  results="benchmarks/results/gpu-${device}-$(date +%Y-%m-%d).json"
  step bench 150 env RESULTS="$results" python3 benchmarks/gpu_bench.py --no-compile
  cp -f "$results" "$OUT/" 2>/dev/null
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1
  step memcheck 30 compute-sanitizer --tool memcheck --error-exitcode 9 \
    python3 benchmarks/gpu_sanitize.py
  step racecheck 30 compute-sanitizer --tool racecheck --error-exitcode 9 \
    python3 benchmarks/gpu_sanitize.py
else
  echo "logcal.cuda_available() is False after the build: see $OUT/build.txt"
  rc[import]=1
fi

echo "=== summary (exit codes; 124 = timed out)"
status=0
for name in build tests bench memcheck racecheck import; do
  [ -n "${rc[$name]+x}" ] || continue
  echo "$name: ${rc[$name]}"
  [ "${rc[$name]}" = 0 ] || status=1
done
exit $status
