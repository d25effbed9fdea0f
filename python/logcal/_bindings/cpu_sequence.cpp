// Thin pybind11 layer over the CPU kernels of sequence_stats, choice_confidence,
// sample_consistency and selective. Validation with user-facing messages happens once, in
// Python (logcal/_sequence.py, logcal/_selective.py); the checks here only guard the kernels'
// preconditions.
#include "logcal/cpu_sequence.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

// Stride of axis `dim` in elements.
int64_t elem_stride(const py::array& a, py::ssize_t dim, const char* name) {
  const py::ssize_t item = a.itemsize();
  if (a.strides(dim) % item != 0)
    throw std::invalid_argument(std::string(name) +
                                ": strides are not a multiple of the element size");
  return int64_t(a.strides(dim) / item);
}

void check_float(const py::array& a, int dtype_code, py::ssize_t ndim, const char* name) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + ": wrong number of dimensions");
  if (a.itemsize() != py::ssize_t(item_size(DType(dtype_code))))
    throw std::invalid_argument(std::string(name) + ": element size does not match its dtype");
}

template <class T>
T* out_of(const py::object& o, py::ssize_t size, const char* name) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  if (a.size() != size || a.itemsize() != py::ssize_t(sizeof(T)) ||
      !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(name) + ": output array of the wrong size or layout");
  return static_cast<T*>(a.mutable_data());
}

void seq_outputs(logcal::SequenceStatsArgs& args, size_t out_item, const py::object& sum,
                 const py::object& mean, const py::object& min, const py::object& perplexity,
                 const py::object& count) {
  const py::ssize_t n = args.n_seq;
  auto f = [&](const py::object& o, const char* name) -> void* {
    if (o.is_none()) return nullptr;
    return out_item == 8 ? static_cast<void*>(out_of<double>(o, n, name))
                         : static_cast<void*>(out_of<float>(o, n, name));
  };
  args.sum = f(sum, "sum");
  args.mean = f(mean, "mean");
  args.min = f(min, "min");
  args.perplexity = f(perplexity, "perplexity");
  args.count = out_of<int64_t>(count, n, "count");
}

size_t compute_item(int dtype_code) { return DType(dtype_code) == DType::kFloat64 ? 8 : 4; }

void sequence_stats_flat(const py::array& data, int dtype_code,
                         const py::array_t<int64_t, py::array::c_style>& offsets,
                         const py::object& sum, const py::object& mean, const py::object& min,
                         const py::object& perplexity, const py::object& count) {
  check_float(data, dtype_code, 1, "token_logprobs");
  if (offsets.ndim() != 1 || offsets.size() < 1)
    throw std::invalid_argument("offsets: must be 1-D with at least one entry");
  logcal::SequenceStatsArgs args;
  args.data = data.data();
  args.dtype = DType(dtype_code);
  args.n_seq = int64_t(offsets.size()) - 1;
  args.offsets = offsets.data();
  args.stride = elem_stride(data, 0, "token_logprobs");
  if (args.offsets[0] < 0 || args.offsets[args.n_seq] > int64_t(data.shape(0)))
    throw std::invalid_argument("offsets: outside the data");
  seq_outputs(args, compute_item(dtype_code), sum, mean, min, perplexity, count);
  run_without_gil(logcal::cpu::sequence_stats, args, "sequence_stats");
}

void sequence_stats_padded(const py::array& data, int dtype_code, const py::object& mask,
                           const py::object& sum, const py::object& mean, const py::object& min,
                           const py::object& perplexity, const py::object& count) {
  check_float(data, dtype_code, 2, "token_logprobs");
  logcal::SequenceStatsArgs args;
  args.data = data.data();
  args.dtype = DType(dtype_code);
  args.n_seq = int64_t(data.shape(0));
  args.length = int64_t(data.shape(1));
  args.row_stride = elem_stride(data, 0, "token_logprobs");
  args.col_stride = elem_stride(data, 1, "token_logprobs");
  py::array m;
  if (!mask.is_none()) {
    m = py::cast<py::array>(mask);
    if (m.ndim() != 2 || m.itemsize() != 1 || m.shape(0) != data.shape(0) ||
        m.shape(1) != data.shape(1))
      throw std::invalid_argument("mask: must be a byte array of the shape of token_logprobs");
    args.mask = static_cast<const uint8_t*>(m.data());
    args.mask_row_stride = int64_t(m.strides(0));
    args.mask_col_stride = int64_t(m.strides(1));
  }
  seq_outputs(args, compute_item(dtype_code), sum, mean, min, perplexity, count);
  run_without_gil(logcal::cpu::sequence_stats, args, "sequence_stats");
}

void choice_confidence(const py::array& logprobs, int dtype_code, const py::object& lengths,
                       const py::object& labels, const py::object& probs, const py::object& pred,
                       const py::object& confidence, const py::object& correct) {
  check_float(logprobs, dtype_code, 2, "choice_logprobs");
  logcal::ChoiceArgs args;
  args.logprobs = logprobs.data();
  args.dtype = DType(dtype_code);
  args.n_q = int64_t(logprobs.shape(0));
  args.n_c = int64_t(logprobs.shape(1));
  args.q_stride = elem_stride(logprobs, 0, "choice_logprobs");
  args.c_stride = elem_stride(logprobs, 1, "choice_logprobs");
  py::array_t<double, py::array::c_style> len;
  if (!lengths.is_none()) {
    len = py::cast<py::array_t<double, py::array::c_style>>(lengths);
    if (len.size() != logprobs.size()) throw std::invalid_argument("lengths: wrong size");
    args.lengths = len.data();
  }
  py::array_t<int64_t, py::array::c_style> lab;
  if (!labels.is_none()) {
    lab = py::cast<py::array_t<int64_t, py::array::c_style>>(labels);
    if (lab.size() != py::ssize_t(args.n_q)) throw std::invalid_argument("labels: wrong size");
    args.labels = lab.data();
  }
  const size_t item = compute_item(dtype_code);
  auto f = [&](const py::object& o, py::ssize_t n, const char* name) -> void* {
    if (o.is_none()) return nullptr;
    return item == 8 ? static_cast<void*>(out_of<double>(o, n, name))
                     : static_cast<void*>(out_of<float>(o, n, name));
  };
  args.probs = f(probs, logprobs.size(), "probs");
  args.confidence = f(confidence, args.n_q, "confidence");
  args.pred = out_of<int64_t>(pred, args.n_q, "pred");
  args.correct = out_of<uint8_t>(correct, args.n_q, "correct");
  run_without_gil(logcal::cpu::choice_confidence, args, "choice_confidence");
}

