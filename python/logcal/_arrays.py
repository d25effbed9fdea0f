"""One view of the caller's arrays, host or device, for the front ends and the bindings.

Every argument array becomes an :class:`ArrayView` once, at the edge: its data pointer, logical
dtype, shape, strides in elements, device (-1 for host memory, else the CUDA ordinal), the
caller's current stream on that device, and whether it may be written. The bindings of both back
ends read exactly these fields (``python/logcal/_bindings/array.h``) and pick the kernel by
``device``, so a public function has one path for every device.

Zero-copy wherever the memory allows it. numpy arrays, torch tensors (CPU or CUDA), cupy arrays,
and anything with ``__cuda_array_interface__``, ``__dlpack__``, ``__array__`` or the buffer
protocol are read in place. Read-only inputs are copied only when the kernels cannot read the
layout (byte-swapped data, strides that are not a multiple of the element size, torch's lazy
negation); an output (``writable=True``) is never copied -- such an ``out=`` is refused.

Results are allocated like the first input (:func:`empty`): the same family (numpy, torch or
cupy), device and stream. Nothing here imports torch or cupy unless the caller's array came
from them (or a foreign CUDA array needs one of them to be viewed), so the package runs its
CPU paths without either.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any, NamedTuple

import numpy as np

from . import _native

FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
INT_NAMES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
HOST = -1  # ArrayView.device of host memory

_DLPACK_CPU, _DLPACK_CUDA = 1, 2


class ArrayView(NamedTuple):
    """A caller's array as the kernels see it."""

    obj: Any  # what keeps the memory alive: a numpy array, torch tensor or cupy array
    ptr: int  # address of element [0, ..., 0]
    dtype: str  # logical dtype: "bfloat16", "float32", "int64", "bool", ...
    shape: tuple
    strides: tuple  # in elements
    device: int  # HOST, or the CUDA device ordinal
    stream: int  # the caller's current CUDA stream on that device (0 on the host)
    readonly: bool
    family: str  # "numpy", "torch" or "cupy": the kind of array results are returned as

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def on_gpu(self) -> bool:
        return self.device != HOST


def _torch() -> Any:
    return sys.modules.get("torch")


def _cupy() -> Any:
    return sys.modules.get("cupy")


def _describe(x: Any) -> str:
    module = type(x).__module__
    return type(x).__qualname__ if module == "builtins" else f"{module}.{type(x).__qualname__}"


def _not_an_array(name: str, x: Any) -> TypeError:
    return TypeError(
        f"{name} must be an array (numpy, torch, or anything with __array__, __dlpack__ or the "
        f"buffer protocol), got {_describe(x)}"
    )


# --- host memory -------------------------------------------------------------------------------


