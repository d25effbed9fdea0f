// Helpers shared by the binding files: kernel arguments from numpy arrays, statuses to
// exceptions (std::invalid_argument becomes ValueError, std::bad_alloc MemoryError).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <new>
#include <stdexcept>
#include <string>

#include "logcal/token_args.h"

namespace logcal_bindings {

namespace py = pybind11;
using logcal::DType;
using logcal::Status;

inline size_t item_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
      return 8;
  }
  throw std::invalid_argument("unknown dtype code");
}

template <class Rows, class Array>
inline Rows rows_of(Array& a, void* data, int dtype_code, const char* name) {
  Rows rows;
  rows.data = data;
  rows.dtype = DType(dtype_code);
  const auto itemsize = py::ssize_t(item_size(rows.dtype));
  if (a.itemsize() != itemsize)
    throw std::invalid_argument(std::string(name) + ": element size does not match its dtype");
  if (a.ndim() < 1 || a.ndim() - 1 > logcal::kMaxLeadingDims)
    throw std::invalid_argument(std::string(name) + ": unsupported number of dimensions");
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.strides(d) % itemsize != 0)
      throw std::invalid_argument(std::string(name) +
                                  ": strides are not a multiple of the element size");
  rows.ndim = int(a.ndim() - 1);
  rows.vocab = a.shape(a.ndim() - 1);
  rows.col_stride = a.strides(a.ndim() - 1) / itemsize;
  rows.n_rows = 1;
  for (int d = 0; d < rows.ndim; ++d) {
    rows.shape[d] = a.shape(d);
    rows.stride[d] = a.strides(d) / itemsize;
    rows.n_rows *= a.shape(d);
  }
  return rows;
}

inline void* out_ptr(const py::object& o) {
  if (o.is_none()) return nullptr;
  return py::cast<py::array>(o).mutable_data();
}

inline void check_status(Status s, const char* what) {
  switch (s) {
    case Status::kOk:
      return;
    case Status::kInvalidArgument:
      throw std::invalid_argument(std::string(what) + ": invalid argument");
    case Status::kOutOfMemory:
      throw std::bad_alloc();
    default:
      throw std::runtime_error(std::string(what) + ": internal error");
  }
}

// The shape of every binding's last step: run the kernel with the GIL released (other Python
// threads go on meanwhile), then turn its status into an exception.
template <class Kernel, class Args>
void run_without_gil(Kernel kernel, const Args& args, const char* what) {
  Status s;
  {
    py::gil_scoped_release release;
    s = kernel(args);
  }
  check_status(s, what);
}

}  // namespace logcal_bindings
