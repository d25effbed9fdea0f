// Sequence-level, multiple-choice, multi-sample consistency and selective-prediction metrics:
// the kernel arguments, and the per-element maths of the metrics only the CPU back end runs.
// What sequence_stats computes, which both back ends run, is in logcal/core/sequence.h.
//
// The loops live in the back end; what a statistic *is* lives here, once, as inline functions
// (API.md: "Sequence level", "Multiple choice", "Multi-sample consistency"; formulas and sources
// in research/llm_tools.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "logcal/common.h"
#include "logcal/core/bits.h"

namespace logcal {

// ---------------------------------------------------------------------------------------------
// sequence_stats
// ---------------------------------------------------------------------------------------------

// Per-sequence reductions of token log-probabilities. Two layouts:
//   flat:   `offsets` non-null; sequence s is data[offsets[s] .. offsets[s+1]) (times `stride`).
//   padded: `offsets` null; sequence b is row b of a [n_seq, length] array, positions with
//           mask != 0 counted (mask null: all counted).
// Float outputs have the compute type of the input (double for float64, float otherwise); sums
// are accumulated in double, in the order logcal/core/sequence.h fixes. Any output pointer may be
// null.
struct SequenceStatsArgs {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t n_seq = 0;

  const int64_t* offsets = nullptr;  // [n_seq + 1], flat layout
  int64_t stride = 1;                // flat layout: element stride of data

  int64_t length = 0;      // padded layout: L
  int64_t row_stride = 0;  // padded layout, in elements
  int64_t col_stride = 1;
  const uint8_t* mask = nullptr;  // padded layout, optional; bytes, nonzero = counted
  int64_t mask_row_stride = 0;
  int64_t mask_col_stride = 1;

  void* sum = nullptr;         // [n_seq]
  void* mean = nullptr;        // [n_seq]
  void* min = nullptr;         // [n_seq]
  void* perplexity = nullptr;  // [n_seq]
  int64_t* count = nullptr;    // [n_seq]
};

// ---------------------------------------------------------------------------------------------
// choice_confidence
// ---------------------------------------------------------------------------------------------

// choice_logprobs [n_q, n_c] with any strides (NaN = absent option); lengths optional, dense
// [n_q, n_c] doubles; labels optional, dense [n_q]. probs is dense [n_q, n_c]. Float outputs have
// the compute type of the input; scores and the softmax are computed in double.
struct ChoiceArgs {
  const void* logprobs = nullptr;
  DType dtype = DType::kFloat32;
  int64_t n_q = 0;
  int64_t n_c = 0;
  int64_t q_stride = 0;
  int64_t c_stride = 1;
  const double* lengths = nullptr;
  const int64_t* labels = nullptr;

  void* probs = nullptr;       // [n_q, n_c]
  int64_t* pred = nullptr;     // [n_q]
  void* confidence = nullptr;  // [n_q]
  uint8_t* correct = nullptr;  // [n_q], needs labels
};

// The score of an option: its log-likelihood, divided by its length when lengths are given
// (lm-eval's acc_norm). NaN marks an absent option.
LOGCAL_HD double choice_score(double logprob, const double* lengths, int64_t c) {
  return lengths ? logprob / lengths[c] : logprob;
}

// Softmax over the present options of one question. `score(c)` gives option c's score. Writes
// `probs(c, p)` for every option (0 for absent ones) and returns the argmax (lowest index among
// ties), or -1 when no option has a usable score: none present, all -inf, or a +inf (then every
// prob is NaN). `confidence` receives the largest probability (NaN with -1).
template <class Score, class Write>
LOGCAL_HD int64_t choice_softmax(int64_t n_c, const Score& score, const Write& probs,
                                 double* confidence) {
  const double inf = std::numeric_limits<double>::infinity();
  double best = -inf;
  int64_t arg = -1;
  bool bad = false;
  for (int64_t c = 0; c < n_c; ++c) {
    const double s = score(c);
    if (s != s) continue;  // absent
    if (s == inf) bad = true;
    if (s > best) {
      best = s;
      arg = c;
    }
  }
  if (bad || arg < 0) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (int64_t c = 0; c < n_c; ++c) probs(c, nan);
    *confidence = nan;
    return -1;
  }
  double total = 0.0;
  for (int64_t c = 0; c < n_c; ++c) {
    const double s = score(c);
    if (s == s) total += std::exp(s - best);
  }
  for (int64_t c = 0; c < n_c; ++c) {
    const double s = score(c);
    probs(c, s == s ? std::exp(s - best) / total : 0.0);
  }
  *confidence = 1.0 / total;  // exp(best - best) / total
  return arg;
}

