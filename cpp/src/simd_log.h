// calib::log_det (logcal/core/calibration.h) on the vectors of simd.h, for the kernels built
// once per instruction-set level: the calibration terms' NLL and the Platt sums' logits.
#pragma once
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including simd_log.h"
#endif

#include <cstdint>
#include <cstring>

#include "logcal/core/calibration.h"
#include "simd.h"

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace simd {

// log_det lane by lane with the same operations: bit-identical to the scalar one where the
// including file is compiled without FMA contraction (as the calibration kernels are). U
// independent vectors go through it step by step, so that each step's U operations are
// neighbours in program order: the chain is long (a division and two polynomials), and with a
// single vector the out-of-order window cannot hold enough of them to keep the units busy.
template <int U>
LOGCAL_HD void log_det_n(const V<double> (&x)[U], V<double> (&out)[U]) {
  using L = calib::LogConstants;
  using VD = V<double>;
  using VU = Vec<double>::Bits;
  VD f[U], s[U], dk[U], z[U], w[U], r[U], hfsq[U];
  for (int u = 0; u < U; ++u) {
    VU bits;
    std::memcpy(&bits, &x[u], sizeof bits);
    const VU m = bits & L::kSignificand;
    const VU carry = (m + L::kSqrt2Carry) & (uint64_t(1) << 52);
    const VU xn = m | (carry ^ L::kOneBits);                        // 1.m, or 1.m / 2
    const VU k = (bits >> 52) + (carry >> 52) + L::kExponentMagic;  // k + 1.5 * 2^52
    std::memcpy(&f[u], &xn, sizeof xn);
    std::memcpy(&dk[u], &k, sizeof k);
    f[u] = f[u] - 1.0;
    dk[u] = dk[u] - L::kMagic;
  }
  for (int u = 0; u < U; ++u) s[u] = f[u] / (2.0 + f[u]);
  for (int u = 0; u < U; ++u) hfsq[u] = 0.5 * f[u] * f[u];
  for (int u = 0; u < U; ++u) z[u] = s[u] * s[u];
  for (int u = 0; u < U; ++u) w[u] = z[u] * z[u];
  for (int u = 0; u < U; ++u) {
    const VD t1 = w[u] * (L::lg2 + w[u] * (L::lg4 + w[u] * L::lg6));
    const VD t2 = z[u] * (L::lg1 + w[u] * (L::lg3 + w[u] * (L::lg5 + w[u] * L::lg7)));
    r[u] = t2 + t1;
  }
  for (int u = 0; u < U; ++u)
    out[u] = dk[u] * L::ln2_hi - ((hfsq[u] - (s[u] * (hfsq[u] + r[u]) + dk[u] * L::ln2_lo)) - f[u]);
}

}  // namespace simd
}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
