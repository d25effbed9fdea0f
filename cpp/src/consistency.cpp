// CPU kernel: sample_consistency. For each question, the K sampled answers' cluster ids are
// grouped into clusters (count, and probability mass when sequence log-probabilities are given),
// then logcal::consistency_finish turns the clusters into the statistics.
//
// Per question: the valid samples are first packed into a local buffer (branch-free), then
// grouped. For K <= kLinearMax each id is looked up in the short list of clusters seen so far
// by a scan without early exit (answers to one question agree often, so the list is short, and
// a branch-free scan avoids a mispredicted exit per sample); for larger K the (id, sample) pairs
// are sorted. Both accumulate each cluster's mass in sample order and list the clusters in order
// of first appearance, so both give the same bits. The entropy terms come from per-thread tables
// holding exactly the values of the direct formula. Questions are spread over threads in static
// ranges.
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
constexpr int64_t kTableMax = 256;  // tables of p log p up to this K: (K+1)^2 doubles a thread

// p log p for p = n / k_valid and log(n), looked up: a question's k_valid fills its table row on
// first use (prepare), with the expressions of DirectEntropyTerms, so the bits are the same.
class TableEntropyTerms {
 public:
  explicit TableEntropyTerms(int64_t k)
      : k_(k),
        tabled_(k <= kTableMax),
        plogp_(tabled_ ? size_t((k + 1) * (k + 1)) : 0),
        ready_(tabled_ ? size_t(k + 1) : 0, 0),
        log_(size_t(k + 1)) {
    for (int64_t n = 1; n <= k; ++n) log_[size_t(n)] = direct_.log_n(n);
  }
  void prepare(int64_t k_valid) {
    if (!tabled_ || k_valid <= 0 || ready_[size_t(k_valid)]) return;
    double* row = plogp_.data() + k_valid * (k_ + 1);
    for (int64_t n = 1; n <= k_valid; ++n) row[n] = direct_.plogp(n, k_valid);
    ready_[size_t(k_valid)] = 1;
  }
  double plogp(int64_t count, int64_t k_valid) const {
    return tabled_ ? plogp_[size_t(k_valid * (k_ + 1) + count)] : direct_.plogp(count, k_valid);
  }
  double log_n(int64_t n) const { return log_[size_t(n)]; }

 private:
  int64_t k_;
  bool tabled_;
  std::vector<double> plogp_;
  std::vector<uint8_t> ready_;
  std::vector<double> log_;
  DirectEntropyTerms direct_;
};

// Groups ids[0, n) (all valid) into clusters in order of first appearance: cluster c has id
// cid[c], cnt[c] samples and (kMass) mass ms[c] = sum of w over its samples, in sample order.
template <bool kMass>
int64_t group_linear(const int64_t* __restrict ids, const double* __restrict w, int64_t n,
                     int64_t* __restrict cid, int64_t* __restrict cnt, double* __restrict ms) {
  int64_t u = 0;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t id = ids[s];
    int64_t found = -1;
    for (int64_t c = 0; c < u; ++c) found = cid[c] == id ? c : found;
    if (found < 0) {
      cid[u] = id;
      cnt[u] = 1;
      if (kMass) ms[u] = w[s];
      ++u;
    } else {
      cnt[found] += 1;
      if (kMass) ms[found] += w[s];
    }
  }
  return u;
}

// The same grouping by sorting, for large K.
struct SortGrouper {
  std::vector<std::pair<int64_t, int64_t>> pairs;       // (id, sample)
  std::vector<std::pair<int64_t, int64_t>> first_seen;  // (first sample, run)
  std::vector<int64_t> run_id, run_cnt;
  std::vector<double> run_ms;

  explicit SortGrouper(int64_t k)
      : pairs(size_t(k)), first_seen(size_t(k)), run_id(size_t(k)), run_cnt(size_t(k)),
        run_ms(size_t(k)) {}

