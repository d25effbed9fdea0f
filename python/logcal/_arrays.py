"""From the caller's arrays to numpy views the kernels can read, and back.

Everything here is zero-copy where the memory allows it: torch CPU tensors and other DLPack
producers are viewed through DLPack, 16-bit floats travel as their raw bits (uint16), and
strides are passed to the kernels as they are. The only copies are for byte-swapped input and
for small index arrays (targets become int64).
"""

from __future__ import annotations

import numbers
import sys
from typing import Any, NamedTuple

import numpy as np

# Codes shared with the C++ kernels (logcal::DType in cpp/include/logcal/common.h).
FLOAT_CODES = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}
FLOAT_NAMES = tuple(FLOAT_CODES)
_DLPACK_CPU = 1


class HostArray(NamedTuple):
    """A caller's array seen as numpy: ``data`` is the view (uint16 bits for 16-bit floats)."""

    data: np.ndarray
    dtype: str  # the logical dtype name: "bfloat16", "float32", "int64", ...
    family: str  # "numpy" or "torch": the kind of array results are returned as


def _torch():
    return sys.modules.get("torch")


def _is_torch_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _device_error(name: str, where: str, func: str) -> RuntimeError:
    return RuntimeError(
        f"{func}: {name} is in CUDA memory ({where}); this version of logcal computes "
        f"{func} on the CPU only, so move it to host memory first"
    )


def _describe(x: Any) -> str:
    module = type(x).__module__
    return type(x).__qualname__ if module == "builtins" else f"{module}.{type(x).__qualname__}"


def _not_an_array(name: str, x: Any) -> TypeError:
    return TypeError(
        f"{name} must be an array (numpy, torch, or anything with __array__, __dlpack__ or the "
        f"buffer protocol), got {_describe(x)}"
    )


def as_host_array(x: Any, name: str, func: str) -> HostArray:
    """View ``x`` (numpy, torch, DLPack, ``__array__`` or buffer protocol) as a numpy array."""
    if _is_torch_tensor(x):
        if x.device.type != "cpu":
            raise _device_error(name, str(x.device), func)
        t = x.detach().resolve_conj().resolve_neg()
        torch = _torch()
        if t.dtype == torch.bfloat16:
            bits = np.from_dlpack(t.view(torch.int16)).view(np.uint16)
            return HostArray(bits, "bfloat16", "torch")
        if t.dtype == torch.bool:
            return HostArray(np.from_dlpack(t.view(torch.uint8)).view(np.bool_), "bool", "torch")
        arr = np.from_dlpack(t)
        return HostArray(arr, arr.dtype.name, "torch")
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            raise _device_error(name, "__cuda_array_interface__", func)
        if hasattr(x, "__dlpack_device__"):
            device_type, device_id = x.__dlpack_device__()
            if int(device_type) != _DLPACK_CPU:
                raise _device_error(name, f"DLPack device {int(device_type)}:{device_id}", func)
            try:
                x = np.from_dlpack(x)
            except (BufferError, TypeError, RuntimeError):
                pass  # e.g. a dtype numpy's DLPack import does not know: try __array__ below
        if not isinstance(x, np.ndarray):
            original = x
            try:
                x = np.asarray(x)
            except Exception as exc:
                raise _not_an_array(name, original) from exc
            if x.dtype.kind == "O" and x.ndim == 0:
                raise _not_an_array(name, original)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype.name == "bfloat16":  # ml_dtypes
        return HostArray(x.view(np.uint16), "bfloat16", "numpy")
    if x.dtype.kind in "OUSV":
        raise TypeError(f"{name} must be a numeric array, got an array of dtype {x.dtype}")
    return HostArray(x, x.dtype.name, "numpy")


def dtype_name(dtype: Any) -> str:
    """The name of a dtype given as a string, numpy dtype, ml_dtypes type or torch dtype."""
    torch = _torch()
    if torch is not None and isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    if isinstance(dtype, str):
        return dtype
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def empty(shape: tuple, dtype: str, family: str) -> tuple[Any, np.ndarray]:
    """A new array of the caller's family, and a numpy view of it for the kernels."""
    bits = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    view = np.empty(shape, dtype=bits)
    return wrap(view, dtype, family), view


def wrap(view: np.ndarray, dtype: str, family: str) -> Any:
    """Present a numpy result (uint16 bits for bfloat16) as the caller's array family."""
    if family == "torch":
        torch = _torch()
        t = torch.from_numpy(view)
        return t.view(torch.bfloat16) if dtype == "bfloat16" else t
    if dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover - ml_dtypes is in the test extra
            raise TypeError(
                "a bfloat16 numpy result needs the ml_dtypes package (pip install ml_dtypes)"
            ) from None
        return view.view(ml_dtypes.bfloat16)
    return view


def int_arg(value: Any, name: str) -> int:
    """An integer argument (Python or numpy int, never a bool), or a TypeError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def format_index(shape: tuple, flat: int) -> str:
    """``[i, j]`` for a flat position in an array of ``shape``."""
    if len(shape) == 0:
        return ""
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"
