// CPU kernel: sample_consistency. For each question, the K sampled answers' cluster ids are
// grouped into clusters (count, and probability mass when sequence log-probabilities are given),
// then logcal::consistency_finish turns the clusters into the statistics.
//
// Per question: the valid samples are first packed into a local buffer (branch-free), then
// grouped into clusters sorted by id, each cluster's mass accumulated in sample order: the order
// every later sum runs in, whichever grouper ran (ids below 64: direct counts; any ids: a small
// hash table). The entropy terms come from per-thread tables holding exactly the values of the
// direct formula. Questions are spread over threads in static ranges.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "logcal/core/half.h"
#include "logcal/cpu_sequence.h"
#include "parallel.h"

namespace logcal {
namespace cpu {
namespace {

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

// Both groupers take ids[0, n) (all valid, so >= 0) and write the clusters sorted by id:
// cluster c has id cid[c], cnt[c] samples and (kMass) ms[c] = the sum of w over its samples, in
// sample order. That fixes the order of every later sum, whichever grouper ran.
//
// Small ids, all below 64 (per-question cluster ids usually are): counts indexed by id, a bit
// mask of the ids seen, walked in increasing order. The per-sample loop has no branch that
// depends on the data, and the counts alternate between two tables by sample parity, halving
// the store-to-load chain of consecutive equal answers. This is the common case and the fast
// one.
class SmallIdGrouper {
 public:
  static constexpr int64_t kIds = 64;

  template <bool kMass>
  int64_t group(const int64_t* __restrict ids, const double* __restrict w, int64_t n,
                int64_t* __restrict cid, int64_t* __restrict cnt, double* __restrict ms) {
    uint64_t seen = 0;
    for (int64_t s = 0; s < n; ++s) {
      const int64_t id = ids[s];
      seen |= uint64_t(1) << id;
      counts_[s & 1][id] += 1;
      if (kMass) mass_[id] += w[s];
    }
    int64_t u = 0;
    while (seen) {
      const int b = __builtin_ctzll(seen);
      seen &= seen - 1;
      cid[u] = b;
      cnt[u] = counts_[0][b] + counts_[1][b];
      counts_[0][b] = counts_[1][b] = 0;
      if (kMass) {
        ms[u] = mass_[b];
        mass_[b] = 0.0;
      }
      ++u;
    }
    return u;
  }

 private:
  int64_t counts_[2][kIds] = {};
  double mass_[kIds] = {};
};

// Any ids: an open-addressing table (at least twice K slots, Fibonacci hashing, linear probing;
// -1 marks a free slot) maps an id to its cluster, numbered in order of first appearance; the
// clusters are then sorted by id. Whether a sample starts a new cluster (unpredictable) is a
// select, not a branch; the only branch probes past a collision, which is rare.
class HashGrouper {
 public:
  explicit HashGrouper(int64_t k) {
    while ((int64_t(1) << bits_) < 2 * std::max<int64_t>(k, 1)) ++bits_;
    key_.assign(size_t(1) << bits_, -1);
    cluster_.assign(size_t(1) << bits_, 0);
    const size_t kk = size_t(std::max<int64_t>(k, 1));
    slot_.assign(kk, 0);
    order_.assign(kk, 0);
    id_.assign(kk, 0);
    cnt_.assign(kk, 0);
    ms_.assign(kk, 0.0);
  }

