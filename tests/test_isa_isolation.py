"""The code built for AVX2 and AVX-512 can never run on a CPU without them.

Kernels are compiled once per instruction-set level. If such a translation unit defined a weak
(COMDAT) function, say an inline template instantiated in several of them, the linker would
keep one copy for every caller, perhaps the AVX-512 one for the baseline path: a crash on an
older CPU that no test on this machine would see. So: the per-level objects must define no weak
code symbols. Checked on the objects of the last build in build/ (skipped when there is none).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _objects():
    return sorted(ROOT.glob("build/*/**/CMakeFiles/logcal_cpu.dir/cpp/src/*_avx*.cpp.o"))


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_per_level_objects_define_no_weak_code():
    objects = _objects()
    if not objects:
        pytest.skip("no x86 per-level objects in build/ (not built here, or not x86)")
    for obj in objects:
        out = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True, check=True)
        weak = [line for line in out.stdout.splitlines() if line.split()[1:2] == ["W"]]
        assert not weak, f"{obj.name} defines weak code that the linker may share: {weak[:3]}"
