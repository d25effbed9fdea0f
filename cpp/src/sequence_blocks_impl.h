// The block kernels of sequence_stats (see sequence_blocks.h), for the instruction-set level of
// the including file, which defines LOGCAL_ISA_NAMESPACE first. Everything here lives in that
// namespace, so the copies built for different levels never meet at link time.
//
// One loop, in the vectors of simd.h at the level's width: the block's kSeqLanes double lanes
// (logcal/core/sequence.h) are kParts vectors, and token i of the block enters lane
// i % kSeqLanes in token order, as in the generic loop of sequence.cpp. float32 tokens are
// widened to double as they are loaded, and the minimum is kept in double lanes as well: the
// conversion is exact (-0.0 included) and keeps every comparison, so it finds the minimum the
// generic loop finds in float. A masked-out token enters the sum as +0.0 and the minimum as
// +inf. NaN is found through the sum (a counted NaN makes it NaN); a NaN sum, rare, sends the
// block to a scan that tells a NaN from inf + (-inf). The tail is scalar.
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including sequence_blocks_impl.h"
#endif

#include <cstdint>
#include <limits>

#include "logcal/core/half.h"
#include "logcal/core/sequence.h"
#include "sequence_blocks.h"
#include "simd.h"

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace {

using VD = simd::V<double>;
using LaneMask = simd::Vec<double>::Mask;
constexpr int kWidth = simd::Vec<double>::kLanes;  // lanes per vector
constexpr int kParts = kSeqLanes / kWidth;         // vectors per kSeqLanes lanes
static_assert(kParts * kWidth == kSeqLanes, "the lanes fill whole vectors");
static_assert(kSeqLanes == 8 && simd::kMaskVectors8 == kParts, "byte_masks8: one mask per part");

// The partial of n tokens x (float or double); mask bytes m when kMasked.
template <bool kMasked, class In>
SeqPartial block(const In* x, const uint8_t* m, int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  const VD inf_v = simd::broadcast(inf);
  VD sum[kParts], lo[kParts];
  for (int p = 0; p < kParts; ++p) {
    sum[p] = VD{};
    lo[p] = inf_v;
  }
  LaneMask kept = {};  // minus the counted tokens, over all lanes (one vector: fewer registers)
  int64_t i = 0;
  for (; i + kSeqLanes <= n; i += kSeqLanes) {
    LaneMask keep_parts[kParts];
    if constexpr (kMasked) {
      simd::byte_masks8(m + i, keep_parts);
      // Summed within the group first: one add per group on the loop-carried chain.
      LaneMask group = keep_parts[0];
      for (int p = 1; p < kParts; ++p) group += keep_parts[p];
      kept += group;  // true is -1
    }
    for (int p = 0; p < kParts; ++p) {
      const VD v = simd::load_as_double(x + i + p * kWidth);
      if constexpr (kMasked) {
        const LaneMask keep = keep_parts[p];
        sum[p] += simd::select<double>(keep, v, VD{});
        const VD w = simd::select<double>(keep, v, inf_v);
        lo[p] = w < lo[p] ? w : lo[p];
      } else {
        sum[p] += v;
        lo[p] = v < lo[p] ? v : lo[p];
      }
    }
  }
  double lane_sum[kSeqLanes], lane_min[kSeqLanes];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kSeqLanes; ++j) {
    lane_sum[j] = sum[j / kWidth][j % kWidth];
    lane_min[j] = lo[j / kWidth][j % kWidth];
  }
  for (int j = 0; j < kWidth; ++j) count -= kept[j];
  for (int j = 0; i + j < n; ++j) {  // the tail, into lanes 0, 1, ...
    const double v = double(x[i + j]);
    const bool keep = !kMasked || m[i + j] != 0;
    lane_sum[j] += keep ? v : 0.0;
    lane_min[j] = (keep && v < lane_min[j]) ? v : lane_min[j];
    count += keep;
  }
  SeqPartial p = seq_block_partial([&](int j) { return lane_sum[j]; },
                                   [&](int j) { return lane_min[j]; }, count, false);
  if (p.sum != p.sum)
    for (int64_t k = 0; k < n; ++k) p.nan = p.nan || ((!kMasked || m[k] != 0) && x[k] != x[k]);
  return p;
}

SeqPartial f32(const float* x, int64_t n) { return block<false>(x, nullptr, n); }
SeqPartial f64(const double* x, int64_t n) { return block<false>(x, nullptr, n); }
SeqPartial f32_masked(const float* x, const uint8_t* m, int64_t n) { return block<true>(x, m, n); }
SeqPartial f64_masked(const double* x, const uint8_t* m, int64_t n) { return block<true>(x, m, n); }

// 16-bit floats widened to float32, exactly (the conversions are branch-free: these loops
// vectorise at the level's width; with F16C GCC uses vcvtph2ps).
void widen_f16(const Float16* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_float(x[i].bits);
}
void widen_bf16(const BFloat16* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(x[i].bits);
}

}  // namespace

extern const SequenceBlocks kSequenceBlocks;
const SequenceBlocks kSequenceBlocks = {&f32,        &f64,       &f32_masked,
                                        &f64_masked, &widen_f16, &widen_bf16};

}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
