// Token-level calibration pairs from a row's statistics, shared by the CPU path and the CUDA
// kernels of CalibrationAccumulator.update_from_logits: confidence = exp(max_logprob), the
// probability of the most likely token, with max_logprob the stored token_stats output (float32
// for 16/32-bit logits); correct = (argmax == target).
//
// The exponential must be the same bits on every device, or the exact calibration state could
// not be bitwise equal between CPU and GPU. exp_det is fdlibm's e_exp.c (Sun, 1993; error
// < 1 ulp) written with plain IEEE double operations: compile it without FMA contraction
// (-ffp-contract=off on the host, -fmad=false for CUDA), as logcal/core/calibration.h requires
// for log_det.
#pragma once

#include <cstdint>

#include "logcal/core/bits.h"
#include "logcal/core/host_device.h"

namespace logcal {
namespace calib {

struct ExpConstants {
  static constexpr double o_threshold = 7.09782712893383973096e+02;
  static constexpr double u_threshold = -7.45133219101941108420e+02;
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double invln2 = 1.44269504088896338700e+00;
  static constexpr double twom1000 = 9.33263618503218878990e-302;  // 2^-1000
  static constexpr double p1 = 1.66666666666666019037e-01;
  static constexpr double p2 = -2.77777777770155933842e-03;
  static constexpr double p3 = 6.61375632143793436117e-05;
  static constexpr double p4 = -1.65339022054652515390e-06;
  static constexpr double p5 = 4.13813679705723846039e-08;
};

LOGCAL_HD double exp_det(double x) {
  using E = ExpConstants;
  const uint64_t bits = double_bits(x);
  const uint32_t hx_signed = static_cast<uint32_t>(bits >> 32);
  const int xsb = static_cast<int>(hx_signed >> 31);
  const uint32_t hx = hx_signed & 0x7fffffffu;
  if (hx >= 0x40862E42u) {  // |x| >= 709.78...
    if (hx >= 0x7ff00000u) {
      if (((hx & 0xfffffu) | static_cast<uint32_t>(bits)) != 0) return x + x;  // NaN
      return xsb == 0 ? x : 0.0;                                               // exp(+-inf)
    }
    if (x > E::o_threshold) return bits_double(0x7ff0000000000000ull);  // overflow: +inf
    if (x < E::u_threshold) return 0.0;                                 // underflow
  }
  double hi = 0.0, lo = 0.0;
  int k = 0;
  if (hx > 0x3fd62e42u) {    // |x| > 0.5 ln2: reduce x = k ln2 + r
    if (hx < 0x3FF0A2B2u) {  // and |x| < 1.5 ln2
      hi = xsb ? x + E::ln2_hi : x - E::ln2_hi;
      lo = xsb ? -E::ln2_lo : E::ln2_lo;
      k = 1 - xsb - xsb;
    } else {
      k = static_cast<int>(E::invln2 * x + (xsb ? -0.5 : 0.5));
      const double t = static_cast<double>(k);
      hi = x - t * E::ln2_hi;  // exact
      lo = t * E::ln2_lo;
    }
    x = hi - lo;
  } else if (hx < 0x3e300000u) {  // |x| < 2^-28
    return 1.0 + x;
  }
  const double t = x * x;
  const double c = x - t * (E::p1 + t * (E::p2 + t * (E::p3 + t * (E::p4 + t * E::p5))));
  if (k == 0) return 1.0 - ((x * c) / (c - 2.0) - x);
  const double y = 1.0 - ((lo - (x * c) / (2.0 - c)) - hi);
  if (k >= -1021) return bits_double(double_bits(y) + (static_cast<uint64_t>(int64_t(k)) << 52));
  return bits_double(double_bits(y) + (static_cast<uint64_t>(int64_t(k) + 1000) << 52)) *
         E::twom1000;
}

// The confidence of a token position: the probability of its most likely token.
LOGCAL_HD double confidence_from_max_logprob(double max_logprob) { return exp_det(max_logprob); }

}  // namespace calib
}  // namespace logcal
