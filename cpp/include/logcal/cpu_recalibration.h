// The CPU back end of the confidence recalibration maps (logcal.recalibration): the
// pool-adjacent-violators fit of isotonic calibration and the one-pass sums of Platt scaling's
// Newton steps (the logit taken in the pass). Every entry point returns a status and never
// throws; validation with user-facing messages happens in Python.
#pragma once

#include <cstdint>

#include "logcal/common.h"

namespace logcal {

struct IsotonicArgs {
  const double* confidence = nullptr;  // [n], dense, each in [0, 1]
  const uint8_t* correct = nullptr;    // [n], dense, 0 or 1
  int64_t n = 0;
  double* x = nullptr;  // [n] out: the kept distinct confidences, ascending
  double* y = nullptr;  // [n] out: the fitted value at each
  int64_t* n_kept = nullptr;
};

// Confidences of exactly 0 or 1 have an infinite logit: Platt scaling clips them to
// [kPlattClip, 1 - kPlattClip] first.
constexpr double kPlattClip = 1e-12;

struct PlattArgs {
  const void* confidence = nullptr;    // [n * stride], each in [0, 1]
  DType conf_dtype = DType::kFloat64;  // kFloat32 or kFloat64
  const uint8_t* correct = nullptr;    // [n * stride], 0 or 1
  int64_t n = 0;            // samples: confidence[i * stride], correct[i * stride] for i < n
  int64_t stride = 1;       // >= 1: a larger one takes an evenly spread subsample
  double a = 0.0, b = 0.0;  // P(correct) = sigmoid(a z + b), z = logit of the clipped confidence
  // out [6]: the logistic loss sum_i softplus(t_i) - y_i t_i (t = a z + b), its gradient
  // (d/da, d/db) and Hessian (aa, ab, bb).
  double* sums = nullptr;
};

namespace cpu {

// Exact: the data are pooled by distinct confidence with integer counts, and blocks are
// compared and merged on those integers; each fitted value is one rounded division.
Status isotonic_fit(const IsotonicArgs& args);

// Bitwise reproducible at each instruction-set level: fixed blocks of the data, their partial
// sums combined in order, whatever the thread count.
Status platt_sums(const PlattArgs& args);

}  // namespace cpu
}  // namespace logcal
