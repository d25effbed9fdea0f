// Conversions between float32 and the 16-bit formats, from their bits, on host and device.
// Written with integer arithmetic and selects only, so loops over them vectorise on the CPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "logcal/common.h"

namespace logcal {

LOGCAL_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

LOGCAL_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// bfloat16 is the top half of a float32: widening is exact.
LOGCAL_HD float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

// Round to nearest, ties to even; NaN stays a (quiet) NaN.
LOGCAL_HD uint16_t float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const bool is_nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return uint16_t(is_nan ? ((u >> 16) | 0x0040u) : rounded);
}

// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN).
LOGCAL_HD float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;  // exponent and mantissa
  uint32_t bits = (em << 13) + ((127u - 15u) << 23);
  bits = em >= 0x7C00u ? bits + ((128u - 16u) << 23) : bits;  // inf / NaN: exponent all ones
  // Zero and subnormals: the value is em * 2^-24, exact in float32.
  bits = em < 0x0400u ? float_to_bits(float(em) * 5.9604644775390625e-8f) : bits;
  return bits_to_float(bits | sign);
}

// IEEE binary32 -> binary16, round to nearest, ties to even; overflow gives infinity.
LOGCAL_HD uint16_t float_to_fp16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7E00u);   // NaN
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // rounds to >= 65520: infinity
  if (a < 0x38800000u) {
    // Result is subnormal (or zero): let the float adder do the rounding. Adding 0.5 puts the
    // value's 2^-24 units in the low mantissa bits, rounded to nearest even.
    const float shifted = bits_to_float(a) + 0.5f;
    return uint16_t(sign | (float_to_bits(shifted) - 0x3F000000u));
  }
  // Normal: rebias the exponent, then round the 13 dropped mantissa bits to nearest even.
  const uint32_t rebased = a - ((127u - 15u) << 23);
  const uint32_t rounded = (rebased + 0x0FFFu + ((rebased >> 13) & 1u)) >> 13;
  return uint16_t(sign | rounded);
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