def _numpy_view(a: np.ndarray, family: str, writable: bool, name: str) -> ArrayView:
    if a.dtype.kind in "OUSV" and a.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be a numeric array, got an array of dtype {a.dtype}")
    item = a.dtype.itemsize
    if not a.dtype.isnative or any(s % item for s in a.strides):
        if writable:
            raise ValueError(
                f"{name} must be in native byte order with strides that are a multiple of its "
                f"element size, so that results can be written into it"
            )
        a = a.astype(a.dtype.newbyteorder("="))  # a private copy the kernels can read
    return ArrayView(
        a,  # for torch CPU tensors, a DLPack view: it keeps the tensor's memory alive
        int(a.__array_interface__["data"][0]),
        a.dtype.name,
        tuple(a.shape),
        tuple(s // item for s in a.strides),
        HOST,
        0,
        not a.flags.writeable,
        family,
    )


def _torch_view(t: Any, name: str, writable: bool) -> ArrayView:
    torch = _torch()
    kind = t.device.type
    if kind not in ("cpu", "cuda"):
        raise ValueError(
            f"{name} is a torch tensor on device '{t.device}'; logcal reads tensors in CPU or "
            f"CUDA memory"
        )
    t = t.detach()
    if t.is_conj() or t.is_neg():
        if writable:
            raise ValueError(
                f"{name} is a torch tensor with a pending conjugation or negation; pass a "
                f"resolved tensor so that results can be written into it"
            )
        t = t.resolve_conj().resolve_neg()
    dtype = str(t.dtype).removeprefix("torch.")
    if kind == "cpu":
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: the kernels read the raw bits
            base = np.from_dlpack(t.view(torch.int16)).view(np.uint16)
        elif t.dtype == torch.bool:
            base = np.from_dlpack(t.view(torch.uint8)).view(np.bool_)
        else:
            base = np.from_dlpack(t)
        return _numpy_view(base, "torch", writable, name)._replace(dtype=dtype, readonly=False)
    device = int(t.device.index)
    _check_aligned(int(t.data_ptr()), t.element_size(), name)
    return ArrayView(
        t,
        int(t.data_ptr()),
        dtype,
        tuple(t.shape),
        tuple(t.stride()),
        device,
        int(torch.cuda.current_stream(device).cuda_stream),
        False,
        "torch",
    )


# --- device memory -----------------------------------------------------------------------------


def _check_aligned(ptr: int, itemsize: int, name: str) -> None:
    # A misaligned element address faults on the GPU and poisons the CUDA context.
    if ptr % itemsize:
        raise ValueError(f"{name} is not aligned to its element size ({itemsize} bytes)")


def _cupy_view(x: Any, name: str) -> ArrayView:
    cupy = _cupy()
    item = x.itemsize
    if any(s % item for s in x.strides):
        raise ValueError(f"{name} has strides that are not a multiple of its element size")
    _check_aligned(int(x.data.ptr), item, name)
    device = int(x.device.id)
    with cupy.cuda.Device(device):
        stream = int(cupy.cuda.get_current_stream().ptr)
    return ArrayView(
        x,
        int(x.data.ptr),
        x.dtype.name,
        tuple(x.shape),
        tuple(s // item for s in x.strides),
        device,
        stream,
        False,
        "cupy",
    )


def _wrap_foreign_cuda(x: Any, name: str) -> Any:
    """A cupy array or torch tensor viewing a foreign CUDA array (zero-copy)."""
    try:
        import cupy

        return cupy.asarray(x) if hasattr(x, "__cuda_array_interface__") else cupy.from_dlpack(x)
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        raise TypeError(
            f"{name} is a CUDA array that is neither a torch tensor nor a cupy array; logcal "
            f"needs cupy or torch installed to read it"
        ) from None
    if hasattr(x, "__dlpack__"):
        return torch.from_dlpack(x)
    return torch.as_tensor(x, device="cuda")


def _foreign_device(x: Any) -> int | None:
    """The DLPack device type of a foreign array, or None when it does not say."""
    if hasattr(x, "__cuda_array_interface__"):
        return _DLPACK_CUDA
    if hasattr(x, "__dlpack_device__"):
        try:
            return int(x.__dlpack_device__()[0])
        except Exception:
            return None
    return None


def on_gpu(x: Any) -> bool:
    """Whether ``x`` is an array in CUDA memory (without importing any framework)."""
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.device.type == "cuda"
    if isinstance(x, np.ndarray):
        return False
    cupy = _cupy()
    if cupy is not None and isinstance(x, cupy.ndarray):
        return True
    return _foreign_device(x) == _DLPACK_CUDA


# --- the one entry point -----------------------------------------------------------------------


def view(x: Any, name: str, *, writable: bool = False, func: str = "") -> ArrayView:
    """View ``x`` as an :class:`ArrayView` (zero-copy where the memory allows it).

    ``writable``: ``x`` is an output; it is never copied, and refused when read-only or laid out
    in a way the kernels cannot write. ``func``: the public function, named in the error when
    ``x`` is in CUDA memory and the CUDA kernels cannot run here.
    """
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type == "cuda":
            cuda_kernels(func)
        v = _torch_view(x, name, writable)
    elif isinstance(x, np.ndarray):
        v = _numpy_view(x, "numpy", writable, name)
    else:
        cupy = _cupy()
        if cupy is not None and isinstance(x, cupy.ndarray):
            cuda_kernels(func)
            v = _cupy_view(x, name)
        else:
            kind = _foreign_device(x)
            if kind == _DLPACK_CUDA:
                cuda_kernels(func)
                return view(_wrap_foreign_cuda(x, name), name, writable=writable)
            if kind not in (None, _DLPACK_CPU):
                raise ValueError(
                    f"{name} is in memory of DLPack device type {kind}; logcal reads host and "
                    f"CUDA memory"
                )
            v = _numpy_view(_as_numpy(x, name), "numpy", writable, name)
    if writable and v.readonly:
        raise ValueError(f"{name} must be writeable")
    return v


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError):
            pass  # e.g. a dtype numpy's DLPack import does not know: try __array__ below
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise _not_an_array(name, x) from exc
    if a.dtype.kind == "O" and a.ndim == 0:
        raise _not_an_array(name, x)
    return a


def numpy_of(v: ArrayView) -> np.ndarray:
    """A host view's memory as numpy: bfloat16 as its uint16 bits, the rest as they are."""
    return v.obj.view(np.uint16) if v.dtype == "bfloat16" else v.obj


def host_only(v: ArrayView, name: str, func: str) -> np.ndarray:
    """The numpy memory of a host array, or the error of a function that runs on the CPU only."""
    if v.on_gpu:
        raise RuntimeError(
            f"{func}: {name} is in CUDA memory (cuda:{v.device}); this version of logcal "
            f"computes {func} on the CPU only, so move it to host memory first"
        )
    return numpy_of(v)


def to_float64(x: Any, name: str, func: str = "reference") -> np.ndarray:
    """A host array of floats as float64 numpy (bfloat16 decoded exactly)."""
    v = view(x, name)
    a = host_only(v, name, func)
    if v.dtype == "bfloat16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(a, dtype=np.float64)


def cuda_kernels(func: str) -> Any:
    """The CUDA module, or the error that says why CUDA memory cannot be computed on here."""
    core = _native.cuda
    prefix = f"{func}: " if func else ""
    if core is None:
        raise RuntimeError(
            f"{prefix}the input is in CUDA memory, but this build of logcal has no CUDA module "
            "(it was built without nvcc); move the input to host memory or rebuild with "
            "LOGCAL_CUDA=ON"
        )
    if core.device_count() < 1:
        raise RuntimeError(f"{prefix}the input is in CUDA memory, but no CUDA device is usable")
    return core


def kernels(v: ArrayView, func: str) -> Any:
    """The compiled module whose kernels read ``v``'s device: CPU, or CUDA."""
    return cuda_kernels(func) if v.on_gpu else _native.cpu


def same_device(like: ArrayView, v: ArrayView, name: str, like_name: str) -> None:
    """Refuse an argument that lives on another device than ``like``."""
    if v.device != like.device:
        where = "host memory" if v.device == HOST else f"cuda:{v.device}"
        there = "host memory" if like.device == HOST else f"cuda:{like.device}"
        raise ValueError(
            f"{name} is in {where} but {like_name} is in {there}; pass both on one device"
        )


# --- results -----------------------------------------------------------------------------------


def empty(shape: tuple, dtype: str, like: ArrayView) -> tuple[Any, ArrayView]:
    """A new array of ``like``'s family, device and stream, and its view for the kernels."""
    shape = tuple(int(n) for n in shape)
    if like.family == "numpy":
        bits = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
        a = np.empty(shape, dtype=bits)
        return wrap(a, dtype, "numpy"), _numpy_view(a, "numpy", True, "out")._replace(dtype=dtype)
    if like.family == "torch":
        torch = _torch()
        device = "cpu" if like.device == HOST else f"cuda:{like.device}"
        t = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
        return t, _torch_view(t, "out", True)
    cupy = _cupy()
    with cupy.cuda.Device(like.device):
        a = cupy.empty(shape, dtype=_cupy_dtype(dtype))
    return a, _cupy_view(a, "out")


def _cupy_dtype(dtype: str) -> Any:
    if dtype != "bfloat16":
        return dtype
    try:
        import ml_dtypes  # cupy >= 14 allocates bfloat16 through ml_dtypes' type
    except ImportError:
        raise TypeError(
            "a bfloat16 cupy result needs the ml_dtypes package (pip install ml_dtypes)"
        ) from None
    return ml_dtypes.bfloat16


def wrap(a: np.ndarray, dtype: str, family: str) -> Any:
    """Present a numpy result (uint16 bits for bfloat16) as the caller's array family."""
    if family == "torch":
        torch = _torch()
        t = torch.from_numpy(a)
        return t.view(torch.bfloat16) if dtype == "bfloat16" else t
    if dtype != "bfloat16":
        return a
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes is in the test extra
        raise TypeError(
            "a bfloat16 numpy result needs the ml_dtypes package (pip install ml_dtypes)"
        ) from None
    return a.view(ml_dtypes.bfloat16)


# --- framework operations on a view (the caller's framework does them: no copies of ours) -------


def _review(obj: Any, like: ArrayView, dtype: str | None = None) -> ArrayView:
    """The view of ``obj``, an array made from ``like``'s by its own framework."""
    v = view(obj, "array")
    return v._replace(dtype=dtype or like.dtype, family=like.family)


def reshaped(v: ArrayView, shape: tuple) -> ArrayView:
    """``v`` reshaped by its framework: a view when the strides allow it, else a copy."""
    return _review(v.obj.reshape(shape), v)


def converted(v: ArrayView, dtype: str) -> ArrayView:
    """A new array of ``dtype`` with ``v``'s values, in ``v``'s framework and device."""
    if v.family == "torch" and v.on_gpu:
        return _review(v.obj.to(getattr(_torch(), dtype), copy=True), v, dtype)
    if v.family == "cupy":
        with _cupy().cuda.Device(v.device):
            return _review(v.obj.astype(dtype, copy=True), v, dtype)
    a = numpy_of(v)
    if v.dtype == "bfloat16":
        a = (a.astype(np.uint32) << 16).view(np.float32)  # exact
    return _review(a.astype(dtype), v, dtype)


def copied(v: ArrayView) -> ArrayView:
    """A private, C-contiguous copy of ``v`` (same dtype, framework and device)."""
    if v.family == "torch" and v.on_gpu:
        return _review(v.obj.clone(memory_format=_torch().contiguous_format), v)
    if v.family == "cupy":
        with _cupy().cuda.Device(v.device):
            return _review(_cupy().array(v.obj, order="C", copy=True), v)
    return _review(np.array(v.obj, order="C", copy=True), v)


def zeros(shape: tuple, dtype: str, like: ArrayView) -> tuple[Any, ArrayView]:
    """Like :func:`empty`, filled with zeros (on ``like``'s stream for torch and cupy)."""
    if like.family == "torch" and like.on_gpu:
        t = _torch().zeros(shape, dtype=getattr(_torch(), dtype), device=f"cuda:{like.device}")
        return t, _torch_view(t, "out", True)
    if like.family == "cupy":
        with _cupy().cuda.Device(like.device):
            a = _cupy().zeros(shape, dtype=dtype)
        return a, _cupy_view(a, "out")
    result, v = empty(shape, dtype, like)
    numpy_of(v)[...] = 0
    return result, v


def to_host(v: ArrayView) -> np.ndarray:
    """A numpy copy of ``v``'s values (waits for the framework's current stream)."""
    if not v.on_gpu:
        return np.array(numpy_of(v))
    if v.family == "cupy":
        return _cupy().asnumpy(v.obj)
    t = v.obj.detach()
    return (
        t.view(_torch().int16).cpu().numpy().view(np.uint16)
        if v.dtype == "bfloat16"
        else (t.cpu().numpy())
    )


def from_host(a: np.ndarray, like: ArrayView) -> ArrayView:
    """A copy of a host array on ``like``'s device, in its framework."""
    a = np.ascontiguousarray(a)
    if like.family == "torch" and like.on_gpu:
        return _torch_view(_torch().from_numpy(a).to(f"cuda:{like.device}"), "array", False)
    if like.family == "cupy":
        with _cupy().cuda.Device(like.device):
            return _cupy_view(_cupy().asarray(a), "array")
    return view(a, "array")


# --- small arguments ---------------------------------------------------------------------------


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
