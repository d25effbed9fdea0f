// The outputs of one token_stats row, from its finished statistics. The CPU's finish_row and
// the CUDA row writer both write through these, so a row reads the same from either back end.
#pragma once

#include <cstdint>
#include <limits>

#include "logcal/core/host_device.h"
#include "logcal/core/softmax_state.h"
#include "logcal/token_args.h"

namespace logcal {

// out[i] = v as the output type T (the compute type of the logits), when the output is wanted.
template <class T>
LOGCAL_HD void put_output(void* out, int64_t i, double v) {
  if (out != nullptr) static_cast<T*>(out)[i] = T(v);
}

// What a row without statistics (SoftmaxState::valid() is false: a NaN, a +inf, or no finite
// logit) reports: every float output NaN -- logsumexp, max_logprob, entropy, varentropy,
// target_logprob, each top-k log-probability and each log_softmax entry -- and every index
// output -1: argmax, target_rank and each top-k id.
struct InvalidRow {
  static constexpr int64_t kIndex = -1;
  template <class T>
  LOGCAL_HD static T value() {
    return std::numeric_limits<T>::quiet_NaN();
  }
};

// Writes an invalid row of token_stats: its per-row fields when `row_fields`, and its top-k
// entries first, first + step, ... below top_k (so the threads of a GPU block can share them).
template <class T>
LOGCAL_HD void write_invalid_row(const TokenStatsArgs& a, int64_t row, bool row_fields,
                                 int64_t first, int64_t step) {
  const double nan = InvalidRow::value<double>();
  if (row_fields) {
    put_output<T>(a.logsumexp, row, nan);
    put_output<T>(a.max_logprob, row, nan);
    put_output<T>(a.entropy, row, nan);
    put_output<T>(a.varentropy, row, nan);
    put_output<T>(a.target_logprob, row, nan);
    if (a.argmax) a.argmax[row] = InvalidRow::kIndex;
    if (a.target_rank) a.target_rank[row] = InvalidRow::kIndex;
  }
  for (int64_t i = first; i < a.top_k; i += step) {
    if (a.topk_ids) a.topk_ids[row * a.top_k + i] = InvalidRow::kIndex;
    put_output<T>(a.topk_logprobs, row * a.top_k + i, nan);
  }
}

// Writes the per-row fields of a valid row (the varentropy from the moments `st` kept when it is
// wanted). `argmax` is the row's top-1 id; `targeted` says the
// row has a target (target_logit is then its logit) and `n_greater` counts the logits strictly
// above the target's. A row without a target has a NaN target_logprob and target_rank -1.
template <class T>
LOGCAL_HD void write_row_fields(const TokenStatsArgs& a, int64_t row, const SoftmaxState& st,
                                const RowSoftmax& rs, int64_t argmax, bool targeted,
                                double target_logit, int64_t n_greater) {
  put_output<T>(a.logsumexp, row, rs.logsumexp());
  put_output<T>(a.max_logprob, row, rs.max_logprob());
  put_output<T>(a.entropy, row, RowSoftmax::entropy(st));
  if (a.varentropy) put_output<T>(a.varentropy, row, RowSoftmax::varentropy(st));
  if (a.argmax) a.argmax[row] = argmax;
  put_output<T>(a.target_logprob, row,
                targeted ? rs.logprob(target_logit) : std::numeric_limits<double>::quiet_NaN());
  if (a.target_rank) a.target_rank[row] = targeted ? n_greater : -1;
}

// Writes top-k entry i of a valid row: the id and log-probability of its i-th best logit.
template <class T>
LOGCAL_HD void write_topk_entry(const TokenStatsArgs& a, int64_t row, int64_t i,
                                const RowSoftmax& rs, int64_t id, double logit) {
  if (a.topk_ids) a.topk_ids[row * a.top_k + i] = id;
  put_output<T>(a.topk_logprobs, row * a.top_k + i, rs.logprob(logit));
}

}  // namespace logcal
