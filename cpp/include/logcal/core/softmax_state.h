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
//
// The varentropy, Var_p[ln p] = ln(2)^2 Var_p[t], is kept only when asked for, in centred form
// (SurprisalMoments): the p-weighted mean of t and m2 = sum_i 2^t_i (t_i - mean)^2, so that
//
//        varentropy       = ln(2)^2 * m2 / sum
//
// without the cancellation of `qsum / sum - (tsum / sum)^2` (qsum = sum 2^t t^2), which loses
// up to log10(1 / p_max) digits when the variance is small against the mean of t (a near-flat
// row over many tokens: the mean of t is -log2 p_max plus the entropy gap, the variance tiny).
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

// The p-weighted mean of t and the centred second moment m2 = sum 2^t (t - mean)^2 of (part of)
// a row, whose weights sum to the state's `sum`. Merged as Chan, Golub and LeVeque's pairwise
// update, in which every term is non-negative: the varentropy keeps its relative accuracy
// however small it is against the mean of t.
struct SurprisalMoments {
  double mean = 0.0;
  double m2 = 0.0;

  // The reference moved: every t shifted by d and every weight scaled by a = 2^d.
  LOGCAL_HD void rebase(double d, double a) {
    mean += d;
    m2 *= a;
  }

  // Adds a disjoint part of weight `w_part` (its sum of 2^t, in the same reference) to these
  // moments of weight `w`.
  LOGCAL_HD void merge(const SurprisalMoments& part, double w, double w_part) {
    if (!(w_part > 0.0)) return;
    if (!(w > 0.0)) {
      *this = part;
      return;
    }
    const double f = w_part / (w + w_part);
    const double delta = part.mean - mean;
    mean += delta * f;
    m2 += part.m2 + delta * delta * (w * f);
  }

  // The moments of a part from its sums about a centre c (in t units): s = sum 2^t,
  // tc = sum 2^t (t - c), qc = sum 2^t (t - c)^2. The closer c is to the part's mean, the fewer
  // digits qc - tc^2 / s cancels (none at all at the mean); rounding may leave it just below 0.
  LOGCAL_HD static SurprisalMoments about(double c, double s, double tc, double qc) {
    const double m2 = qc - tc * (tc / s);
    return SurprisalMoments{c + tc / s, m2 > 0.0 ? m2 : 0.0};
  }
};

// Where the varentropy's sums of a block of logits are centred: at the mean of t over the row so
// far, rounded to a logit value `raw` of the compute type C, so that t - centre is formed as
// (x - raw) * scale with the relative accuracy of its own (small) size. `t` is that centre in t
// units as actually used, and lo / hi clamp t - centre as t itself is clamped to
// [kExp2Floor, 0] (see both back ends).
template <class C>
struct MomentCentre {
  C raw;
  double t;
  C lo, hi;

  // `scale` is the factor the back end multiplies (x - raw) by, as it holds it (in C).
  LOGCAL_HD static MomentCentre at(double ref, double mean_t, C scale, C floor) {
    const double want = ref + mean_t / double(scale);
    // Outside C's range (only for temperatures near the largest float), centre on the reference
    // instead: a centre costs digits only, never correctness.
    const double largest = sizeof(C) == 4 ? 3.4028234663852886e38 : 1.7976931348623157e308;
    const C raw = want >= -largest && want <= largest ? C(want) : C(ref);
    const double t = (double(raw) - ref) * double(scale);
    return MomentCentre{raw, t, C(double(floor) - t), C(-t)};
  }
};

struct SoftmaxState {
  double ref = -INFINITY;  // largest logit seen (raw units); -inf until a finite one is seen
  double sum = 0.0;
  double tsum = 0.0;
  int64_t n_nan = 0;         // a row with any NaN has undefined statistics
  SurprisalMoments moments;  // kept only by the kernels that compute the varentropy

  // Move the reference up to `new_ref` (>= ref), rescaling the sums. `scale` = log2(e) / T.
  // kMoments: the varentropy's moments too, whose mean moves by (ref - new_ref) * t_scale, with
  // t_scale the scale as the kernel formed each t (in its compute type): the mean then moves
  // exactly with the t it averages, which its accuracy against a small variance needs.
  template <bool kMoments = false>
  LOGCAL_HD void rebase(double new_ref, double scale, double t_scale = 0.0) {
    if (sum != 0.0) {
      // Guarded: exp2(-inf - -inf) would be NaN (research/kernels.md, pitfall 1).
      const double d = (ref - new_ref) * scale;
      const double a = exp2(d);
      tsum = a * (tsum + d * sum);
      sum = a * sum;
      if (kMoments) moments.rebase((ref - new_ref) * t_scale, a);
    }
    ref = new_ref;
  }

  // Add partial sums that were accumulated relative to this state's current reference.
  LOGCAL_HD void add(double partial_sum, double partial_tsum) {
    sum += partial_sum;
    tsum += partial_tsum;
  }

  // Associative merge of two states over disjoint parts of a row.
  template <bool kMoments = false>
  LOGCAL_HD void merge(SoftmaxState other, double scale, double t_scale = 0.0) {
    n_nan += other.n_nan;
    if (other.ref > ref) {
      rebase<kMoments>(other.ref, scale, t_scale);
    } else if (other.ref < ref) {
      other.rebase<kMoments>(ref, scale, t_scale);
    }
    if (other.ref == ref) {
      if (kMoments) moments.merge(other.moments, sum, other.sum);
      add(other.sum, other.tsum);
    }
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

  // Var_p[ln p] = sum_i p_i (ln p_i + H)^2, from a state that kept its moments.
  LOGCAL_HD static double varentropy(const SoftmaxState& s) {
    return kLn2 * kLn2 * (s.moments.m2 / s.sum);
  }
};

}  // namespace logcal
