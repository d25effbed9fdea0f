// What sequence_stats computes, once for both back ends: the partial reduction of a piece of a
// sequence, how pieces merge, the final statistics, and the summation order that makes the
// sums bitwise equal on every CPU instruction set, thread count and GPU.
//
// The order is fixed by the data alone. A sequence is cut into blocks of kSeqBlock tokens; token
// i of a block goes to double accumulator ("lane") i % kSeqLanes, each lane adds its tokens in
// order, the lanes are combined by seq_lane_tree, and the block partials are merged left to
// right with seq_merge. Both constants are part of every sum's rounding: changing either
// changes result bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "logcal/core/host_device.h"

namespace logcal {

constexpr int64_t kSeqBlock = 8192;
constexpr int kSeqLanes = 8;

// The partial reduction of a piece of a sequence. Pieces are combined in sequence order with
// seq_merge, so the result depends only on how a sequence is cut into pieces (kSeqBlock).
struct SeqPartial {
  double sum = 0.0;
  double min = std::numeric_limits<double>::infinity();
  int64_t count = 0;
  bool nan = false;  // a counted NaN: the sequence's float statistics are NaN
};

LOGCAL_HD SeqPartial seq_merge(SeqPartial a, const SeqPartial& b) {
  a.sum += b.sum;
  a.min = b.min < a.min ? b.min : a.min;
  a.count += b.count;
  a.nan = a.nan || b.nan;
  return a;
}

// The sum of lanes [kFirst, kFirst + kCount) of a block, lane(j) giving lane j's sum: pairwise,
// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) for the whole block. IEEE addition is
// commutative, so a butterfly in which lane j adds lane j ^ d for d = 1, 2, 4 (the GPU's
// shuffles) forms these same sums.
template <int kFirst = 0, int kCount = kSeqLanes, class Lane>
LOGCAL_HD double seq_lane_tree(const Lane& lane) {
  static_assert(kCount > 0 && (kCount & (kCount - 1)) == 0, "a power of two of lanes");
  if constexpr (kCount == 1) {
    return lane(kFirst);
  } else {
    return seq_lane_tree<kFirst, kCount / 2>(lane) +
           seq_lane_tree<kFirst + kCount / 2, kCount / 2>(lane);
  }
}

// The partial of a block from its lanes: lane_sum(j) and lane_min(j) (as doubles) of lane j,
// `count` counted tokens, `nan` whether one of them was NaN. The minimum is taken in lane order
// and each lane's in token order, the first of equal values kept: that decides between -0.0 and
// +0.0.
template <class LaneSum, class LaneMin>
LOGCAL_HD SeqPartial seq_block_partial(const LaneSum& lane_sum, const LaneMin& lane_min,
                                       int64_t count, bool nan) {
  SeqPartial p;
  p.sum = seq_lane_tree(lane_sum);
  double lo = std::numeric_limits<double>::infinity();
  for (int j = 0; j < kSeqLanes; ++j) {
    const double m = lane_min(j);
    lo = m < lo ? m : lo;
  }
  p.min = lo;
  p.count = count;
  p.nan = nan;
  return p;
}

struct SeqResult {
  double sum, mean, min, perplexity;
  int64_t count;
};

// API.md: an empty sequence has sum 0, count 0 and NaN for the rest; a NaN log-probability
// makes that sequence's sum, mean, min and perplexity NaN (numpy's propagation), count is kept.
LOGCAL_HD SeqResult seq_finish(const SeqPartial& p) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  SeqResult r;
  r.count = p.count;
  if (p.nan) {
    r.sum = r.mean = r.min = r.perplexity = nan;
  } else if (p.count == 0) {
    r.sum = 0.0;
    r.mean = r.min = r.perplexity = nan;
  } else {
    r.sum = p.sum;
    r.mean = p.sum / double(p.count);
    r.min = p.min;
    r.perplexity = std::exp(-r.mean);
  }
  return r;
}

}  // namespace logcal
