// The CPU back end of the calibration statistics: entry points and their arguments.
#pragma once

#include <cstdint>

#include "logcal/common.h"
#include "logcal/core/calibration.h"

namespace logcal {
namespace cpu {

// Element types of the inputs (codes shared with python/logcal/_calibration.py).
enum class ConfType : int { kFloat32 = 0, kFloat64 = 1 };
enum class CorrectType : int { kUInt8 = 0, kInt32 = 1, kInt64 = 2, kFloat32 = 3, kFloat64 = 4 };

// calibration_stats: one pass over n (confidence, correctness[, weight]) samples.
//
// Validity (checked in the same pass, never trusted): a confidence is valid in [0, 1] (NaN is
// not); an integer correctness is 0 or 1; a float correctness is in [0, 1]. Weights are checked
// by the caller (finite, >= 0, < 2^30). On the first invalid sample the kernel stops and reports
// its position; the outputs are then unspecified and the caller raises.
//
// Binning: with edges == nullptr, n_bins exact uniform bins (calib::uniform_bin). Otherwise the
// n_edges sorted inner edges give n_bins = n_edges + 1 bins (calib::edges_bin, `right_closed`
// choosing the side); edges_scale > 0 says edge j should be near (j + 1) / edges_scale (numpy's
// or torch's linspace): when every edge is within 1e-9 / edges_scale of that, a sample whose
// c * edges_scale is at least 1e-7 from an integer is binned by floor(c * edges_scale) alone (no
// edge can lie between), and only the others are compared with the edges; otherwise, and for
// any other edges, the bin is found by comparisons. Either way the result is exact.
//
// Outputs are ADDED to, so an accumulator passes its state in; one-shot callers pass zeros.
// 128-bit values are (lo, hi) pairs of uint64.
struct CalibrationArgs {
  int64_t n = 0;
  const void* confidence = nullptr;
  ConfType conf_type = ConfType::kFloat64;
  int64_t conf_stride = 1;  // in elements
  const void* correct = nullptr;
  CorrectType correct_type = CorrectType::kUInt8;
  int64_t correct_stride = 1;
  const double* weights = nullptr;  // optional
  int64_t weight_stride = 1;

  int64_t n_bins = 15;
  const double* edges = nullptr;
  int64_t n_edges = 0;
  bool right_closed = false;
  double edges_scale = 0.0;

  double eps = 1e-12;  // NLL clip: c -> min(max(c, eps), 1 - eps)

  // Only what the binned metrics need (count, sum w, sum c, sum y, and sum c y, sum y^2 that come
  // free): sum (c - y)^2 and sum nll are left untouched. For ECE-only callers; about twice as fast.
  bool light = false;

  // Poisson bootstrap (n_bootstrap = 0: none): unit of sample i is (offset + i) / block.
  int64_t n_bootstrap = 0;
  uint64_t seed = 0;
  int64_t block = 1;
  int64_t offset = 0;

  int64_t* count = nullptr;          // [n_bins]
  uint64_t* sums = nullptr;          // [n_bins][calib::kNumFields][2]
  uint64_t* boot_bins = nullptr;     // [n_bootstrap][n_bins][calib::kNumBootBinFields][2]
  uint64_t* boot_totals = nullptr;   // [n_bootstrap][calib::kNumBootTotalFields][2]
  int64_t* first_invalid = nullptr;  // out: position of the first invalid sample, or -1
};

Status calibration_stats(const CalibrationArgs& args);

// Per-bin sums accumulated in index order in the confidence's own float type -- count += 1,
// conf += c, acc += T(a) -- exactly as a sequential scatter-add does (torch's CPU scatter_add_,
// numpy's add.at): for drop-in compatibility with libraries that sum that way (torchmetrics),
// not for accuracy. Bins are [e[k-1], e[k]) over the n_edges sorted inner edges (in the
// confidence's type); bin k is guessed as floor(c * edges_scale) and corrected by comparisons.
// Single-threaded, because the order of the additions is the point. Stops at the first
// confidence outside [0, 1] (or NaN) -- or, with check_accuracy, the first accuracy that is not
// 0 or 1 -- and reports it; outputs are then unspecified.
struct SequentialSumsArgs {
  int64_t n = 0;
  const void* confidence = nullptr;
  ConfType conf_type = ConfType::kFloat64;
  int64_t conf_stride = 1;
  const void* accuracy = nullptr;
  CorrectType accuracy_type = CorrectType::kUInt8;
  int64_t accuracy_stride = 1;
  const void* edges = nullptr;  // [n_edges], the confidence's type
  int64_t n_edges = 0;
  double edges_scale = 0.0;
  bool check_accuracy = false;
  void* count = nullptr;     // [n_edges + 1], the confidence's type
  void* conf_sum = nullptr;  // [n_edges + 1]
  void* acc_sum = nullptr;   // [n_edges + 1]
  int64_t* first_invalid = nullptr;
};

Status binned_sums_sequential(const SequentialSumsArgs& args);

// top_label: for each of n rows of k class probabilities, the largest (the confidence) and
// whether its class -- the lowest index among ties -- is the row's label. Probabilities are
// checked to be in [0, 1] (NaN is not) and labels to be in [0, k), in the same pass; the first
// invalid probability in row-major order (row * k + class) and the first invalid label (row) are
// reported, -1 if none, and the outputs are then unspecified.
struct TopLabelArgs {
  int64_t n = 0, k = 0;
  const void* probs = nullptr;
  ConfType probs_type = ConfType::kFloat64;
  int64_t row_stride = 0, class_stride = 1;  // in elements
  const int64_t* labels = nullptr;
  int64_t label_stride = 1;
  void* confidence = nullptr;  // [n], the probabilities' type
  uint8_t* correct = nullptr;  // [n], 0 or 1
  int64_t* first_bad_prob = nullptr;
  int64_t* first_bad_label = nullptr;
};

Status top_label(const TopLabelArgs& args);

}  // namespace cpu
}  // namespace logcal
