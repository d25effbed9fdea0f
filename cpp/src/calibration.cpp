// calibration_stats on the CPU: checks the kernel's preconditions, splits the samples into one
// contiguous range per thread, runs the kernel of the active instruction-set level on each range
// into a private state, and adds the states up. The sums are integers, so the order of the
// additions cannot change a bit; the fixed order (range 0, 1, ...) is kept anyway.
#include <algorithm>
#include <new>
#include <vector>

#include "isa.h"
#include "logcal/cpu.h"
#include "logcal/cpu_calibration.h"
#include "parallel.h"

namespace logcal {
namespace cpu {

LOGCAL_IN_EACH_LEVEL(int64_t calibration_range(const CalibrationArgs& a, int64_t begin, int64_t end,
                                               calib::BinState* bins, calib::U128* boot_bins,
                                               calib::U128* boot_totals))

namespace {

using RangeFn = int64_t (*)(const CalibrationArgs&, int64_t, int64_t, calib::BinState*,
                            calib::U128*, calib::U128*);

RangeFn range_fn() { return LOGCAL_ACTIVE_LEVEL(calibration_range); }

// Samples per thread at least: below this, threads cost more than they save.
constexpr int64_t kMinSamplesPerThread = int64_t(1) << 16;

void add_words(uint64_t* dst, const calib::U128& v) {
  calib::U128 cur{dst[0], dst[1]};
  calib::add_to(cur, v);
  dst[0] = cur.lo;
  dst[1] = cur.hi;
}

bool valid_args(const CalibrationArgs& a) {
  if (a.n < 0 || a.n_bins < 1 || a.n_bins > (int64_t(1) << 30)) return false;
  if (a.n > 0 && (a.confidence == nullptr || a.correct == nullptr)) return false;
  if (a.count == nullptr || a.sums == nullptr || a.first_invalid == nullptr) return false;
  if (a.edges != nullptr && a.n_edges + 1 != a.n_bins) return false;
  if (!(a.eps > 0.0 && a.eps < 0.5)) return false;
  if (a.n_bootstrap < 0) return false;
  if (a.n_bootstrap > 0 &&
      (a.block < 1 || a.offset < 0 || a.boot_bins == nullptr || a.boot_totals == nullptr))
    return false;
  return true;
}

}  // namespace

Status calibration_stats(const CalibrationArgs& a) {
  if (!valid_args(a)) return Status::kInvalidArgument;
  *a.first_invalid = -1;
  if (a.n == 0) return Status::kOk;
  try {
    const RangeFn fn = range_fn();
    const int64_t nb = a.n_bins, nboot = a.n_bootstrap;
    const int64_t tasks =
        std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), a.n / kMinSamplesPerThread));
    const int64_t boot_bin_words = nboot * nb * calib::kNumBootBinFields;
    const int64_t boot_total_words = nboot * calib::kNumBootTotalFields;
    std::vector<calib::BinState> bins(size_t(tasks * nb));
    std::vector<calib::U128> boot_bins(size_t(tasks * boot_bin_words));
    std::vector<calib::U128> boot_totals(size_t(tasks * boot_total_words));
    std::vector<int64_t> bad(size_t(tasks), -1);
    const Status st = parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t begin = a.n * t / tasks, end = a.n * (t + 1) / tasks;
        bad[size_t(t)] =
            fn(a, begin, end, bins.data() + t * nb, boot_bins.data() + t * boot_bin_words,
               boot_totals.data() + t * boot_total_words);
      }
    });
    if (st != Status::kOk) return st;
    for (int64_t t = 0; t < tasks; ++t) {  // ranges are in order: the first report is the first
      if (bad[size_t(t)] == -2) return Status::kInvalidArgument;
      if (bad[size_t(t)] >= 0) {
        *a.first_invalid = bad[size_t(t)];
        return Status::kOk;
      }
    }
    for (int64_t t = 0; t < tasks; ++t) {
      for (int64_t b = 0; b < nb; ++b) {
        const calib::BinState& s = bins[size_t(t * nb + b)];
        a.count[b] += s.count;
        for (int f = 0; f < calib::kNumFields; ++f)
          add_words(a.sums + 2 * (b * calib::kNumFields + f), s.sum[f]);
      }
      for (int64_t i = 0; i < boot_bin_words; ++i)
        add_words(a.boot_bins + 2 * i, boot_bins[size_t(t * boot_bin_words + i)]);
      for (int64_t i = 0; i < boot_total_words; ++i)
        add_words(a.boot_totals + 2 * i, boot_totals[size_t(t * boot_total_words + i)]);
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

namespace {

template <class T, class A>
void sequential_sums(const SequentialSumsArgs& a) {
  const T* c = static_cast<const T*>(a.confidence);
  const A* y = static_cast<const A*>(a.accuracy);
  const T* e = static_cast<const T*>(a.edges);
  T* count = static_cast<T*>(a.count);
  T* cs = static_cast<T*>(a.conf_sum);
  T* ys = static_cast<T*>(a.acc_sum);
  const int64_t m = a.n_edges;
  for (int64_t i = 0; i < a.n; ++i) {
    const T v = c[i * a.conf_stride];
    const A acc = y[i * a.accuracy_stride];
    if (!(v >= T(0) && v <= T(1)) || (a.check_accuracy && !(acc == A(0) || acc == A(1)))) {
      *a.first_invalid = i;
      return;
    }
    int64_t k = static_cast<int64_t>(static_cast<double>(v) * a.edges_scale);
    k = k < m ? k : m;
    while (k > 0 && !(e[k - 1] <= v)) --k;
    while (k < m && e[k] <= v) ++k;
    count[k] += T(1);
    cs[k] += v;
    ys[k] += static_cast<T>(acc);
  }
}

template <class T>
bool sequential_sums_by_acc(const SequentialSumsArgs& a) {
  switch (a.accuracy_type) {
    case CorrectType::kUInt8:
      sequential_sums<T, uint8_t>(a);
      return true;
    case CorrectType::kInt32:
      sequential_sums<T, int32_t>(a);
      return true;
    case CorrectType::kInt64:
      sequential_sums<T, int64_t>(a);
      return true;
    case CorrectType::kFloat32:
      sequential_sums<T, float>(a);
      return true;
    case CorrectType::kFloat64:
      sequential_sums<T, double>(a);
      return true;
  }
  return false;
}

}  // namespace

Status binned_sums_sequential(const SequentialSumsArgs& a) {
  if (a.n < 0 || a.n_edges < 0 || a.first_invalid == nullptr || a.count == nullptr ||
      a.conf_sum == nullptr || a.acc_sum == nullptr || (a.n_edges > 0 && a.edges == nullptr) ||
      (a.n > 0 && (a.confidence == nullptr || a.accuracy == nullptr)))
    return Status::kInvalidArgument;
  *a.first_invalid = -1;
  const bool ok = a.conf_type == ConfType::kFloat32 ? sequential_sums_by_acc<float>(a)
                                                    : sequential_sums_by_acc<double>(a);
  return ok ? Status::kOk : Status::kInvalidArgument;
}

}  // namespace cpu
}  // namespace logcal
