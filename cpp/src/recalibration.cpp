// CPU kernels of the confidence recalibration maps.
//
// Isotonic calibration: the least-squares non-decreasing map of 0/1 correctness on confidence.
// Only the order of the confidences and, per distinct confidence, how many answers there are
// and how many are right matter. So each pair becomes one 64-bit key, the bits of the
// confidence (non-negative doubles order as their bit patterns) above the correctness bit,
// sorted by the parallel radix sort of selective; one walk counts the groups and pools
// adjacent violators on a stack with integer sums, so comparisons and merges are exact.
//
// Platt scaling: Newton's method on the logistic loss of (a, b) needs, per step, the loss, its
// gradient and its Hessian: six sums over the data, taken in one vectorised pass by the kernel
// of the active instruction-set level (recalibration_kernels_impl.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "isa.h"
#include "logcal/cpu_recalibration.h"
#include "parallel.h"
#include "radix_sort.h"

namespace logcal {
namespace cpu {
namespace {

struct Block {
  int64_t right;        // answers right in the block
  int64_t count;        // answers in the block
  int64_t first_group;  // its first distinct confidence
};

// mean(p) >= mean(q), exactly: right_p / count_p >= right_q / count_q.
bool not_below(const Block& p, const Block& q) {
  return static_cast<__int128>(p.right) * q.count >= static_cast<__int128>(q.right) * p.count;
}

}  // namespace

LOGCAL_IN_EACH_LEVEL(Status platt_sums(const PlattArgs& a))

Status isotonic_fit(const IsotonicArgs& a) {
  const int64_t n = a.n;
  if (n < 1 || !a.confidence || !a.correct || !a.x || !a.y || !a.n_kept)
    return Status::kInvalidArgument;
  std::vector<uint64_t> keys, tmp;
  try {
    keys.resize(size_t(n));
    tmp.resize(size_t(n));
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  Status st = parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const double c = a.confidence[i] + 0.0;  // -0.0 becomes +0.0, its equal
      uint64_t bits;
      std::memcpy(&bits, &c, sizeof bits);
      keys[size_t(i)] = (bits << 1) | uint64_t(a.correct[i] != 0);  // c <= 1: bit 63 is free
    }
  });
  if (st != Status::kOk) return st;
  uint64_t* sorted = nullptr;
  st = radix_sort(keys.data(), tmp.data(), n, &sorted);
  if (st != Status::kOk) return st;

  // Groups of equal confidence, ascending: their confidence goes to x, their counts onto the
  // stack of blocks.
  std::vector<Block> stack;
  try {
    stack.reserve(1024);
    int64_t g = 0;
    for (int64_t i = 0; i < n;) {
      const uint64_t value_bits = sorted[i] >> 1;
      int64_t j = i, right = 0;
      for (; j < n && (sorted[j] >> 1) == value_bits; ++j) right += int64_t(sorted[j] & 1);
      std::memcpy(&a.x[g], &value_bits, sizeof(double));
      // Pool adjacent violators: merging while the block below is not lower leaves strictly
      // increasing means, so each block is one maximal constant stretch of the fit.
      Block cur{right, j - i, g};
      while (!stack.empty() && not_below(stack.back(), cur)) {
        cur.right += stack.back().right;
        cur.count += stack.back().count;
        cur.first_group = stack.back().first_group;
        stack.pop_back();
      }
      stack.push_back(cur);
      ++g;
      i = j;
    }
    // Keep each stretch's first and last confidence: linear interpolation between the kept
    // points reproduces the fit at every group.
    const int64_t n_groups = g;
    int64_t k = 0;
    for (size_t s = 0; s < stack.size(); ++s) {
      const int64_t first = stack[s].first_group;
      const int64_t last = s + 1 < stack.size() ? stack[s + 1].first_group - 1 : n_groups - 1;
      const double value = double(stack[s].right) / double(stack[s].count);
      a.x[k] = a.x[first];
      a.y[k++] = value;
      if (last != first) {
        a.x[k] = a.x[last];
        a.y[k++] = value;
      }
    }
    *a.n_kept = k;
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

Status platt_sums(const PlattArgs& a) {
  if (a.n < 1 || a.stride < 1 || !a.confidence || !a.correct || !a.sums ||
      (a.conf_dtype != DType::kFloat32 && a.conf_dtype != DType::kFloat64))
    return Status::kInvalidArgument;
  return LOGCAL_ACTIVE_LEVEL(platt_sums)(a);
}

}  // namespace cpu
}  // namespace logcal