// ---------------------------------------------------------------------------------------------
// sample_consistency
// ---------------------------------------------------------------------------------------------

// answers [n_q, k] int64 cluster ids with any strides (negative = invalid sample); seq_logprobs
// optional [n_q, k], any float dtype and strides. Float outputs of the counts are double;
// semantic_entropy has the compute type of seq_logprobs. Any output pointer may be null.
struct ConsistencyArgs {
  const int64_t* answers = nullptr;
  int64_t n_q = 0;
  int64_t k = 0;
  int64_t q_stride = 0;
  int64_t k_stride = 1;
  const void* seq_logprobs = nullptr;
  DType lp_dtype = DType::kFloat32;
  int64_t lp_q_stride = 0;
  int64_t lp_k_stride = 1;

  int64_t* mode = nullptr;
  double* agreement = nullptr;
  double* entropy = nullptr;
  double* entropy_consistency = nullptr;
  double* fsd = nullptr;
  int64_t* n_unique = nullptr;
  void* semantic_entropy = nullptr;
};

struct ConsistencyResult {
  int64_t mode, n_unique;
  double agreement, entropy, entropy_consistency, fsd, semantic_entropy;
};

// The entropy terms computed where they are needed: p log p with p = count / k_valid, and
// log(n) for the number of clusters. Back ends may substitute tables holding the same values.
struct DirectEntropyTerms {
  LOGCAL_HD double plogp(int64_t count, int64_t k_valid) const {
    const double p = double(count) / double(k_valid);
    return p * std::log(p);
  }
  LOGCAL_HD double log_n(int64_t n) const { return std::log(double(n)); }
};

