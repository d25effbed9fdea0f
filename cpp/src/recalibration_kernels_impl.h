// The pass of Platt scaling's Newton steps over the data, W samples a vector: the logit of each
// clipped confidence, then the logistic loss of sigmoid(a z + b) against the outcome, its
// gradient and its Hessian in (a, b) -- six sums, with no array besides the inputs.
//
// Compiled once per instruction-set level by recalibration_kernels_{baseline,avx2,avx512}.cpp,
// each defining LOGCAL_ISA_NAMESPACE first. The logarithms are simd::log_det_n and the
// exponential simd::exp2 (polynomials, no libm call), so a vector of samples costs a few dozen
// operations. The sums are taken over fixed blocks of samples, each block's lanes reduced
// pairwise and the blocks added in order: the same bits whatever the thread count (not across
// levels, whose vectors differ in width).
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including recalibration_kernels_impl.h"
#endif

#include <cstdint>
#include <cstring>
#include <new>

#include "isa_local.h"
#include "logcal/cpu_recalibration.h"
#include "parallel.h"
#include "simd.h"
#include "simd_log.h"

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace {

using VD = simd::V<double>;
using VU = simd::Vec<double>::Bits;
using VM = simd::Vec<double>::Mask;
constexpr int W = simd::Vec<double>::kLanes;
constexpr int kGroup = 8;                      // samples a step: simd::byte_masks8's bytes
constexpr int kVectors = kGroup / W;           // vectors a step
constexpr int64_t kBlock = int64_t(1) << 14;   // samples a block: see the sums above
constexpr double kLog2e = 1.4426950408889634;  // 1 / ln 2
constexpr double kExp2Floor = -1020.0;         // simd::exp2's domain: 2^-1020 stands for 0

enum Sum : int { kLoss = 0, kGradA, kGradB, kHessAA, kHessAB, kHessBB, kNumSums };

LOGCAL_HD VD abs_of(VD x) {
  VU u;
  std::memcpy(&u, &x, sizeof u);
  u &= ~(uint64_t(1) << 63);
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// Eight samples from `c` and `y` at positions (from `first`) 0, stride, ..., those past `count`
// padded with (1/2, 0) and left out of `live`.
struct Group {
  VD c[kVectors];
  VM y[kVectors];  // all ones where correct
  VM live[kVectors];
};

template <class T>
LOGCAL_HD void load_group(const T* c, const uint8_t* y, int64_t stride, int64_t count, Group& g) {
  if (stride == 1 && count == kGroup) {
    for (int v = 0; v < kVectors; ++v) g.c[v] = simd::load_as_double(c + v * W);
    simd::byte_masks8(y, g.y);
    for (int v = 0; v < kVectors; ++v) g.live[v] = VM{} - 1;
    return;
  }
  T cs[kGroup];
  uint8_t ys[kGroup];
  double live[kGroup];
  for (int j = 0; j < kGroup; ++j) {
    cs[j] = j < count ? c[j * stride] : T(0.5);
    ys[j] = j < count ? y[j * stride] : 0;
    live[j] = j < count ? 1.0 : 0.0;
  }
  for (int v = 0; v < kVectors; ++v) {
    g.c[v] = simd::load_as_double(cs + v * W);
    g.live[v] = simd::load(live + v * W) != 0.0;
  }
  simd::byte_masks8(ys, g.y);
}

// Adds eight samples' terms to acc.
LOGCAL_HD void add_group(const Group& g, VD a, VD b, VD (&acc)[kNumSums]) {
  const VD lo = simd::broadcast(kPlattClip), hi = simd::broadcast(1.0 - kPlattClip);
  const VD one = simd::broadcast(1.0), zero = VD{};
  VD ratio[kVectors], z[kVectors], e[kVectors], softplus[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    VD c = simd::select<double>(g.c[v] < lo, lo, g.c[v]);
    c = simd::select<double>(c > hi, hi, c);
    ratio[v] = c / (1.0 - c);  // in [1e-12, 1e12]: a normal double, as log_det needs
  }
  simd::log_det_n<kVectors>(ratio, z);  // the logit
  VD t[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    t[v] = a * z[v] + b;
    // e = exp(-|t|) never overflows: softplus(t) = max(t, 0) + log(1 + e), and
    // sigmoid(t) = 1 / (1 + e) or e / (1 + e) by the sign of t.
    VD x = -abs_of(t[v]) * kLog2e;
    x = simd::select<double>(x < kExp2Floor, simd::broadcast(kExp2Floor), x);
    e[v] = simd::exp2(x);
    ratio[v] = one + e[v];
  }
  simd::log_det_n<kVectors>(ratio, softplus);  // log(1 + e): exact enough where 1 + e rounds
  for (int v = 0; v < kVectors; ++v) {
    const VD inv = one / ratio[v];
    const VD p = simd::select<double>(t[v] >= zero, inv, e[v] * inv);
    const VD y = VD(VM(one) & g.y[v]);
    const VD w = VD(VM(e[v] * inv * inv) & g.live[v]);  // p (1 - p)
    const VD r = VD(VM(p - y) & g.live[v]);
    const VD loss = simd::select<double>(t[v] > zero, t[v], zero) + softplus[v] - y * t[v];
    acc[kLoss] += VD(VM(loss) & g.live[v]);
    acc[kGradA] += r * z[v];
    acc[kGradB] += r;
    acc[kHessAA] += w * z[v] * z[v];
    acc[kHessAB] += w * z[v];
    acc[kHessBB] += w;
  }
}

// The sums over block `blk` of the samples [0, n) (sample i at confidence[i * stride]).
template <class T>
void block_sums(const PlattArgs& a, int64_t blk, double* out) {
  const T* c = static_cast<const T*>(a.confidence);
  const VD va = simd::broadcast(a.a), vb = simd::broadcast(a.b);
  VD acc[kNumSums] = {};
  const int64_t end = (blk + 1) * kBlock < a.n ? (blk + 1) * kBlock : a.n;
  Group g;
  for (int64_t i = blk * kBlock; i < end; i += kGroup) {
    const int64_t count = end - i < kGroup ? end - i : kGroup;
    load_group(c + i * a.stride, a.correct + i * a.stride, a.stride, count, g);
    add_group(g, va, vb, acc);
  }
  for (int k = 0; k < kNumSums; ++k) out[k] = simd::reduce_sum<double>(acc[k]);
}

}  // namespace

Status platt_sums(const PlattArgs& a) {
  const int64_t n_blocks = (a.n + kBlock - 1) / kBlock;
  Vector<double> partial;
  try {
    partial.assign(size_t(n_blocks) * kNumSums, 0.0);
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  const bool f32 = a.conf_dtype == DType::kFloat32;
  const Status st = parallel_for(n_blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      double* out = partial.data() + blk * kNumSums;
      if (f32)
        block_sums<float>(a, blk, out);
      else
        block_sums<double>(a, blk, out);
    }
  });
  if (st != Status::kOk) return st;
  for (int k = 0; k < kNumSums; ++k) a.sums[k] = 0.0;
  for (int64_t blk = 0; blk < n_blocks; ++blk)
    for (int k = 0; k < kNumSums; ++k) a.sums[k] += partial[size_t(blk * kNumSums + k)];
  return Status::kOk;
}

}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
