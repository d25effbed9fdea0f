// Arguments of the token-level kernels, shared by the CPU and CUDA back ends.
//
// Logits are an array of shape [..., V] with arbitrary strides (in elements); the leading
// dimensions are walked in C order, so row r of the kernel is the r-th index of `[...]`.
// Per-row outputs are dense, in that same order.
#pragma once

#include <cstdint>

#include "logcal/common.h"

namespace logcal {

constexpr int kMaxLeadingDims = 32;

// The rows of an [..., V] array: base pointer, element type, leading shape and strides.
template <class Pointer>
struct RowsView {
  Pointer data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t n_rows = 0;  // product of the leading shape
  int64_t vocab = 0;   // V, the last axis
  int64_t col_stride = 1;
  int ndim = 0;  // number of leading dimensions
  int64_t shape[kMaxLeadingDims] = {};
  int64_t stride[kMaxLeadingDims] = {};

  // Element offset of the first entry of row `row` (64-bit: N x V > 2^31 is normal use).
  LOGCAL_HD int64_t row_offset(int64_t row) const {
    int64_t offset = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t i = row % shape[d];
      row /= shape[d];
      offset += i * stride[d];
    }
    return offset;
  }
};

using ConstRows = RowsView<const void*>;
using MutableRows = RowsView<void*>;

// token_stats. Float outputs have the compute type of the logits: float for 16/32-bit logits,
// double for float64 logits. Any output pointer may be null: that field is not wanted.
struct TokenStatsArgs {
  ConstRows logits;
  const int64_t* targets = nullptr;  // [n_rows], or null
  int64_t ignore_index = -100;
  int64_t top_k = 0;
  double temperature = 1.0;

  void* logsumexp = nullptr;       // [n_rows]
  void* max_logprob = nullptr;     // [n_rows]
  int64_t* argmax = nullptr;       // [n_rows]
  void* entropy = nullptr;         // [n_rows]
  void* varentropy = nullptr;      // [n_rows]: Var_p[ln p]; computed only when wanted
  void* target_logprob = nullptr;  // [n_rows]
  int64_t* target_rank = nullptr;  // [n_rows]
  int64_t* topk_ids = nullptr;     // [n_rows, top_k]
  void* topk_logprobs = nullptr;   // [n_rows, top_k]
};

// log_softmax(logits / temperature) over the last axis, into `out` (same shape, any strides,
// element type out.dtype).
struct LogSoftmaxArgs {
  ConstRows logits;
  MutableRows out;
  double temperature = 1.0;
  // `out` was just allocated for this call: its pages are zeroed by the OS on first touch,
  // which leaves the lines in cache. Ordinary stores then reuse them; non-temporal stores
  // (best for a large existing buffer) would evict them first (measured: 48 vs 39 ms, fresh
  // [1024, 128256] float32).
  bool out_is_new = false;
};

}  // namespace logcal
