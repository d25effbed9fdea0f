// CPU kernel: selective prediction metrics of a confidence signal: AUROC (Mann-Whitney, ties
// count one half), the risk-coverage curve, its area (AURC) and accuracy at given coverages.
//
// Only the order of the confidences matters, and within a group of equal confidences only how
// many are right and wrong. So the confidences of right and of wrong answers are turned into
// sortable integer keys in two arrays, each sorted by a parallel LSD radix sort (linear time;
// digits that are the same for every key are skipped), and one walk down both sorted arrays
// visits the groups of equal confidence from the most confident. Counts are exact integers;
// the AUROC numerator is a 128-bit integer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <vector>

#include "logcal/cpu_sequence.h"
#include "parallel.h"
#include "radix_sort.h"

namespace logcal {
namespace cpu {
namespace {

// Neumaier's compensated sum: the AURC adds up to N terms of very different sizes.
struct CompensatedSum {
  double sum = 0.0, comp = 0.0;
  void add(double x) {
    const double t = sum + x;
    comp += std::fabs(sum) >= std::fabs(x) ? (sum - t) + x : (x - t) + sum;
    sum = t;
  }
  double value() const { return sum + comp; }
};

template <class F, class K>
Status selective_typed(const SelectiveArgs& a) {
  const int64_t n = a.n;
  const F* conf = static_cast<const F*>(a.confidence);
  F* threshold = static_cast<F*>(a.threshold);

  // Split into the keys of right and wrong answers, each in input order.
  const int64_t P = n_pieces_for(n);
  auto piece_begin = [&](int64_t p) { return n * p / P; };
  std::vector<int64_t> piece_pos(size_t(P) + 1, 0);
  Status st = parallel_for(P, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      int64_t c = 0;
      for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i)
        c += a.correct[i * a.correct_stride] != 0;
      piece_pos[size_t(p) + 1] = c;
    }
  });
  if (st != Status::kOk) return st;
  std::partial_sum(piece_pos.begin(), piece_pos.end(), piece_pos.begin());
  const int64_t n_pos = piece_pos[size_t(P)];
  const int64_t n_neg = n - n_pos;
  std::vector<K> keys(static_cast<size_t>(n)), tmp(static_cast<size_t>(n));
  K* pos = keys.data();
  K* neg = keys.data() + n_pos;
  st = parallel_for(P, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      int64_t ip = piece_pos[size_t(p)];
      int64_t in = piece_begin(p) - piece_pos[size_t(p)];
      for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i) {
        const K k = sortable_key(conf[i * a.conf_stride]);
        if (a.correct[i * a.correct_stride] != 0)
          pos[ip++] = k;
        else
          neg[in++] = k;
      }
    }
  });
  if (st != Status::kOk) return st;
  st = radix_sort(pos, tmp.data(), n_pos, &pos);
  if (st != Status::kOk) return st;
  st = radix_sort(neg, tmp.data() + n_pos, n_neg, &neg);
  if (st != Status::kOk) return st;

  // Coverages in increasing order, answered during the walk.
  std::vector<int64_t> order(size_t(a.n_coverages));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int64_t x, int64_t y) { return a.coverages[x] < a.coverages[y]; });
  size_t next_cov = 0;

  // Walk the groups of equal confidence from the most confident.
  int64_t i = n_pos - 1, j = n_neg - 1;
  int64_t above = 0, pos_above = 0, neg_above = 0, g = 0;
  unsigned __int128 u2 = 0;  // twice the Mann-Whitney U of the right answers
  CompensatedSum risk_sum;
  const double dn = double(n);
  while (i >= 0 || j >= 0) {
    const K key = i < 0 ? neg[j] : j < 0 ? pos[i] : std::max(pos[i], neg[j]);
    int64_t pg = 0, qg = 0;
    while (i >= 0 && pos[i] == key) --i, ++pg;
    while (j >= 0 && neg[j] == key) --j, ++qg;
    const int64_t ng = pg + qg;
    const int64_t neg_below = n_neg - neg_above - qg;
    u2 += (unsigned __int128)pg * (unsigned __int128)(2 * neg_below + qg);
    risk_sum.add(group_risk_sum(above, ng, neg_above, qg));
    // Accuracy among the x = c * N most confident, the tied group shared out evenly (so a
    // coverage inside a group counts its expected number of right answers).
    while (next_cov < order.size() && a.coverages[order[next_cov]] * dn <= double(above + ng)) {
      const double x = a.coverages[order[next_cov]] * dn;
      const double share = double(pg) / double(ng);  // right answers per answer of the group
      // Within the first group the accuracy is the group's share whatever x is: computing it as
      // right / x would lose it to rounding when x is tiny (a subnormal coverage).
      a.accuracy[order[next_cov]] =
          above == 0 ? share : (double(pos_above) + (x - double(above)) * share) / x;
      ++next_cov;
    }
    above += ng;
    pos_above += pg;
    neg_above += qg;
    if constexpr (sizeof(K) == 8)
      threshold[g] = F(key_to_double(uint64_t(key)));
    else
      threshold[g] = F(key_to_float(uint32_t(key)));
    a.coverage[g] = double(above) / dn;
    a.risk[g] = double(neg_above) / double(above);
    ++g;
  }
  for (; next_cov < order.size(); ++next_cov) a.accuracy[order[next_cov]] = double(n_pos) / dn;
  *a.n_groups = g;
  *a.aurc = risk_sum.value() / dn;
  *a.auroc = (n_pos == 0 || n_neg == 0) ? std::numeric_limits<double>::quiet_NaN()
                                        : double(u2) / (2.0 * double(n_pos) * double(n_neg));
  return Status::kOk;
}

}  // namespace

Status selective(const SelectiveArgs& args) {
  if (args.n <= 0 || !args.confidence || !args.correct || !args.auroc || !args.aurc ||
      !args.n_groups || !args.threshold || !args.coverage || !args.risk ||
      (args.n_coverages > 0 && (!args.coverages || !args.accuracy)))
    return Status::kInvalidArgument;
  try {
    switch (args.dtype) {
      case DType::kFloat32:
        return selective_typed<float, uint32_t>(args);
      case DType::kFloat64:
        return selective_typed<double, uint64_t>(args);
      default:
        return Status::kInvalidArgument;
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  } catch (...) {
    return Status::kInternal;
  }
}

}  // namespace cpu
}  // namespace logcal
