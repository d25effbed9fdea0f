#!/usr/bin/env bash
# The style checks CI runs: ruff (lint and format) over the Python sources, clang-format over
# the C++ and CUDA sources. Checks only: nothing is rewritten. Tools: pip install ".[lint]".
# Every check runs; the script fails if any of them found something.
set -uo pipefail
cd "$(dirname "$0")/.."

# clang-format from the lint extra lies beside this python3, which may not be on PATH (pyenv).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

status=0
python3 -m ruff check python/ tests/ benchmarks/ scripts/ docs/ || status=1
python3 -m ruff format --check python/ tests/ benchmarks/ scripts/ docs/ || status=1

mapfile -t cxx_sources < <(git ls-files -- 'cpp/*' 'cuda/*' 'python/logcal/_bindings/*' \
  | grep -E '\.(h|hpp|cc|cpp|cu|cuh)$')
clang-format --dry-run --Werror "${cxx_sources[@]}" || status=1

exit "$status"
