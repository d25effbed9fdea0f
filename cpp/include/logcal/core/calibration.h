// The numerical core of the calibration statistics, shared by the CPU loops and the CUDA
// kernels: the exact bin index, the fixed-point representation of every per-sample term,
// the 128-bit sums and their merge, a deterministic logarithm for the NLL terms, and the
// counter-based Poisson weights of the bootstrap.
//
// Why integers: every statistic behind every metric is a sum over samples. Summed in floating
// point, the result depends on the order of the additions (chunking, threads, devices). Each
// per-sample term is therefore first turned into a fixed-point integer -- a deterministic
// function of the sample's bits alone -- and the integers are summed exactly. Integer addition
// is associative and commutative, so any split of the data, in any order, on any number of
// threads gives the same bits.
//
// Fixed point: a term v >= 0 is stored as T(v) = floor(v * 2^64) in 128 bits, i.e. a resolution
// of 2^-64 (5.4e-20) per unit. Confidences and 0/1 correctness are exact up to that truncation
// (a double confidence c >= 2^-11 is represented exactly). Products ((c-y)^2, c*y, weights times
// a value) and the NLL terms are first evaluated in IEEE double arithmetic, which is deterministic
// (no contraction into FMA: the code that evaluates them is compiled with -ffp-contract=off on
// the host and -fmad=false for CUDA), then truncated. Error per sample: at most one
// double rounding (relative 2^-53) plus 2^-64 absolute; the NLL also carries the error of
// `log_det` below (< 1 ulp). Capacity: a sum holds up to 2^64 units (1.8e19), e.g. 10^12
// samples with weight * value up to 1.8e7 each; 10^12 unweighted confidences use less than 2^40.
#pragma once

#include <cstdint>

#if !defined(__CUDACC__)
#include <cmath>
#endif

#include "logcal/core/bits.h"
#include "logcal/core/host_device.h"