void sample_consistency(const py::array& answers, const py::object& seq_logprobs, int lp_dtype_code,
                        const py::object& mode, const py::object& agreement,
                        const py::object& entropy, const py::object& entropy_consistency,
                        const py::object& fsd, const py::object& n_unique,
                        const py::object& semantic_entropy) {
  if (answers.ndim() != 2 || answers.itemsize() != 8)
    throw std::invalid_argument("answers: must be a 2-D int64 array");
  logcal::ConsistencyArgs args;
  args.answers = static_cast<const int64_t*>(answers.data());
  args.n_q = int64_t(answers.shape(0));
  args.k = int64_t(answers.shape(1));
  args.q_stride = elem_stride(answers, 0, "answers");
  args.k_stride = elem_stride(answers, 1, "answers");
  py::array lp;
  if (!seq_logprobs.is_none()) {
    lp = py::cast<py::array>(seq_logprobs);
    check_float(lp, lp_dtype_code, 2, "seq_logprobs");
    if (lp.shape(0) != answers.shape(0) || lp.shape(1) != answers.shape(1))
      throw std::invalid_argument("seq_logprobs: shape differs from answers");
    args.seq_logprobs = lp.data();
    args.lp_dtype = DType(lp_dtype_code);
    args.lp_q_stride = elem_stride(lp, 0, "seq_logprobs");
    args.lp_k_stride = elem_stride(lp, 1, "seq_logprobs");
  }
  const py::ssize_t n = args.n_q;
  args.mode = out_of<int64_t>(mode, n, "mode");
  args.agreement = out_of<double>(agreement, n, "agreement");
  args.entropy = out_of<double>(entropy, n, "entropy");
  args.entropy_consistency = out_of<double>(entropy_consistency, n, "entropy_consistency");
  args.fsd = out_of<double>(fsd, n, "fsd");
  args.n_unique = out_of<int64_t>(n_unique, n, "n_unique");
  if (!semantic_entropy.is_none()) {
    if (!args.seq_logprobs) throw std::invalid_argument("semantic_entropy: needs seq_logprobs");
    args.semantic_entropy =
        compute_item(lp_dtype_code) == 8
            ? static_cast<void*>(out_of<double>(semantic_entropy, n, "semantic_entropy"))
            : static_cast<void*>(out_of<float>(semantic_entropy, n, "semantic_entropy"));
  }
  run_without_gil(logcal::cpu::sample_consistency, args, "sample_consistency");
}

py::tuple selective(const py::array& confidence, int dtype_code, const py::array& correct,
                    const py::array_t<double, py::array::c_style>& coverages,
                    const py::object& threshold, const py::object& coverage, const py::object& risk,
                    const py::object& accuracy) {
  check_float(confidence, dtype_code, 1, "confidence");
  if (DType(dtype_code) != DType::kFloat32 && DType(dtype_code) != DType::kFloat64)
    throw std::invalid_argument("confidence: must be float32 or float64");
  if (correct.ndim() != 1 || correct.itemsize() != 1 || correct.shape(0) != confidence.shape(0))
    throw std::invalid_argument("correct: must be a byte array of the length of confidence");
  logcal::SelectiveArgs args;
  args.confidence = confidence.data();
  args.dtype = DType(dtype_code);
  args.n = int64_t(confidence.shape(0));
  args.conf_stride = elem_stride(confidence, 0, "confidence");
  args.correct = static_cast<const uint8_t*>(correct.data());
  args.correct_stride = int64_t(correct.strides(0));
  args.coverages = coverages.data();
  args.n_coverages = int64_t(coverages.size());
  const py::ssize_t n = args.n;
  args.threshold = DType(dtype_code) == DType::kFloat64
                       ? static_cast<void*>(out_of<double>(threshold, n, "threshold"))
                       : static_cast<void*>(out_of<float>(threshold, n, "threshold"));
  args.coverage = out_of<double>(coverage, n, "coverage");
  args.risk = out_of<double>(risk, n, "risk");
  args.accuracy = out_of<double>(accuracy, coverages.size(), "accuracy");
  double auroc = 0.0, aurc = 0.0;
  int64_t n_groups = 0;
  args.auroc = &auroc;
  args.aurc = &aurc;
  args.n_groups = &n_groups;
  run_without_gil(logcal::cpu::selective, args, "selective");
  return py::make_tuple(auroc, aurc, n_groups);
}

}  // namespace

void bind_sequence(py::module_& m) {
  m.def("sequence_stats_flat", &sequence_stats_flat);
  m.def("sequence_stats_padded", &sequence_stats_padded);
  m.def("choice_confidence", &choice_confidence);
  m.def("sample_consistency", &sample_consistency);
  m.def("selective", &selective);
}
