// The bit patterns of floats and doubles, on host and device: the exact conversions, the
// fixed-point terms and the sort keys are integer arithmetic on these.
#pragma once

#include <cstdint>

#include "logcal/core/host_device.h"

namespace logcal {

// The bits of `from` read as a `To` of the same size. A fixed-size copy compiles to a register
// move on both compilers (nvcc included), so one definition serves host and device.
template <class To, class From>
LOGCAL_HD To bit_cast(From from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs types of one size");
  To to;
  __builtin_memcpy(&to, &from, sizeof to);
  return to;
}

LOGCAL_HD float bits_to_float(uint32_t u) { return bit_cast<float>(u); }
LOGCAL_HD uint32_t float_to_bits(float f) { return bit_cast<uint32_t>(f); }
LOGCAL_HD double bits_double(uint64_t u) { return bit_cast<double>(u); }
LOGCAL_HD uint64_t double_bits(double x) { return bit_cast<uint64_t>(x); }

}  // namespace logcal
