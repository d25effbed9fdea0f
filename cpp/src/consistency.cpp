// CPU kernel: sample_consistency. For each question, the K sampled answers' cluster ids are
// grouped into clusters (count, and probability mass when sequence log-probabilities are given),
// then logcal::consistency_finish turns the clusters into the statistics.
//
// Grouping: for K <= kLinearMax each valid answer is looked up in the short list of clusters
// seen so far (answers from one model agree often, so the list is short and the scan is a few
// compares), and the list is then sorted by id; for larger K the (id, sample) pairs are sorted.
// Both accumulate each cluster's mass in sample order and present the clusters in id order, so
// both give the same bits. Questions are spread over threads in static ranges.
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "logcal/cpu_sequence.h"
#include "logcal/half.h"
#include "parallel.h"

namespace logcal {
namespace cpu {
namespace {

constexpr int64_t kLinearMax = 64;

template <class LP>
Status consistency_typed(const ConsistencyArgs& a) {
  using Out = typename Scalar<LP>::Compute;
  const LP* lps = static_cast<const LP*>(a.seq_logprobs);
  Out* se_out = static_cast<Out*>(a.semantic_entropy);
  const int64_t k = a.k;
  return parallel_for(a.n_q, std::max<int64_t>(1, 8192 / std::max<int64_t>(k, 1)),
                      [&](int64_t b, int64_t e) {
    std::vector<Cluster> clusters(size_t(std::max<int64_t>(k, 1)));
    std::vector<std::pair<int64_t, int64_t>> pairs;
    if (k > kLinearMax) pairs.resize(size_t(k));
    for (int64_t q = b; q < e; ++q) {
      const int64_t* ans = a.answers + q * a.q_stride;
      const LP* lp = lps ? lps + q * a.lp_q_stride : nullptr;
      auto id_of = [&](int64_t s) { return ans[s * a.k_stride]; };
      auto lp_of = [&](int64_t s) { return double(Scalar<LP>::load(lp[s * a.lp_k_stride])); };

      // The largest log-probability of a valid sample: masses are exp(lp - top), so the
      // largest is 1 and none overflows (log-sum-exp, done once per question).
      bool mass_ok = lp != nullptr;
      double top = -std::numeric_limits<double>::infinity();
      if (lp) {
        for (int64_t s = 0; s < k; ++s) {
          if (id_of(s) < 0) continue;
          const double v = lp_of(s);
          if (v != v || v == std::numeric_limits<double>::infinity()) mass_ok = false;
          top = v > top ? v : top;
        }
        if (!(top > -std::numeric_limits<double>::infinity())) mass_ok = false;
      }
      auto weight = [&](int64_t s) { return mass_ok ? std::exp(lp_of(s) - top) : 0.0; };

      int64_t n_unique = 0;
      if (k <= kLinearMax) {
        for (int64_t s = 0; s < k; ++s) {
          const int64_t id = id_of(s);
          if (id < 0) continue;
          const double w = weight(s);
          int64_t c = 0;
          while (c < n_unique && clusters[size_t(c)].id != id) ++c;
          if (c == n_unique) {
            clusters[size_t(n_unique++)] = Cluster{id, 1, w};
          } else {
            clusters[size_t(c)].count += 1;
            clusters[size_t(c)].mass += w;
          }
        }
        // Insertion sort by id: the list is short.
        for (int64_t i = 1; i < n_unique; ++i) {
          const Cluster x = clusters[size_t(i)];
          int64_t j = i - 1;
          while (j >= 0 && clusters[size_t(j)].id > x.id) {
            clusters[size_t(j + 1)] = clusters[size_t(j)];
            --j;
          }
          clusters[size_t(j + 1)] = x;
        }
      } else {
        int64_t n_valid = 0;
        for (int64_t s = 0; s < k; ++s)
          if (id_of(s) >= 0) pairs[size_t(n_valid++)] = {id_of(s), s};
        std::sort(pairs.begin(), pairs.begin() + n_valid);
        for (int64_t i = 0; i < n_valid; ++i) {
          const auto& pr = pairs[size_t(i)];
          const double w = weight(pr.second);
          if (n_unique > 0 && clusters[size_t(n_unique - 1)].id == pr.first) {
            clusters[size_t(n_unique - 1)].count += 1;
            clusters[size_t(n_unique - 1)].mass += w;
          } else {
            clusters[size_t(n_unique++)] = Cluster{pr.first, 1, w};
          }
        }
      }

      const ConsistencyResult r = consistency_finish(clusters.data(), n_unique, mass_ok);
      if (a.mode) a.mode[q] = r.mode;
      if (a.n_unique) a.n_unique[q] = r.n_unique;
      if (a.agreement) a.agreement[q] = r.agreement;
      if (a.entropy) a.entropy[q] = r.entropy;
      if (a.entropy_consistency) a.entropy_consistency[q] = r.entropy_consistency;
      if (a.fsd) a.fsd[q] = r.fsd;
      if (se_out) se_out[q] = Out(r.semantic_entropy);
    }
  });
}

}  // namespace

Status sample_consistency(const ConsistencyArgs& args) {
  if (args.n_q < 0 || args.k < 0 || !args.answers) return Status::kInvalidArgument;
  if (args.semantic_entropy && !args.seq_logprobs) return Status::kInvalidArgument;
  switch (args.lp_dtype) {
    case DType::kFloat16: return consistency_typed<Float16>(args);
    case DType::kBFloat16: return consistency_typed<BFloat16>(args);
    case DType::kFloat32: return consistency_typed<float>(args);
    case DType::kFloat64: return consistency_typed<double>(args);
  }
  return Status::kInvalidArgument;
}

}  // namespace cpu
}  // namespace logcal