// The statistics of one question from its clusters: ids, counts of valid samples and (when
// mass_ok) masses sum of exp(lp_s - M) over the cluster's samples, M the question's largest lp.
// Clusters come sorted by id (the order the sums run in, so every back end adds in the same
// order; the mode is still chosen explicitly as the lowest id among the most frequent). Formulas:
// API.md "Multi-sample consistency", after Lyu et al. 2025 (agreement, entropy, fsd) and
// Farquhar et al. 2024 (semantic entropy, -sum p(c) log p(c)). The mode is the lowest id among
// the most frequent. `mass_ok` is false when the question's log-probs had a NaN or +inf, or
// were all -inf (or were not given): semantic entropy is then NaN.
template <class Terms>
LOGCAL_HD ConsistencyResult consistency_finish(const int64_t* ids, const int64_t* counts,
                                               const double* masses, int64_t n_unique, bool mass_ok,
                                               const Terms& terms) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ConsistencyResult r;
  r.n_unique = n_unique;
  if (n_unique == 0) {
    r.mode = -1;
    r.agreement = r.entropy = r.entropy_consistency = r.fsd = r.semantic_entropy = nan;
    return r;
  }
  int64_t n1 = 0, n2 = 0, k_valid = 0;
  r.mode = -1;
  double total_mass = 0.0;
  for (int64_t c = 0; c < n_unique; ++c) {
    const int64_t n = counts[c];
    const int64_t id = ids[c];
    k_valid += n;
    // Branch-free: the two largest counts, and the lowest id among the most frequent.
    const bool above = n > n1;
    const bool takes_mode = above || (n == n1 && id < r.mode);
    n2 = above ? n1 : (n > n2 ? n : n2);
    n1 = above ? n : n1;
    r.mode = takes_mode ? id : r.mode;
  }
  double h = 0.0;
  for (int64_t c = 0; c < n_unique; ++c) h -= terms.plogp(counts[c], k_valid);
  if (n_unique == 1) h = 0.0;
  r.agreement = double(n1) / double(k_valid);
  r.entropy = h;
  r.entropy_consistency = n_unique == 1 ? 1.0 : 1.0 - h / terms.log_n(n_unique);
  r.fsd = double(n1 - n2) / double(k_valid);
  if (mass_ok)
    for (int64_t c = 0; c < n_unique; ++c) total_mass += masses[c];
  if (!mass_ok || !(total_mass > 0.0)) {
    r.semantic_entropy = nan;
  } else {
    double se = 0.0;
    for (int64_t c = 0; c < n_unique; ++c) {
      const double p = masses[c] / total_mass;
      if (p > 0.0) se -= p * std::log(p);
    }
    r.semantic_entropy = se;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// selective
// ---------------------------------------------------------------------------------------------

// confidence [n] (float32 or float64, any stride; no NaN: validated by the caller), correct [n]
// bytes in {0, 1} (any stride), coverages [n_coverages] in (0, 1]. The curve outputs have room
// for n groups; n_groups receives how many were written (one per distinct confidence, most
// confident first). threshold has the dtype of confidence.
struct SelectiveArgs {
  const void* confidence = nullptr;
  DType dtype = DType::kFloat64;
  int64_t n = 0;
  int64_t conf_stride = 1;
  const uint8_t* correct = nullptr;
  int64_t correct_stride = 1;
  const double* coverages = nullptr;
  int64_t n_coverages = 0;

  double* auroc = nullptr;      // [1]
  double* aurc = nullptr;       // [1]
  int64_t* n_groups = nullptr;  // [1]
  void* threshold = nullptr;    // [n]
  double* coverage = nullptr;   // [n]
  double* risk = nullptr;       // [n]
  double* accuracy = nullptr;   // [n_coverages]
};

// Sortable keys: unsigned integers whose order is the order of the floats (no NaN). -0.0 and
// +0.0 map to the same key, so they tie, as they compare equal.
LOGCAL_HD uint64_t sortable_key(double x) {
  const uint64_t u = double_bits(x + 0.0);  // -0.0 -> +0.0
  return (u >> 63) ? ~u : (u | (uint64_t(1) << 63));
}
LOGCAL_HD double key_to_double(uint64_t k) {
  return bits_double((k >> 63) ? (k & ~(uint64_t(1) << 63)) : ~k);
}
LOGCAL_HD uint32_t sortable_key(float x) {
  const uint32_t u = float_to_bits(x + 0.0f);  // -0.0 -> +0.0
  return (u >> 31) ? ~u : (u | (uint32_t(1) << 31));
}
LOGCAL_HD float key_to_float(uint32_t k) {
  return bits_to_float((k >> 31) ? (k & ~(uint32_t(1) << 31)) : ~k);
}

// Selective risk summed over the positions a+1 .. a+n of the ranking (1-based) that a group of
// n tied samples with e_g errors occupies, after a samples with e_b errors. Tied samples come
// in every order with equal chance, so the expected errors among the first i are linear across
// the group: E[risk(i)] = (e_b + (i - a) e_g / n) / i. The area under the risk-coverage curve
// (AURC, Geifman & El-Yaniv 2017) is the mean of risk(i) over i = 1..N.
LOGCAL_HD double group_risk_sum(int64_t a, int64_t n, int64_t e_b, int64_t e_g) {
  if (n == 1) return double(e_b + e_g) / double(a + 1);
  const double r = double(e_g) / double(n);
  double s = 0.0;
  for (int64_t j = 1; j <= n; ++j) s += (double(e_b) + double(j) * r) / double(a + j);
  return s;
}

}  // namespace logcal
