// The operations both back ends expose, with one signature each. The arguments are checked and
// turned into the kernels' argument structs here, once; each module (cpu_*.cpp,
// cuda_module.cpp) adds only what its device needs -- the private copy of the index values,
// scratch memory, the launch -- and registers its function through `def_*`, which gives both
// modules the same keyword-only signature and docstring.
#pragma once

#include <pybind11/pybind11.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "array.h"
#include "logcal/cpu_calibration.h"
#include "logcal/sequence.h"
#include "logcal/token_args.h"

namespace logcal_bindings {

namespace py = pybind11;

inline std::optional<Array> optional_array(const py::object& v, const char* name) {
  if (v.is_none()) return std::nullopt;
  return array_arg(v, name);
}

inline void check_device(const Array& a, int device) {
  if (a.device == device) return;
  throw std::invalid_argument(a.name + (device < 0 ? ": must be in host memory here"
                                                   : ": must be on the device of the first input"));
}

// The rows of an [..., V] array for the token kernels: leading shape and strides, V, and the
// stride along V (all in elements).
template <class Rows>
Rows rows_of(const Array& a, int device) {
  check_device(a, device);
  if (a.ndim() < 1 || a.ndim() - 1 > logcal::kMaxLeadingDims)
    throw std::invalid_argument(a.name + ": unsupported number of dimensions");
  Rows rows;
  rows.data = a.data<void>();
  rows.dtype = float_type(a);
  rows.ndim = a.ndim() - 1;
  rows.vocab = a.shape.back();
  rows.col_stride = a.strides.back();
  rows.n_rows = 1;
  for (int d = 0; d < rows.ndim; ++d) {
    rows.shape[d] = a.shape[size_t(d)];
    rows.stride[d] = a.strides[size_t(d)];
    rows.n_rows *= a.shape[size_t(d)];
  }
  if (rows.vocab < 1 || rows.n_rows < 1) throw std::invalid_argument(a.name + ": empty array");
  return rows;
}

// A finite temperature > 0 whose inverse is finite in the compute type of `logits` (the
// documented minimum of logcal._token.MIN_TEMPERATURE).
inline double checked_temperature(double t, logcal::DType logits) {
  const double min = logits == logcal::DType::kFloat64 ? 1e-307 : 1e-38;
  if (!(std::isfinite(t) && t >= min))
    throw std::invalid_argument(
        "temperature must be a finite number >= " +
        std::string(logits == logcal::DType::kFloat64 ? "1e-307" : "1e-38"));
  return t;
}

template <class T>
T* output(const py::object& v, const char* name, const std::vector<int64_t>& shape,
          const char* dtype, int device) {
  if (v.is_none()) return nullptr;
  const Array o = array_arg(v, name);
  check_output(o, shape, dtype, device);
  return o.data<T>();
}

// The element type of confidences (and of probabilities and edges): float32 or float64.
inline logcal::cpu::ConfType conf_type(const Array& a) {
  if (a.dtype == "float32") return logcal::cpu::ConfType::kFloat32;
  if (a.dtype == "float64") return logcal::cpu::ConfType::kFloat64;
  throw py::type_error(a.name + ": expected float32 or float64, got " + a.dtype);
}

// The element type of correctness: bool or uint8 (read as bytes), int32, int64, float32,
// float64.
inline logcal::cpu::CorrectType correct_type(const Array& a) {
  using logcal::cpu::CorrectType;
  if (a.dtype == "bool" || a.dtype == "uint8") return CorrectType::kUInt8;
  if (a.dtype == "int32") return CorrectType::kInt32;
  if (a.dtype == "int64") return CorrectType::kInt64;
  if (a.dtype == "float32") return CorrectType::kFloat32;
  if (a.dtype == "float64") return CorrectType::kFloat64;
  throw py::type_error(a.name + ": expected bool, uint8, int32, int64, float32 or float64, got " +
                       a.dtype);
}

// (confidence, correctness) samples: two 1-D arrays of one length on `device`.
struct Samples {
  int64_t n = 0;
  Array confidence, correct;
  logcal::cpu::ConfType conf_type;
  logcal::cpu::CorrectType correct_type;
};

inline Samples samples_arg(const py::object& confidence, const py::object& correct,
                           const char* correct_name, int device) {
  Samples s;
  s.confidence = array_arg(confidence, "confidence");
  s.correct = array_arg(correct, correct_name);
  check_device(s.confidence, device);
  check_device(s.correct, device);
  if (s.confidence.ndim() != 1 || s.correct.shape != s.confidence.shape)
    throw std::invalid_argument(std::string("confidence and ") + correct_name +
                                ": 1-D arrays of one length");
  s.n = s.confidence.shape[0];
  s.conf_type = conf_type(s.confidence);
  s.correct_type = correct_type(s.correct);
  return s;
}

// The n_bins - 1 sorted inner edges of explicit bins (dense float64 on `device`), or none.
struct InnerEdges {
  const double* data = nullptr;
  int64_t n = 0;
};

inline InnerEdges inner_edges_arg(const py::object& edges, int64_t n_bins, int device) {
  if (edges.is_none()) return {};
  const Array e = array_arg(edges, "edges");
  check_device(e, device);
  if (e.dtype != "float64" || e.ndim() != 1 || !e.dense() || e.shape[0] != n_bins - 1)
    throw std::invalid_argument("edges: expected n_bins - 1 dense float64 inner edges");
  return {e.data<const double>(), e.shape[0]};
}

// --- token_stats -----------------------------------------------------------------------------

struct TokenStatsCall {
  logcal::TokenStatsArgs args;  // .targets: set by the back end to its checked private copy
  Array logits;
  std::optional<Array> targets;
  logcal::IndexRule target_rule;
};

// The device every argument of a call must be on: the host for the CPU module, the first
// input's GPU for the CUDA module.
inline int call_device(const Array& first, bool gpu) {
  if (gpu && first.device < 0)
    throw std::invalid_argument(first.name + ": must be in CUDA memory here");
  return gpu ? first.device : -1;
}

inline TokenStatsCall token_stats_call(const py::object& logits, const py::object& targets,
                                       int64_t top_k, double temperature, int64_t ignore_index,
                                       const py::object& logsumexp, const py::object& max_logprob,
                                       const py::object& argmax, const py::object& entropy,
                                       const py::object& varentropy,
                                       const py::object& target_logprob,
                                       const py::object& target_rank, const py::object& topk_ids,
                                       const py::object& topk_logprobs, bool gpu) {
  TokenStatsCall c;
  auto& a = c.args;
  c.logits = array_arg(logits, "logits");
  const Array& x = c.logits;
  const int device = call_device(x, gpu);
  a.logits = rows_of<logcal::ConstRows>(x, device);
  const int64_t vocab = a.logits.vocab;
  if (top_k < 0 || top_k > vocab)
    throw std::invalid_argument("top_k = " + std::to_string(top_k) +
                                " is outside [0, V = " + std::to_string(vocab) + "]");
  a.top_k = top_k;
  a.temperature = checked_temperature(temperature, a.logits.dtype);
  a.ignore_index = ignore_index;
  const std::vector<int64_t> lead(x.shape.begin(), x.shape.end() - 1);
  std::vector<int64_t> lead_k = lead;
  lead_k.push_back(top_k);
  const char* f = compute_dtype(a.logits.dtype);
  c.targets = optional_array(targets, "targets");
  if (c.targets) {
    check_device(*c.targets, device);
    if (c.targets->shape != lead)
      throw std::invalid_argument("targets must have the leading shape of logits");
    int_array(*c.targets);  // an integer type, or a TypeError
    c.target_rule = logcal::IndexRule{vocab, true, ignore_index};
  } else if (!target_logprob.is_none() || !target_rank.is_none()) {
    throw std::invalid_argument("target_logprob and target_rank need targets");
  }
  if (top_k == 0 && (!topk_ids.is_none() || !topk_logprobs.is_none()))
    throw std::invalid_argument("topk_ids and topk_logprobs need top_k > 0");
  a.logsumexp = output<void>(logsumexp, "logsumexp", lead, f, device);
  a.max_logprob = output<void>(max_logprob, "max_logprob", lead, f, device);
  a.argmax = output<int64_t>(argmax, "argmax", lead, "int64", device);
  a.entropy = output<void>(entropy, "entropy", lead, f, device);
  a.varentropy = output<void>(varentropy, "varentropy", lead, f, device);
  a.target_logprob = output<void>(target_logprob, "target_logprob", lead, f, device);
  a.target_rank = output<int64_t>(target_rank, "target_rank", lead, "int64", device);
  a.topk_ids = output<int64_t>(topk_ids, "topk_ids", lead_k, "int64", device);
  a.topk_logprobs = output<void>(topk_logprobs, "topk_logprobs", lead_k, f, device);
  return c;
}

// The binding of token_stats for a back end whose `Run(call)` copies the targets and launches.
template <bool kGpu, void (*Run)(TokenStatsCall&)>
void token_stats_entry(const py::object& logits, const py::object& targets, int64_t top_k,
                       double temperature, int64_t ignore_index, const py::object& logsumexp,
                       const py::object& max_logprob, const py::object& argmax,
                       const py::object& entropy, const py::object& varentropy,
                       const py::object& target_logprob, const py::object& target_rank,
                       const py::object& topk_ids, const py::object& topk_logprobs) {
  TokenStatsCall call = token_stats_call(
      logits, targets, top_k, temperature, ignore_index, logsumexp, max_logprob, argmax, entropy,
      varentropy, target_logprob, target_rank, topk_ids, topk_logprobs, kGpu);
  Run(call);
}

template <bool kGpu, void (*Run)(TokenStatsCall&)>
void def_token_stats(py::module_& m) {
  m.def("token_stats", &token_stats_entry<kGpu, Run>, py::kw_only(), py::arg("logits"),
        py::arg("targets") = py::none(), py::arg("top_k") = 0, py::arg("temperature") = 1.0,
        py::arg("ignore_index") = -100, py::arg("logsumexp") = py::none(),
        py::arg("max_logprob") = py::none(), py::arg("argmax") = py::none(),
        py::arg("entropy") = py::none(), py::arg("varentropy") = py::none(),
        py::arg("target_logprob") = py::none(), py::arg("target_rank") = py::none(),
        py::arg("topk_ids") = py::none(), py::arg("topk_logprobs") = py::none(),
        "Per-row statistics of softmax(logits / temperature), written into the given outputs\n"
        "(ArrayViews of dense arrays; None: not wanted). targets are copied and checked as\n"
        "they are read: a value outside [0, V) that is not ignore_index raises ValueError\n"
        "naming its position and value. varentropy, Var_p[ln p], is computed only when given\n"
        "(the one pass then also keeps its centred moments).");
}

// --- log_softmax -----------------------------------------------------------------------------

inline logcal::LogSoftmaxArgs log_softmax_args(const py::object& logits, const py::object& out,
                                               double temperature, bool out_is_new, bool gpu) {
  logcal::LogSoftmaxArgs a;
  const Array x = array_arg(logits, "logits");
  const Array o = array_arg(out, "out");
  const int device = call_device(x, gpu);
  a.logits = rows_of<logcal::ConstRows>(x, device);
  a.out = rows_of<logcal::MutableRows>(o, device);
  if (o.readonly) throw std::invalid_argument("out: output is read-only");
  if (o.shape != x.shape) throw std::invalid_argument("out: shape differs from logits");
  a.temperature = checked_temperature(temperature, a.logits.dtype);
  a.out_is_new = out_is_new;
  return a;
}

template <class F>
void def_log_softmax(py::module_& m, F f) {
  m.def("log_softmax", f, py::kw_only(), py::arg("logits"), py::arg("out"),
        py::arg("temperature") = 1.0, py::arg("out_is_new") = false,
        "log_softmax(logits / temperature) over the last axis, written into out (same shape,\n"
        "any strides, any float dtype). out_is_new: out was just allocated, which decides the\n"
        "kind of stores (non-temporal ones only into an existing large buffer).");
}

// --- sequence_stats --------------------------------------------------------------------------

struct SequenceStatsCall {
  logcal::SequenceStatsArgs args;  // .offsets: set by the back end to its checked private copy
  Array data;
  int64_t n_tokens = 0;  // flat layout: the length of token_logprobs
  std::optional<Array> offsets;
  std::vector<int64_t> out_shape;
  std::optional<Array> mask;
};

inline SequenceStatsCall sequence_stats_call(const py::object& token_logprobs,
                                             const py::object& offsets, const py::object& mask,
                                             const py::object& sum, const py::object& mean,
                                             const py::object& min, const py::object& perplexity,
                                             const py::object& count, bool gpu) {
  SequenceStatsCall c;
  auto& a = c.args;
  c.data = array_arg(token_logprobs, "token_logprobs");
  const Array& x = c.data;
  const int device = call_device(x, gpu);
  check_device(x, device);
  a.data = x.data<const void>();
  a.dtype = float_type(x);
  c.offsets = optional_array(offsets, "offsets");
  c.mask = optional_array(mask, "mask");
  if (c.offsets) {
    check_device(*c.offsets, device);
    if (x.ndim() != 1 || c.offsets->ndim() != 1 || c.offsets->shape[0] < 2)
      throw std::invalid_argument("offsets: flat token_logprobs [T] and offsets [S+1], S >= 1");
    if (c.mask) throw std::invalid_argument("mask: only for the padded layout");
    int_array(*c.offsets);  // an integer type, or a TypeError
    a.n_seq = c.offsets->shape[0] - 1;
    a.stride = x.strides[0];
    c.n_tokens = x.shape[0];
  } else {
    if (x.ndim() != 2) throw std::invalid_argument("token_logprobs: padded layout is [S, L]");
    a.n_seq = x.shape[0];
    a.length = x.shape[1];
    a.row_stride = x.strides[0];
    a.col_stride = x.strides[1];
    if (c.mask) {
      check_device(*c.mask, device);
      if (c.mask->dtype != "bool" || c.mask->shape != x.shape)
        throw std::invalid_argument("mask: a bool array of the shape of token_logprobs");
      a.mask = c.mask->data<const uint8_t>();
      a.mask_row_stride = c.mask->strides[0];
      a.mask_col_stride = c.mask->strides[1];
    }
  }
  const std::vector<int64_t> shape{a.n_seq};
  const char* f = compute_dtype(a.dtype);
  a.sum = output<void>(sum, "sum", shape, f, device);
  a.mean = output<void>(mean, "mean", shape, f, device);
  a.min = output<void>(min, "min", shape, f, device);
  a.perplexity = output<void>(perplexity, "perplexity", shape, f, device);
  a.count = output<int64_t>(count, "count", shape, "int64", device);
  return c;
}

// The binding of sequence_stats for a back end whose `Run(call)` copies the offsets and
// launches.
template <bool kGpu, void (*Run)(SequenceStatsCall&)>
void sequence_stats_entry(const py::object& token_logprobs, const py::object& offsets,
                          const py::object& mask, const py::object& sum, const py::object& mean,
                          const py::object& min, const py::object& perplexity,
                          const py::object& count) {
  SequenceStatsCall call =
      sequence_stats_call(token_logprobs, offsets, mask, sum, mean, min, perplexity, count, kGpu);
  Run(call);
}

template <bool kGpu, void (*Run)(SequenceStatsCall&)>
void def_sequence_stats(py::module_& m) {
  m.def("sequence_stats", &sequence_stats_entry<kGpu, Run>, py::kw_only(),
        py::arg("token_logprobs"), py::arg("offsets") = py::none(), py::arg("mask") = py::none(),
        py::arg("sum") = py::none(), py::arg("mean") = py::none(), py::arg("min") = py::none(),
        py::arg("perplexity") = py::none(), py::arg("count") = py::none(),
        "Per-sequence sum, mean, min, perplexity and count of token log-probabilities: flat\n"
        "[T] with CSR offsets [S+1], or padded [S, L] with an optional bool mask. offsets are\n"
        "copied and checked as they are read (ValueError naming the rule, position, value).");
}

}  // namespace logcal_bindings
