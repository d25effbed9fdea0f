// Shared definitions for the host (C++) and device (CUDA) code of logcal.
//
// Everything in cpp/include/logcal is framework-free and usable from both compilers: the
// numerical core (online softmax state, top-k order, 16-bit float conversions) lives here
// once, and the CPU loops in cpp/src and the CUDA kernels in cuda/ both call it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LOGCAL_HD __host__ __device__ __forceinline__
#else
// always_inline matters beyond speed: these helpers are compiled into translation units built
// for different instruction sets (baseline, AVX2, AVX-512). Inlining them everywhere means no
// caller can ever jump into a copy compiled for an instruction set the machine lacks.
#define LOGCAL_HD inline __attribute__((always_inline))
#endif

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

// Element types of logits and outputs. 16-bit floats travel as their raw bits.
enum class DType : int { kFloat16 = 0, kBFloat16 = 1, kFloat32 = 2, kFloat64 = 3 };

struct Float16 {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

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