namespace logcal {
namespace calib {

// ---------------------------------------------------------------------------------------------
// 128-bit unsigned sums: two words, so the same code runs on the host and on the device.
// ---------------------------------------------------------------------------------------------

constexpr int kFixedFracBits = 64;  // T(v) = floor(v * 2^64)

// Trivial types on purpose (no default member initialisers): no constructor is ever emitted out
// of line, so translation units built for different instruction sets cannot share one.
struct U128 {
  uint64_t lo;
  uint64_t hi;
};

LOGCAL_HD void add_to(U128& a, const U128& b) {
  a.lo += b.lo;
  a.hi += b.hi + (a.lo < b.lo ? 1u : 0u);
}

LOGCAL_HD void add_to(U128& a, uint64_t lo, uint64_t hi) {
  a.lo += lo;
  a.hi += hi + (a.lo < lo ? 1u : 0u);
}

// a += w * b (modulo 2^128; the sums never come near it, see the capacity above).
LOGCAL_HD void add_mul_to(U128& a, const U128& b, uint64_t w) {
#if defined(__CUDA_ARCH__)
  const uint64_t plo = b.lo * w;
  const uint64_t phi = __umul64hi(b.lo, w) + b.hi * w;
#else
  const unsigned __int128 p = static_cast<unsigned __int128>(b.lo) * w;
  const uint64_t plo = static_cast<uint64_t>(p);
  const uint64_t phi = static_cast<uint64_t>(p >> 64) + b.hi * w;
#endif
  add_to(a, plo, phi);
}

// T(v) = floor(v * 2^64) for 0 <= v < 2^41, exactly, from the bits of v: v = m * 2^(E - 1075)
// with m the 53-bit significand, so T = m * 2^s with s = E - 1011 (a shift left when s >= 0,
// right otherwise). Subnormal v (< 2^-1022) give 0. Only integer operations: bit-identical on
// every instruction set and device.
constexpr double kFixedMaxValue = 2199023255552.0;  // 2^41, exclusive

LOGCAL_HD U128 to_fixed(double v) {
  const uint64_t bits = double_bits(v);
  const int64_t e = static_cast<int64_t>(bits >> 52);
  U128 t{0, 0};
  if (e == 0) return t;  // zero or subnormal
  const uint64_t m = (bits & ((uint64_t(1) << 52) - 1)) | (uint64_t(1) << 52);
  const int64_t s = e - 1011;
  if (s >= 0) {  // s <= 52 for v < 2^41
    t.lo = m << s;
    t.hi = (m >> 11) >> (53 - s);  // = m >> (64 - s), without a shift by 64
  } else {
    t.lo = -s >= 64 ? 0 : m >> -s;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// The exact uniform bin index.
// ---------------------------------------------------------------------------------------------

// Bin k of n holds the confidences c with k/n <= c < (k+1)/n; the last bin also holds 1.0. The
// decision is made on the stored value, in exact arithmetic: k = floor(c * n) of the *real*
// product, clamped to n - 1. (The double nearest 0.3 is below 3/10, so with n = 10 it is in
// bin 2, although 0.3 * 10 rounds to exactly 3.0.)
//
// Why it is exact (c in [0, 1] a double, 1 <= n < 2^31, so n and every k <= n are doubles):
// p = fl(c * n) is the product rounded to nearest, and rounding is monotone. If no integer lies
// between c * n and p, floor(p) = floor(c * n). If an integer j did lie between them, monotone
// rounding would force p = j (c*n < j <= p gives p <= fl(j) = j; p < j <= c*n gives p >= j).
// So floor(p) is wrong only when p is itself an integer k and the real c * n < k; then the FMA
// residual fma(c, n, -k) = c*n - k, rounded once, has the sign of the exact difference (a
// nonzero multiple of ulp(c) never rounds to zero), and k - 1 is the answer. A float32
// confidence is widened to double exactly first, so float32 and float64 inputs agree.
LOGCAL_HD int64_t uniform_bin(double c, int64_t n) {
  const double nd = static_cast<double>(n);
  const double p = c * nd;
  int64_t k = static_cast<int64_t>(p);  // truncation is floor for p >= 0
  if (static_cast<double>(k) == p && k > 0) {
#if defined(__CUDACC__)
    if (::fma(c, nd, -p) < 0.0) --k;
#else
    if (std::fma(c, nd, -p) < 0.0) --k;
#endif
  }
  return k < n ? k : n - 1;
}

// Bin of c among explicit inner edges e[0] <= ... <= e[m-1], giving m + 1 bins.
// right_closed = false: bins [e[j-1], e[j]) (the count of edges <= c; torch.bucketize(right=True)).
// right_closed = true:  bins (e[j-1], e[j]] (the count of edges <  c; numpy.searchsorted(side=
// "left"), scikit-learn's calibration_curve).
LOGCAL_HD int64_t edges_bin(double c, const double* e, int64_t m, bool right_closed) {
  int64_t lo = 0, len = m;
  while (len > 0) {
    const int64_t half = len >> 1;
    const double v = e[lo + half];
    const bool below = right_closed ? (v < c) : (v <= c);
    if (below) {
      lo += half + 1;
      len -= half + 1;
    } else {
      len = half;
    }
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------
// A deterministic natural logarithm for the NLL terms.
// ---------------------------------------------------------------------------------------------

// log(x) for a positive normal double, by the algorithm of fdlibm's e_log.c (Sun, 1993): reduce
// x = 2^k * (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)), then log(1 + f) = f - hfsq + s*(hfsq + R)
// with s = f / (2 + f) and R a minimax polynomial in s^2; error < 1 ulp. Written with plain IEEE
// operations and no branches, so the scalar and vector CPU loops and the CUDA kernels give the
// same bits: libm's log differs between platforms, this one does not. The reduction works on the
// 64-bit pattern (fdlibm's 32-bit high-word steps, shifted left by 32): the significand m gets
// the exponent of 1 or of 1/2, whichever puts it in [sqrt(2)/2, sqrt(2)), and k counts the
// difference.
struct LogConstants {
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double lg1 = 6.666666666666735130e-01;
  static constexpr double lg2 = 3.999999999940941908e-01;
  static constexpr double lg3 = 2.857142874366239149e-01;
  static constexpr double lg4 = 2.222219843214978396e-01;
  static constexpr double lg5 = 1.818357216161805012e-01;
  static constexpr double lg6 = 1.531383769920937332e-01;
  static constexpr double lg7 = 1.479819860511658591e-01;
  static constexpr uint64_t kSignificand = (uint64_t(1) << 52) - 1;
  // Added to the significand, this carries into bit 52 exactly when 1.m >= sqrt(2) (fdlibm's
  // 0x95f64 on the high word).
  static constexpr uint64_t kSqrt2Carry = uint64_t(0x95f64) << 32;
  static constexpr uint64_t kOneBits = uint64_t(0x3ff) << 52;
  // The bits of 1.5 * 2^52 - 1023: adding the biased exponent (and the carry) to it and
  // subtracting 1.5 * 2^52 gives k as a double, exactly.
  static constexpr uint64_t kExponentMagic = 0x4338000000000000ull - 1023;
  static constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
};

LOGCAL_HD double log_det(double x) {
  using L = LogConstants;
  const uint64_t bits = double_bits(x);
  const uint64_t m = bits & L::kSignificand;
  const uint64_t carry = (m + L::kSqrt2Carry) & (uint64_t(1) << 52);  // 1.m >= sqrt(2)
  const double xn = bits_double(m | (carry ^ L::kOneBits));           // 1.m, or 1.m / 2
  const double dk = bits_double((bits >> 52) + (carry >> 52) + L::kExponentMagic) - L::kMagic;
  const double f = xn - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  const double w = z * z;
  const double t1 = w * (L::lg2 + w * (L::lg4 + w * L::lg6));
  const double t2 = z * (L::lg1 + w * (L::lg3 + w * (L::lg5 + w * L::lg7)));
  const double r = t2 + t1;
  const double hfsq = 0.5 * f * f;
  return dk * L::ln2_hi - ((hfsq - (s * (hfsq + r) + dk * L::ln2_lo)) - f);
}

// A probability clipped to [eps, 1 - eps] for the NLL (eps in [1e-300, 0.5), default 1e-12).
LOGCAL_HD double clip_probability(double p, double eps) {
  const double lo = p < eps ? eps : p;
  const double hi = 1.0 - eps;
  return lo > hi ? hi : lo;
}

// -[y log clip(c) + (1 - y) log clip(1 - c)]: the probability given to each outcome is clipped
// after the complement is taken (as scikit-learn's log_loss does), so a confident wrong answer
// costs at most -log(eps) even where 1 - eps rounds to 1 (eps < 1.1e-16; clipping c first would
// then take the log of 0). For y in {0, 1} this equals the one-log form bit for bit (the other
// term is a signed zero), so the binary fast path and the soft-label path agree.
LOGCAL_HD double nll_term(double c, double y, double eps) {
  return -(y * log_det(clip_probability(c, eps)) +
           (1.0 - y) * log_det(clip_probability(1.0 - c, eps)));
}

LOGCAL_HD double nll_term_binary(double c, bool y, double eps) {
  return -log_det(clip_probability(y ? c : 1.0 - c, eps));
}

// ---------------------------------------------------------------------------------------------
// Per-bin state.
// ---------------------------------------------------------------------------------------------

// The fixed-point sums kept per bin, in this order (w = the sample's weight, 1 if unweighted;
// y = correctness in [0, 1]; c = confidence; nll = the clipped negative log-likelihood).
// The squared error (c - y)^2 is kept rather than c^2: the Brier score from
// sum c^2 - 2 sum c y + sum y^2 would cancel (its error would scale with sum c^2, not with the
// score); sum c^2 = sum (c - y)^2 + 2 sum c y - sum y^2 is derived when wanted.
// The variance of Spiegelhalter's statistic, sum w c (1 - c) (1 - 2c)^2, is a field of its own:
// from power sums of c it would cancel; each term is in [0, 1/16], so its sum cannot.
enum Field : int {
  kWeight = 0,            // sum w
  kConf = 1,              // sum w c
  kCorrect = 2,           // sum w y
  kSqError = 3,           // sum w (c - y)^2
  kConfCorrect = 4,       // sum w c y
  kCorrectSq = 5,         // sum w y^2
  kNll = 6,               // sum w nll
  kSpiegelhalterVar = 7,  // sum w spiegelhalter_var(c)
  kNumFields = 8,
};

// c (1 - c) (1 - 2c)^2, the variance of (y - c)(1 - 2c) for y ~ Bernoulli(c): one expression
// for scalars and for the CPU's vectors (T = double or a vector of doubles), in this order of
// operations, so that every path -- compiled without FMA contraction -- gives the same bits.
template <class T>
LOGCAL_HD T spiegelhalter_var(T c) {
  const T d = 1.0 - 2.0 * c;
  return (c * (1.0 - c)) * (d * d);
}

struct BinState {
  int64_t count;  // number of samples
  U128 sum[kNumFields];

  LOGCAL_HD void merge(const BinState& o) {
    count += o.count;
    for (int f = 0; f < kNumFields; ++f) add_to(sum[f], o.sum[f]);
  }
};

// ---------------------------------------------------------------------------------------------
// Poisson bootstrap weights from a counter-based generator.
// ---------------------------------------------------------------------------------------------

// The bootstrap resamples units of `block` consecutive samples (block = 1: single samples): unit
// u = (offset + i) / block, where i is the sample's position. Replicate r gives unit u the weight
// W(seed, u, r) ~ Poisson(1), a pure function of those three integers -- no generator state is
// carried from sample to sample, so any chunking, order or thread count draws the same weights,
// and the replicate sums merge exactly like the main ones.

// SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
LOGCAL_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

LOGCAL_HD uint64_t bootstrap_unit_key(uint64_t seed, uint64_t unit) {
  return mix64(mix64(seed ^ 0x6c6f6763616c2121ull) + (unit + 1) * kGolden);
}

// Poisson(1) by inversion of a uniform 64-bit integer u: the number of thresholds
// floor(P(X <= k) * 2^64), k = 0..19, at or below u (thresholds computed with 80-digit decimals;
// literals rather than a table, so device code needs no constant memory). Exact up to the 2^-64
// quantisation of the CDF; capped at 20 (probability 1.6e-19).
constexpr uint32_t kPoissonMax = 20;

LOGCAL_HD uint32_t poisson1(uint64_t u) {
  uint32_t k = 0;
  k += u >= 0x5e2d58d8b3bcdf1aull ? 1u : 0u;
  k += u >= 0xbc5ab1b16779be35ull ? 1u : 0u;
  k += u >= 0xeb715e1dc1582dc2ull ? 1u : 0u;
  k += u >= 0xfb23979734a252f1ull ? 1u : 0u;
  k += u >= 0xff1025f59174dc3dull ? 1u : 0u;
  k += u >= 0xffd90f3ba4055e19ull ? 1u : 0u;
  k += u >= 0xfffa8b71fc72c913ull ? 1u : 0u;
  k += u >= 0xffff540c0914b3c9ull ? 1u : 0u;
  k += u >= 0xffffed1f4aa8f120ull ? 1u : 0u;
  k += u >= 0xfffffe216e641462ull ? 1u : 0u;
  k += u >= 0xffffffd4d85d3183ull ? 1u : 0u;
  k += u >= 0xfffffffc6da262b4ull ? 1u : 0u;
  k += u >= 0xffffffffba12d178ull ? 1u : 0u;
  k += u >= 0xfffffffffb07c64cull ? 1u : 0u;
  k += u >= 0xffffffffffab8ea5ull ? 1u : 0u;
  k += u >= 0xfffffffffffabe22ull ? 1u : 0u;
  k += u >= 0xffffffffffffb11aull ? 1u : 0u;
  k += u >= 0xfffffffffffffba1ull ? 1u : 0u;
  k += u >= 0xffffffffffffffc5ull ? 1u : 0u;
  k += u >= 0xfffffffffffffffdull ? 1u : 0u;
  return k;
}

LOGCAL_HD uint32_t bootstrap_weight(uint64_t unit_key, uint64_t replicate) {
  return poisson1(mix64(unit_key ^ mix64((replicate + 1) * kGolden)));
}

// Replicate state: per bin the sums behind the binned metrics (ECE, MCE, RMSCE and the debiased
// L2, which needs only the bin's weight and label mean), and totals for the Brier score and NLL.
enum BootBinField : int { kBootWeight = 0, kBootConf = 1, kBootCorrect = 2, kNumBootBinFields = 3 };
enum BootTotalField : int { kBootSqError = 0, kBootNll = 1, kNumBootTotalFields = 2 };

}  // namespace calib
}  // namespace logcal