  template <bool kMass>
  int64_t group(const int64_t* __restrict ids, const double* __restrict w, int64_t n,
                int64_t* __restrict cid, int64_t* __restrict cnt, double* __restrict ms) {
    const uint64_t mask = (uint64_t(1) << bits_) - 1;
    int64_t* __restrict key = key_.data();
    int64_t* __restrict cluster = cluster_.data();
    int64_t* __restrict id_of = id_.data();
    int64_t* __restrict count = cnt_.data();
    double* __restrict mass = ms_.data();
    std::fill(count, count + n, int64_t(0));
    if (kMass) std::fill(mass, mass + n, 0.0);
    int64_t u = 0;
    for (int64_t s = 0; s < n; ++s) {
      const int64_t id = ids[s];
      uint64_t h = (uint64_t(id) * 0x9E3779B97F4A7C15ull) >> (64 - bits_);
      int64_t kh = key[h];
      // The empty asm statements make the flags opaque values, so the compiler cannot split
      // them back into branches on kh == id (new or not: the unpredictable part).
      int64_t collide = (kh != id) & (kh != -1);
      asm("" : "+r"(collide));
      if (__builtin_expect(collide, 0)) {
        do {
          h = (h + 1) & mask;
          kh = key[h];
        } while ((kh != id) & (kh != -1));
      }
      int64_t is_new = kh == -1;
      asm("" : "+r"(is_new));
      const int64_t old_c = cluster[h];
      const int64_t c = old_c ^ ((old_c ^ u) & -is_new);  // is_new ? u : old_c
      key[h] = id;
      cluster[h] = c;
      slot_[size_t(c)] = int64_t(h);
      id_of[c] = id;
      count[c] += 1;
      if (kMass) mass[c] += w[s];
      u += is_new;
    }
    for (int64_t c = 0; c < u; ++c) key[slot_[size_t(c)]] = -1;  // free the used slots only
    // Sorted by id (ids are distinct): insertion into order_ for few clusters, else std::sort.
    int64_t* order = order_.data();
    for (int64_t c = 0; c < u; ++c) order[c] = c;
    if (u <= 32) {
      for (int64_t i = 1; i < u; ++i) {
        const int64_t x = order[i];
        int64_t j = i - 1;
        while (j >= 0 && id_of[order[j]] > id_of[x]) {
          order[j + 1] = order[j];
          --j;
        }
        order[j + 1] = x;
      }
    } else {
      std::sort(order, order + u, [&](int64_t x, int64_t y) { return id_of[x] < id_of[y]; });
    }
    for (int64_t c = 0; c < u; ++c) {
      cid[c] = id_of[order[c]];
      cnt[c] = count[order[c]];
      if (kMass) ms[c] = mass[order[c]];
    }
    return u;
  }

 private:
  int bits_ = 1;
  std::vector<int64_t> key_, cluster_, slot_, order_, id_, cnt_;
  std::vector<double> ms_;
};

template <class LP>
Status consistency_typed(const ConsistencyArgs& a) {
  using Out = typename Scalar<LP>::Compute;
  const LP* lps = static_cast<const LP*>(a.seq_logprobs);
  Out* se_out = static_cast<Out*>(a.semantic_entropy);
  const int64_t k = a.k, q_stride = a.q_stride, k_stride = a.k_stride;
  const int64_t lp_q_stride = a.lp_q_stride, lp_k_stride = a.lp_k_stride;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  return parallel_for(
      a.n_q, std::max<int64_t>(1, 8192 / std::max<int64_t>(k, 1)), [&](int64_t b, int64_t e) {
        const size_t kk = size_t(std::max<int64_t>(k, 1));
        // The valid samples of a question (ids, log-probs then weights), then its clusters.
        std::vector<int64_t> ids(kk), cid(kk), cnt(kk);
        std::vector<double> w(kk), ms(kk);
        TableEntropyTerms terms(k);
        SmallIdGrouper small_ids;
        HashGrouper any_ids(k);
        for (int64_t q = b; q < e; ++q) {
          const int64_t* ans = a.answers + q * q_stride;
          const LP* lp = lps ? lps + q * lp_q_stride : nullptr;
          // Pack the valid samples; max_id gathers the bits of the valid ids (negatives count 0).
          int64_t n = 0, max_id = 0;
          if (lp) {
            for (int64_t s = 0; s < k; ++s) {
              const int64_t id = ans[s * k_stride];
              ids[size_t(n)] = id;
              w[size_t(n)] = double(Scalar<LP>::load(lp[s * lp_k_stride]));
              n += id >= 0;
              max_id |= id & ~(id >> 63);
            }
          } else {
            for (int64_t s = 0; s < k; ++s) {
              const int64_t id = ans[s * k_stride];
              ids[size_t(n)] = id;
              n += id >= 0;
              max_id |= id & ~(id >> 63);
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

          const bool small = (max_id >> 6) == 0;
          int64_t n_unique;
          if (small) {
            n_unique = mass_ok ? small_ids.group<true>(ids.data(), w.data(), n, cid.data(),
                                                       cnt.data(), ms.data())
                               : small_ids.group<false>(ids.data(), w.data(), n, cid.data(),
                                                        cnt.data(), ms.data());
          } else {
            n_unique = mass_ok ? any_ids.group<true>(ids.data(), w.data(), n, cid.data(),
                                                     cnt.data(), ms.data())
                               : any_ids.group<false>(ids.data(), w.data(), n, cid.data(),
                                                      cnt.data(), ms.data());
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
  return visit_dtype(args.lp_dtype, Status::kInvalidArgument,
                     [&](auto tag) { return consistency_typed<decltype(tag)>(args); });
}

}  // namespace cpu
}  // namespace logcal
