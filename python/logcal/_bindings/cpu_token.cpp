// The CPU token kernels: arguments checked in ops.h, targets copied and checked as they are
// read, then the kernel runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "binding_util.h"
#include "logcal/core/half.h"
#include "logcal/cpu.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

// The targets as read, once, into a private copy checked as it is taken; the kernel reads only
// that copy.
void run_token_stats(TokenStatsCall& call) {
  logcal::IndexError bad;
  const Status s = run_on_checked_copy(
      call.targets, size_t(call.args.logits.n_rows),
      [&](const logcal::IntArray& raw, int64_t* dst) {
        return logcal::copy_indices(raw, call.target_rule, dst, &bad);
      },
      &call.args.targets, [&] { return logcal::cpu::token_stats(call.args); });
  if (s == Status::kBadIndex)
    raise_bad_target(*call.targets, bad, call.args.logits.vocab, call.args.ignore_index);
  check_status(s, "token_stats");
}

void log_softmax(const py::object& logits, const py::object& out, double temperature,
                 bool out_is_new) {
  run_without_gil(logcal::cpu::log_softmax,
                  log_softmax_args(logits, out, temperature, out_is_new, false), "log_softmax");
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
  m.def(
      "_fp16_bits_to_float32",
      [](py::array_t<uint16_t, py::array::c_style> a) {
        return convert<uint16_t, float>(a, logcal::fp16_to_float);
      },
      py::arg("bits"));
  m.def(
      "_float32_to_fp16_bits",
      [](py::array_t<float, py::array::c_style> a) {
        return convert<float, uint16_t>(a, logcal::float_to_fp16);
      },
      py::arg("values"));
  m.def(
      "_float32_to_bf16_bits",
      [](py::array_t<float, py::array::c_style> a) {
        return convert<float, uint16_t>(a, logcal::float_to_bf16);
      },
      py::arg("values"));
  def_token_stats<false, &run_token_stats>(m);
  def_log_softmax(m, &log_softmax);
}
