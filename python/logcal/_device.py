"""CUDA arrays: recognition, raw pointers, streams, and allocation in the caller's framework.

A CUDA array (a torch CUDA tensor, a cupy array, or anything exposing
``__cuda_array_interface__`` or DLPack with device type CUDA) is viewed, without a copy, as a
torch tensor or a cupy array -- its own family when it is one, otherwise cupy when importable,
else torch -- and described by its device pointer, shape, strides in elements, dtype and device.
Kernels run on that array's device and on the family's *current stream*
(``torch.cuda.current_stream(device)``, ``cupy.cuda.get_current_stream()``); results are
allocated by the same family on the same device and stream. Stream handles are passed to the
CUDA runtime as they are: 0 is the legacy default stream, and the runtime's own handles 1
(``cudaStreamLegacy``) and 2 (``cudaStreamPerThread``), the sentinels of the DLPack and CUDA
array interface protocols, mean exactly those streams there -- they are never dereferenced.

Nothing here imports torch or cupy unless the caller's array came from them (or, for a foreign
CUDA array, to wrap it), so the package imports and runs its CPU paths without either.

Host synchronisation: launches never synchronise. :func:`read_u64` waits for the stream and is
used only where a CUDA call must decide something on the host from the data: checking
``targets`` of ``token_stats`` and ``offsets`` of ``sequence_stats`` (one 8-byte read, so that
bad values raise the same ValueError as on the CPU), validating the samples of a calibration
update, and returning host results (``calibration_stats``, ``CalibrationAccumulator.compute``).
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np

from . import _native

_DLPACK_CUDA = 2
NONE_FOUND = (1 << 64) - 1  # what the first-bad-position kernels leave when all is well


class DeviceArray(NamedTuple):
    obj: Any  # torch.Tensor or cupy.ndarray viewing the caller's memory
    ptr: int
    shape: tuple
    strides: tuple  # in elements
    dtype: str  # "bfloat16", "float32", "int64", "bool", ...
    device: int
    family: str  # "torch" or "cupy"


def _torch():
    return sys.modules.get("torch")


def _cupy():
    return sys.modules.get("cupy")


def is_cuda_array(x: Any) -> bool:
    """Whether ``x`` lives in CUDA device memory (without importing any framework)."""
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.device.type == "cuda"
    cupy = _cupy()
    if cupy is not None and isinstance(x, cupy.ndarray):
        return True
    if isinstance(x, np.ndarray):
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    if hasattr(x, "__dlpack_device__"):
        try:
            return int(x.__dlpack_device__()[0]) == _DLPACK_CUDA
        except Exception:
            return False
    return False


def require_cuda(func: str) -> Any:
    """The CUDA module, or a clear error when this build or machine cannot run it."""
    core = _native._core_cuda
    if core is None:
        raise RuntimeError(
            f"{func}: the input is in CUDA memory, but this build of logcal has no CUDA module "
            "(it was built without nvcc); move the input to host memory or rebuild with "
            "LOGCAL_CUDA=ON"
        )
    if core.device_count() < 1:
        raise RuntimeError(f"{func}: the input is in CUDA memory, but no CUDA device is usable")
    return core


def _wrap_foreign(x: Any) -> Any:
    """A torch tensor or cupy array viewing a foreign CUDA array (zero-copy)."""
    try:
        import cupy

        if hasattr(x, "__cuda_array_interface__"):
            return cupy.asarray(x)
        return cupy.from_dlpack(x)
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        raise TypeError(
            "a CUDA array that is neither a torch tensor nor a cupy array needs cupy or torch "
            "installed to be read by logcal"
        ) from None
    if hasattr(x, "__dlpack__"):
        return torch.from_dlpack(x)
    return torch.as_tensor(x, device="cuda")


def describe(x: Any) -> DeviceArray:
    """View a CUDA array (see the module docstring) as a :class:`DeviceArray`."""
    torch = _torch()
    if not (torch is not None and isinstance(x, torch.Tensor)):
        cupy = _cupy()
        if not (cupy is not None and isinstance(x, cupy.ndarray)):
            x = _wrap_foreign(x)
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_conj():
            t = t.resolve_conj()
        if t.is_neg():
            t = t.resolve_neg()
        return DeviceArray(
            t,
            int(t.data_ptr()),
            tuple(t.shape),
            tuple(t.stride()),
            str(t.dtype).removeprefix("torch."),
            int(t.device.index),
            "torch",
        )
    item = x.itemsize
    if any(s % item for s in x.strides):
        raise ValueError("CUDA array strides are not a multiple of the element size")
    return DeviceArray(
        x,
        int(x.data.ptr),
        tuple(x.shape),
        tuple(s // item for s in x.strides),
        x.dtype.name,
        int(x.device.id),
        "cupy",
    )


def stream(a: DeviceArray) -> int:
    """The caller's current stream on ``a``'s device, as a runtime handle."""
    if a.family == "torch":
        return int(_torch().cuda.current_stream(a.device).cuda_stream)
    cupy = _cupy()
    with cupy.cuda.Device(a.device):
        return int(cupy.cuda.get_current_stream().ptr)


def _torch_dtype(name: str) -> Any:
    torch = _torch()
    return getattr(torch, name)


def empty(shape: tuple, dtype: str, like: DeviceArray) -> DeviceArray:
    """A new array of ``like``'s family, on its device (and, for torch, its current stream)."""
    if like.family == "torch":
        torch = _torch()
        t = torch.empty(shape, dtype=_torch_dtype(dtype), device=f"cuda:{like.device}")
        return describe(t)
    cupy = _cupy()
    if dtype == "bfloat16":
        raise TypeError("cupy has no bfloat16 dtype: ask for float16, float32 or float64 output")
    with cupy.cuda.Device(like.device):
        return describe(cupy.empty(shape, dtype=dtype))


