// Conversions between float32 and the 16-bit formats, from their bits, on host and device.
// Written with integer arithmetic and selects only, so loops over them vectorise on the CPU.
#pragma once

#include <cstdint>

#include "logcal/core/bits.h"
#include "logcal/core/host_device.h"

namespace logcal {

// The 16-bit element types travel as their raw bits.
struct Float16 {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// bfloat16 is the top half of a float32: widening is exact.
LOGCAL_HD float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

// Round to nearest, ties to even; NaN stays a (quiet) NaN.
LOGCAL_HD uint16_t float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const bool is_nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return uint16_t(is_nan ? ((u >> 16) | 0x0040u) : rounded);
}

// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN). Every case is
// computed and the right one picked with bit masks: no branches, so loops over it vectorise.
LOGCAL_HD float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;  // exponent and mantissa
  // Normal numbers: rebias the exponent; infinities and NaN need an all-ones exponent.
  const uint32_t normal =
      (em << 13) + ((127u - 15u) << 23) + uint32_t(em >= 0x7C00u) * ((128u - 16u) << 23);
  // Zero and subnormals: the value is em * 2^-24, exact in float32.
  const uint32_t subnormal = float_to_bits(float(em) * 5.9604644775390625e-8f);
  const uint32_t is_subnormal = 0u - uint32_t(em < 0x0400u);  // all ones or zero
  return bits_to_float(((normal & ~is_subnormal) | (subnormal & is_subnormal)) | sign);
}

// IEEE binary32 -> binary16, round to nearest, ties to even; overflow gives infinity. Branch-free
// like fp16_to_float.
LOGCAL_HD uint16_t float_to_fp16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  // Normal result: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  const uint32_t rebased = a - ((127u - 15u) << 23);
  const uint32_t normal = (rebased + 0x0FFFu + ((rebased >> 13) & 1u)) >> 13;
  // Subnormal result (or zero): adding 0.5 puts the value's 2^-24 units in the low mantissa
  // bits, and the float adder rounds them to nearest even.
  const uint32_t subnormal = float_to_bits(bits_to_float(a) + 0.5f) - 0x3F000000u;
  const uint32_t is_nan = 0u - uint32_t(a > 0x7F800000u);
  const uint32_t is_inf = 0u - uint32_t(a >= 0x477FF000u);  // rounds to >= 65520, or inf/NaN
  const uint32_t is_subnormal = 0u - uint32_t(a < 0x38800000u);
  uint32_t r = (normal & ~is_subnormal) | (subnormal & is_subnormal);
  r = (r & ~is_inf) | (0x7C00u & is_inf);
  r = (r & ~is_nan) | (0x7E00u & is_nan);
  return uint16_t(sign | r);
}

// Uniform access by element type, for templated loops.
template <class T>
struct Scalar;
template <>
struct Scalar<float> {
  using Compute = float;
  LOGCAL_HD static float load(float x) { return x; }
  LOGCAL_HD static float store(float x) { return x; }
};
template <>
struct Scalar<double> {
  using Compute = double;
  LOGCAL_HD static double load(double x) { return x; }
  LOGCAL_HD static double store(double x) { return x; }
};
template <>
struct Scalar<BFloat16> {
  using Compute = float;
  LOGCAL_HD static float load(BFloat16 x) { return bf16_to_float(x.bits); }
  LOGCAL_HD static BFloat16 store(float x) { return BFloat16{float_to_bf16(x)}; }
};
template <>
struct Scalar<Float16> {
  using Compute = float;
  LOGCAL_HD static float load(Float16 x) { return fp16_to_float(x.bits); }
  LOGCAL_HD static Float16 store(float x) { return Float16{float_to_fp16(x)}; }
};

}  // namespace logcal
