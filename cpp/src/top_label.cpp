// top_label on the CPU: the largest class probability of each row and whether its class is the
// label, with the probabilities and labels checked in the same pass. Rows are split into one
// contiguous range per thread; each range reports its first invalid entries and the earliest
// range's report wins, so the answer is that of a sequential scan.
#include <algorithm>
#include <new>
#include <vector>

#include "logcal/cpu_calibration.h"
#include "parallel.h"

namespace logcal {
namespace cpu {
namespace {

// Rows per thread at least: a row is a few to a few thousand classes.
constexpr int64_t kMinRowsPerThread = 1 << 14;

struct RangeReport {
  int64_t bad_prob = -1, bad_label = -1;
};

template <class T>
RangeReport top_label_rows(const TopLabelArgs& a, int64_t r0, int64_t r1) {
  const T* probs = static_cast<const T*>(a.probs);
  T* conf = static_cast<T*>(a.confidence);
  const int64_t k = a.k, cs = a.class_stride;
  RangeReport report;
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = probs + r * a.row_stride;
    // Branch-free scan: the comparisons are data-dependent. `valid` is false on NaN.
    T best = row[0];
    int64_t arg = 0;
    bool valid = true;
    for (int64_t j = 0; j < k; ++j) {
      const T v = row[j * cs];
      valid &= (v >= T(0)) & (v <= T(1));
      const bool above = v > best;
      best = above ? v : best;
      arg = above ? j : arg;
    }
    const int64_t label = a.labels[r * a.label_stride];
    const bool label_ok = label >= 0 && label < k;
    if (!valid && report.bad_prob < 0) {  // rare: find the column
      int64_t j = 0;
      // Bounded: another thread may have mended the value since it was read.
      while (j < k - 1 && row[j * cs] >= T(0) && row[j * cs] <= T(1)) ++j;
      report.bad_prob = r * k + j;
    }
    if (!label_ok && report.bad_label < 0) report.bad_label = r;
    conf[r] = best;
    a.correct[r] = uint8_t(arg == label);
  }
  return report;
}

}  // namespace

Status top_label(const TopLabelArgs& a) {
  if (a.n < 0 || a.k < 1 ||
      (a.n > 0 && (a.probs == nullptr || a.labels == nullptr || a.confidence == nullptr ||
                   a.correct == nullptr)))
    return Status::kInvalidArgument;
  if (a.first_bad_prob == nullptr || a.first_bad_label == nullptr) return Status::kInvalidArgument;
  *a.first_bad_prob = *a.first_bad_label = -1;
  if (a.n == 0) return Status::kOk;
  try {
    const int64_t work = a.n * a.k;
    const int64_t tasks =
        std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), work / (kMinRowsPerThread * 8)));
    std::vector<RangeReport> reports(static_cast<size_t>(tasks));
    const Status st = parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = a.n * t / tasks, r1 = a.n * (t + 1) / tasks;
        reports[size_t(t)] = a.probs_type == ConfType::kFloat32 ? top_label_rows<float>(a, r0, r1)
                                                                : top_label_rows<double>(a, r0, r1);
      }
    });
    if (st != Status::kOk) return st;
    for (const RangeReport& r : reports) {  // ranges are in order: the first report is the first
      if (*a.first_bad_prob < 0) *a.first_bad_prob = r.bad_prob;
      if (*a.first_bad_label < 0) *a.first_bad_label = r.bad_label;
    }
    return Status::kOk;
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
}

}  // namespace cpu
}  // namespace logcal
