// Thin pybind11 layer over the CPU kernels: unpack arrays into kernel arguments, release the
// GIL, call, and turn a status into an exception. Validation with user-facing messages happens
// once, in Python (logcal/_token.py); the checks here only guard the kernel's preconditions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "logcal/cpu.h"

namespace py = pybind11;
using logcal::DType;
using logcal::Status;

namespace {

size_t item_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
  }
  throw std::invalid_argument("unknown dtype code");
}

template <class Rows, class Array>
Rows rows_of(Array& a, void* data, int dtype_code, const char* name) {
  Rows rows;
  rows.data = data;
  rows.dtype = DType(dtype_code);
  const auto itemsize = py::ssize_t(item_size(rows.dtype));
  if (a.itemsize() != itemsize)
    throw std::invalid_argument(std::string(name) + ": element size does not match its dtype");
  if (a.ndim() < 1 || a.ndim() - 1 > logcal::kMaxLeadingDims)
    throw std::invalid_argument(std::string(name) + ": unsupported number of dimensions");
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.strides(d) % itemsize != 0)
      throw std::invalid_argument(std::string(name) + ": strides are not a multiple of the element size");
  rows.ndim = int(a.ndim() - 1);
  rows.vocab = a.shape(a.ndim() - 1);
  rows.col_stride = a.strides(a.ndim() - 1) / itemsize;
  rows.n_rows = 1;
  for (int d = 0; d < rows.ndim; ++d) {
    rows.shape[d] = a.shape(d);
    rows.stride[d] = a.strides(d) / itemsize;
    rows.n_rows *= a.shape(d);
  }
  return rows;
}

void* out_ptr(const py::object& o) {
  if (o.is_none()) return nullptr;
  return py::cast<py::array>(o).mutable_data();
}

void check(Status s, const char* what) {
  switch (s) {
    case Status::kOk: return;
    case Status::kInvalidArgument: throw std::invalid_argument(std::string(what) + ": invalid argument");
    case Status::kOutOfMemory: throw std::bad_alloc();
    default: throw std::runtime_error(std::string(what) + ": internal error");
  }
}

void token_stats(const py::array& logits, int dtype_code, const py::object& targets,
                 int64_t ignore_index, int64_t top_k, double temperature,
                 const py::object& logsumexp, const py::object& max_logprob,
                 const py::object& argmax, const py::object& entropy,
                 const py::object& target_logprob, const py::object& target_rank,
                 const py::object& topk_ids, const py::object& topk_logprobs) {
  logcal::TokenStatsArgs args;
  args.logits = rows_of<logcal::ConstRows>(logits, const_cast<void*>(logits.data()), dtype_code, "logits");
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
  Status s;
  {
    py::gil_scoped_release release;
    s = logcal::cpu::token_stats(args);
  }
  check(s, "token_stats");
}

void log_softmax(const py::array& logits, int dtype_code, py::array& out, int out_dtype_code,
                 double temperature) {
  logcal::LogSoftmaxArgs args;
  args.logits = rows_of<logcal::ConstRows>(logits, const_cast<void*>(logits.data()), dtype_code, "logits");
  args.out = rows_of<logcal::MutableRows>(out, out.mutable_data(), out_dtype_code, "out");
  if (args.out.n_rows != args.logits.n_rows || args.out.vocab != args.logits.vocab)
    throw std::invalid_argument("out: shape differs from logits");
  args.temperature = temperature;
  Status s;
  {
    py::gil_scoped_release release;
    s = logcal::cpu::log_softmax(args);
  }
  check(s, "log_softmax");
}

logcal::cpu::Isa isa_from_name(const std::string& name) {
  using logcal::cpu::Isa;
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512})
    if (name == logcal::cpu::isa_name(isa)) return isa;
  throw std::invalid_argument("unknown instruction-set level '" + name +
                              "' (expected baseline, avx2 or avx512)");
}

}  // namespace

PYBIND11_MODULE(_core_cpu, m) {
  m.doc() = "logcal CPU kernels (internal: use the functions of the logcal package)";
  m.def("token_stats", &token_stats);
  m.def("log_softmax", &log_softmax);
  m.def("set_num_threads", &logcal::cpu::set_num_threads);
  m.def("get_num_threads", &logcal::cpu::get_num_threads);
  m.def("isa", [] { return std::string(logcal::cpu::isa_name(logcal::cpu::active_isa())); });
  m.def("best_isa", [] { return std::string(logcal::cpu::isa_name(logcal::cpu::best_isa())); });
  m.def("set_isa", [](const std::string& name) {
    if (!logcal::cpu::set_isa(isa_from_name(name)))
      throw std::invalid_argument("instruction-set level '" + name + "' is not supported by this CPU or build");
  });
}
