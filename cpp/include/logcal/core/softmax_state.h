// The online softmax state: what one pass over (part of) a row of logits must remember to
// produce its log-sum-exp and entropy, and how two such states merge.
//
// For logits x_i, temperature T and a reference r (the largest logit seen so far), the state
// keeps, in base 2 (exp2 is the cheap instruction on both CPUs and GPUs):
//
//   t_i  = (x_i - r) * log2(e) / T          (<= 0)
//   sum  = sum_i 2^t_i
//   tsum = sum_i 2^t_i * t_i
//
// Then   logsumexp(x / T) = r / T + ln(sum)
//        entropy          = ln(sum) - ln(2) * tsum / sum
//
// Both are independent of r. The entropy form is a sum of two non-negative terms, so unlike
// `lse - sum p_i x_i` it does not cancel when logits are large and the entropy is small.
#pragma once

#include <cmath>
#include <cstdint>

#include "logcal/core/host_device.h"

namespace logcal {

constexpr double kLn2 = 0.693147180559945309417232121458176568;
constexpr double kLog2e = 1.44269504088896340735992468100189214;

// The floor of the exponent t before 2^t is taken, in the compute type C of the logits (float
// for 16/32-bit logits, double for float64). Below it the CPU's vector exp2 (cpp/src/simd.h)
// leaves the range where it is accurate, and the terms clamped up to 2^floor are below the
// resolution of the sum, to which the largest logit contributes exactly 1. Both back ends clamp
// to it, so they add the same terms.
template <class C>
constexpr C kExp2Floor = C(-125);
template <>
constexpr double kExp2Floor<double> = -1020.0;

struct SoftmaxState {
  double ref = -INFINITY;  // largest logit seen (raw units); -inf until a finite one is seen
  double sum = 0.0;
  double tsum = 0.0;
  int64_t n_nan = 0;  // a row with any NaN has undefined statistics

  // Move the reference up to `new_ref` (>= ref), rescaling the sums. `scale` = log2(e) / T.
  LOGCAL_HD void rebase(double new_ref, double scale) {
    if (sum != 0.0) {
      // Guarded: exp2(-inf - -inf) would be NaN (research/kernels.md, pitfall 1).
      const double d = (ref - new_ref) * scale;
      const double a = exp2(d);
      tsum = a * (tsum + d * sum);
      sum = a * sum;
    }
    ref = new_ref;
  }

  // Add partial sums that were accumulated relative to this state's current reference.
  LOGCAL_HD void add(double partial_sum, double partial_tsum) {
    sum += partial_sum;
    tsum += partial_tsum;
  }

  // Associative merge of two states over disjoint parts of a row.
  LOGCAL_HD void merge(SoftmaxState other, double scale) {
    n_nan += other.n_nan;
    if (other.ref > ref) {
      rebase(other.ref, scale);
    } else if (other.ref < ref) {
      other.rebase(ref, scale);
    }
    if (other.ref == ref) add(other.sum, other.tsum);
  }

  // A row has statistics only if it is free of NaN, has a finite largest logit (not all -inf),
  // and no +inf logit (softmax of +inf is undefined, as in torch and numpy).
  LOGCAL_HD bool valid() const { return n_nan == 0 && std::isfinite(ref) && sum > 0.0; }
};

// The statistics derived from a finished state. Every log-probability is formed as
// (x - ref) / T - ln(sum): two non-positive terms, so no cancellation near zero.
struct RowSoftmax {
  double ref;
  double inv_temperature;
  double log_sum;  // ln(sum): also minus the log-probability of the most likely token

  LOGCAL_HD static RowSoftmax from(const SoftmaxState& s, double inv_temperature) {
    return RowSoftmax{s.ref, inv_temperature, log(s.sum)};
  }
  LOGCAL_HD double logsumexp() const { return ref * inv_temperature + log_sum; }
  LOGCAL_HD double max_logprob() const { return -log_sum; }
  LOGCAL_HD double logprob(double x) const { return (x - ref) * inv_temperature - log_sum; }

  // logprob in the compute type C of the write passes. The difference x - ref of two finite
  // logits can overflow C (float32 logits of both signs near 3e38) while the tempered result is
  // finite (T > 1): then, and only then, it is taken in double.
  template <class C>
  LOGCAL_HD C logprob_in(C x) const {
    const C d = x - C(ref);
    if (overflowed(d, x)) return C(logprob(double(x)));
    return d * C(inv_temperature) - C(log_sum);
  }
  template <class C>
  LOGCAL_HD static bool overflowed(C difference, C x) {
    return difference == -C(INFINITY) && x > -C(INFINITY);
  }

  LOGCAL_HD static double entropy(const SoftmaxState& s) {
    const double h = log(s.sum) - kLn2 * s.tsum / s.sum;
    return h > 0.0 ? h : 0.0;  // rounding can leave -1e-17 for a one-hot row
  }
};

}  // namespace logcal
