// Thin pybind11 layer over the CPU kernels: unpack arrays into kernel arguments, release the
// GIL, call, and turn a status into an exception. Validation with user-facing messages happens
// once, in Python (logcal/_token.py); the checks here only guard the kernel's preconditions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"
#include "logcal/core/half.h"
#include "logcal/cpu.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

void token_stats(const py::array& logits, int dtype_code, const py::object& targets,
                 int64_t ignore_index, int64_t top_k, double temperature,
                 const py::object& logsumexp, const py::object& max_logprob,
                 const py::object& argmax, const py::object& entropy,
                 const py::object& target_logprob, const py::object& target_rank,
                 const py::object& topk_ids, const py::object& topk_logprobs) {
  logcal::TokenStatsArgs args;
  args.logits =
      rows_of<logcal::ConstRows>(logits, const_cast<void*>(logits.data()), dtype_code, "logits");
  if (!targets.is_none()) {
    auto t = py::cast<py::array_t<int64_t, py::array::c_style>>(targets);
    if (t.size() != args.logits.n_rows) throw std::invalid_argument("targets: wrong length");
    args.targets = t.data();
  }
  args.ignore_index = ignore_index;
  args.top_k = top_k;
  args.temperature = temperature;
  args.logsumexp = out_ptr(logsumexp);
  args.max_logprob = out_ptr(max_logprob);
  args.argmax = static_cast<int64_t*>(out_ptr(argmax));
  args.entropy = out_ptr(entropy);
  args.target_logprob = out_ptr(target_logprob);
  args.target_rank = static_cast<int64_t*>(out_ptr(target_rank));
  args.topk_ids = static_cast<int64_t*>(out_ptr(topk_ids));
  args.topk_logprobs = out_ptr(topk_logprobs);
  run_without_gil(logcal::cpu::token_stats, args, "token_stats");
}

void log_softmax(const py::array& logits, int dtype_code, py::array& out, int out_dtype_code,
                 double temperature, bool out_is_new) {
  logcal::LogSoftmaxArgs args;
  args.logits =
      rows_of<logcal::ConstRows>(logits, const_cast<void*>(logits.data()), dtype_code, "logits");
  args.out = rows_of<logcal::MutableRows>(out, out.mutable_data(), out_dtype_code, "out");
  if (args.out.n_rows != args.logits.n_rows || args.out.vocab != args.logits.vocab)
    throw std::invalid_argument("out: shape differs from logits");
  args.temperature = temperature;
  args.out_is_new = out_is_new;
  run_without_gil(logcal::cpu::log_softmax, args, "log_softmax");
}

// Element-wise 16-bit conversions of the shared core, exposed for exhaustive tests.
template <class From, class To, class F>
py::array_t<To> convert(py::array_t<From, py::array::c_style | py::array::forcecast> in, F f) {
  py::array_t<To> out(in.size());
  const From* src = in.data();
  To* dst = out.mutable_data();
  for (py::ssize_t i = 0; i < in.size(); ++i) dst[i] = f(src[i]);
  return out;
}

}  // namespace

void bind_token(py::module_& m) {
  m.def("_fp16_bits_to_float32", [](py::array_t<uint16_t, py::array::c_style> a) {
    return convert<uint16_t, float>(a, logcal::fp16_to_float);
  });
  m.def("_float32_to_fp16_bits", [](py::array_t<float, py::array::c_style> a) {
    return convert<float, uint16_t>(a, logcal::float_to_fp16);
  });
  m.def("_float32_to_bf16_bits", [](py::array_t<float, py::array::c_style> a) {
    return convert<float, uint16_t>(a, logcal::float_to_bf16);
  });
  m.def("token_stats", &token_stats);
  m.def("log_softmax", &log_softmax);
}
