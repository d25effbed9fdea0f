// Definitions shared by the interfaces of the CPU and CUDA back ends: status codes, element
// types and the dispatch over them. The numerics both back ends share are in logcal/core/.
#pragma once

#include <cstdint>

#include "logcal/core/half.h"

namespace logcal {

// Kernels and launchers never throw: they return a status, and the binding layer turns it
// into a Python exception that names the argument.
enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,  // a precondition the caller should have validated
  kOutOfMemory = 2,
  kInternal = 3,
  kBadIndex = 4,  // an index value outside its range: see logcal/core/indices.h
};

// Element types of logits and outputs. 16-bit floats travel as their raw bits (Float16,
// BFloat16).
enum class DType : int { kFloat16 = 0, kBFloat16 = 1, kFloat32 = 2, kFloat64 = 3 };

// The one dispatch over DType (host side): f(T{}) with T the element type of `dtype` (Float16,
// BFloat16, float or double); `invalid` for an unknown code.
template <class R, class F>
R visit_dtype(DType dtype, R invalid, F&& f) {
  switch (dtype) {
    case DType::kFloat16:
      return f(Float16{});
    case DType::kBFloat16:
      return f(BFloat16{});
    case DType::kFloat32:
      return f(float{});
    case DType::kFloat64:
      return f(double{});
  }
  return invalid;
}

}  // namespace logcal
