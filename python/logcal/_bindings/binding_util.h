// Helpers shared by the CPU binding files: kernel arguments from array views, statuses to
// exceptions (std::invalid_argument becomes ValueError, std::bad_alloc MemoryError).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops.h"

namespace logcal_bindings {

namespace py = pybind11;
using logcal::DType;
using logcal::Status;

inline void check_status(Status s, const char* what) {
  switch (s) {
    case Status::kOk:
      return;
    case Status::kInvalidArgument:
      throw std::invalid_argument(std::string(what) + ": invalid argument");
    case Status::kBadIndex:  // the binding reports these itself, with the value and position
      throw std::invalid_argument(std::string(what) + ": index value out of range");
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

// Runs `kernel` on a private copy of an index array (if any): `copy(raw, dst)` takes the copy of
// n values, checking each as it is read, then `*slot` points the kernel's arguments at it. All of
// it runs with the GIL released; a bad value stops before the kernel (status kBadIndex).
template <class Copy, class Kernel>
Status run_on_checked_copy(const std::optional<Array>& indices, size_t n, Copy copy,
                           const int64_t** slot, Kernel kernel) {
  std::vector<int64_t> checked(indices ? n : 0);
  const logcal::IntArray raw = indices ? int_array(*indices) : logcal::IntArray{};
  py::gil_scoped_release release;
  if (indices) {
    const Status s = copy(raw, checked.data());
    if (s != Status::kOk) return s;
    *slot = checked.data();
  }
  return kernel();
}

}  // namespace logcal_bindings