def zeros(shape: tuple, dtype: str, like: DeviceArray) -> DeviceArray:
    if like.family == "torch":
        torch = _torch()
        return describe(torch.zeros(shape, dtype=_torch_dtype(dtype), device=f"cuda:{like.device}"))
    cupy = _cupy()
    with cupy.cuda.Device(like.device):
        return describe(cupy.zeros(shape, dtype=dtype))


def full_u64_max(like: DeviceArray) -> DeviceArray:
    """One 64-bit word holding all ones (the "none found" of the first-bad-position kernels)."""
    if like.family == "torch":
        torch = _torch()
        return describe(torch.full((1,), -1, dtype=torch.int64, device=f"cuda:{like.device}"))
    cupy = _cupy()
    with cupy.cuda.Device(like.device):
        return describe(cupy.full((1,), -1, dtype=cupy.int64))


def from_host(a: np.ndarray, like: DeviceArray) -> DeviceArray:
    """A device copy of a host array, in ``like``'s family and device."""
    a = np.ascontiguousarray(a)
    if like.family == "torch":
        torch = _torch()
        return describe(torch.from_numpy(a).to(f"cuda:{like.device}"))
    cupy = _cupy()
    with cupy.cuda.Device(like.device):
        return describe(cupy.asarray(a))


def to_host(a: DeviceArray) -> np.ndarray:
    """A host (numpy) copy; synchronises. bfloat16 comes back as its uint16 bits."""
    if a.family == "torch":
        torch = _torch()
        t = a.obj
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        elif t.dtype == torch.bool:
            t = t.view(torch.uint8)
        out = t.cpu().numpy()
        if a.dtype == "bfloat16":
            return out.view(np.uint16)
        if a.dtype == "bool":
            return out.view(np.bool_)
        return out
    return _cupy().asnumpy(a.obj)


def converted(a: DeviceArray, dtype: str, contiguous: bool = False) -> DeviceArray:
    """``a`` as ``dtype`` (a new array only when it differs), optionally C-contiguous."""
    obj = a.obj
    if a.family == "torch":
        if a.dtype != dtype:
            obj = obj.to(_torch_dtype(dtype))
        if contiguous:
            obj = obj.contiguous()
    else:
        cupy = _cupy()
        with cupy.cuda.Device(a.device):
            if a.dtype != dtype:
                obj = obj.astype(dtype)
            if contiguous:
                obj = cupy.ascontiguousarray(obj)
    return describe(obj) if obj is not a.obj else a


def as_bytes_view(a: DeviceArray) -> DeviceArray:
    """A bool array viewed as uint8 (same memory)."""
    if a.family == "torch":
        return describe(a.obj.view(_torch().uint8))
    return describe(a.obj.view(_cupy().uint8))


def reshaped(a: DeviceArray, shape: tuple) -> DeviceArray:
    return describe(a.obj.reshape(shape))


def read_u64(core: Any, a: DeviceArray, stream_handle: int) -> int:
    """The first word of ``a`` once the work queued on ``stream_handle`` is done (syncs)."""
    return int(core.read_u64(a.device, stream_handle, a.ptr))


def same_device(a: DeviceArray, b: DeviceArray, name: str, func: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{func}: {name} is on cuda:{b.device} but logits are on cuda:{a.device}")


def nbytes_span(a: DeviceArray, itemsize: int) -> tuple:
    """[lo, hi) byte range the array's elements occupy."""
    lo = hi = a.ptr
    for n, s in zip(a.shape, a.strides):
        if n == 0:
            return a.ptr, a.ptr
        if s > 0:
            hi += (n - 1) * s * itemsize
        else:
            lo += (n - 1) * s * itemsize
    return lo, hi + itemsize


ITEMSIZE = {
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "uint8": 1,
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
}
