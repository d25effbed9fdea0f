"""Loading of the compiled modules, and the run-time settings they share."""

from __future__ import annotations

from . import _core_cpu

try:  # the CUDA module exists only in builds made where nvcc was found
    from . import _core_cuda
except ImportError:  # pragma: no cover - depends on the build
    _core_cuda = None

__all__ = [
    "cpu",
    "cuda_available",
    "cuda_compiled",
    "get_num_threads",
    "set_num_threads",
]

cpu = _core_cpu
cuda = _core_cuda  # None in a build without the CUDA module


def cuda_compiled() -> bool:
    """Whether this build of logcal includes the CUDA module.

    Examples
    --------
    >>> import logcal
    >>> isinstance(logcal.cuda_compiled(), bool)
    True
    """
    return _core_cuda is not None


def cuda_available() -> bool:
    """Whether the CUDA module was built *and* a CUDA device is usable now.

    Examples
    --------
    >>> import logcal
    >>> logcal.cuda_available() in (True, False)
    True
    """
    return _core_cuda is not None and _core_cuda.device_count() > 0


MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Set the number of threads the CPU kernels use (``n <= 0`` restores the default).

    The default is the number of CPUs this process may run on. At most ``MAX_THREADS``
    (1024): the pool's threads live as long as the process, and more than the machine's
    CPUs only add overhead.

    Examples
    --------
    >>> import logcal
    >>> logcal.set_num_threads(2)
    >>> logcal.get_num_threads()
    2
    >>> logcal.set_num_threads(0)
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n > MAX_THREADS:
        raise ValueError(f"n must be at most {MAX_THREADS} threads, got {n}")
    _core_cpu.set_num_threads(max(n, 0))


def get_num_threads() -> int:
    """The number of threads the CPU kernels use."""
    return _core_cpu.get_num_threads()