  int64_t operator()(const int64_t* ids, const double* w, int64_t n, bool mass, int64_t* cid,
                     int64_t* cnt, double* ms) {
    for (int64_t s = 0; s < n; ++s) pairs[size_t(s)] = {ids[s], s};
    std::sort(pairs.begin(), pairs.begin() + n);
    int64_t u = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto& pr = pairs[size_t(i)];
      const double x = mass ? w[pr.second] : 0.0;
      if (i > 0 && pairs[size_t(i - 1)].first == pr.first) {
        run_cnt[size_t(u - 1)] += 1;
        run_ms[size_t(u - 1)] += x;
      } else {
        first_seen[size_t(u)] = {pr.second, u};
        run_id[size_t(u)] = pr.first;
        run_cnt[size_t(u)] = 1;
        run_ms[size_t(u)] = x;
        ++u;
      }
    }
    std::sort(first_seen.begin(), first_seen.begin() + u);
    for (int64_t c = 0; c < u; ++c) {
      const size_t r = size_t(first_seen[size_t(c)].second);
      cid[c] = run_id[r];
      cnt[c] = run_cnt[r];
      ms[c] = run_ms[r];
    }
    return u;
  }
};

template <class LP>
Status consistency_typed(const ConsistencyArgs& a) {
  using Out = typename Scalar<LP>::Compute;
  const LP* lps = static_cast<const LP*>(a.seq_logprobs);
  Out* se_out = static_cast<Out*>(a.semantic_entropy);
  const int64_t k = a.k, q_stride = a.q_stride, k_stride = a.k_stride;
  const int64_t lp_q_stride = a.lp_q_stride, lp_k_stride = a.lp_k_stride;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  return parallel_for(a.n_q, std::max<int64_t>(1, 8192 / std::max<int64_t>(k, 1)),
                      [&](int64_t b, int64_t e) {
    const size_t kk = size_t(std::max<int64_t>(k, 1));
    // The valid samples of a question (ids, log-probs then weights), then its clusters.
    std::vector<int64_t> ids(kk), cid(kk), cnt(kk);
    std::vector<double> w(kk), ms(kk);
    TableEntropyTerms terms(k);
    SortGrouper sorter(k > kLinearMax ? k : 0);
    for (int64_t q = b; q < e; ++q) {
      const int64_t* ans = a.answers + q * q_stride;
      const LP* lp = lps ? lps + q * lp_q_stride : nullptr;
      int64_t n = 0;
      if (lp) {
        for (int64_t s = 0; s < k; ++s) {
          const int64_t id = ans[s * k_stride];
          ids[size_t(n)] = id;
          w[size_t(n)] = double(Scalar<LP>::load(lp[s * lp_k_stride]));
          n += id >= 0;
        }
      } else {
        for (int64_t s = 0; s < k; ++s) {
          const int64_t id = ans[s * k_stride];
          ids[size_t(n)] = id;
          n += id >= 0;
        }
      }

      // Masses exp(lp - top), top the largest valid lp, so none overflows (log-sum-exp).
      bool mass_ok = lp != nullptr && n > 0;
      if (mass_ok) {
        double top = -kInf;
        bool bad = false;
        for (int64_t s = 0; s < n; ++s) {
          const double v = w[size_t(s)];
          bad |= (v != v) | (v == kInf);
          top = v > top ? v : top;
        }
        mass_ok = !bad && top > -kInf;
        if (mass_ok)
          for (int64_t s = 0; s < n; ++s) w[size_t(s)] = std::exp(w[size_t(s)] - top);
      }

      int64_t n_unique;
      if (k <= kLinearMax) {
        n_unique = mass_ok ? group_linear<true>(ids.data(), w.data(), n, cid.data(), cnt.data(), ms.data())
                           : group_linear<false>(ids.data(), w.data(), n, cid.data(), cnt.data(), ms.data());
      } else {
        n_unique = sorter(ids.data(), w.data(), n, mass_ok, cid.data(), cnt.data(), ms.data());
      }
      terms.prepare(n);

      const ConsistencyResult r =
          consistency_finish(cid.data(), cnt.data(), ms.data(), n_unique, mass_ok, terms);
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
