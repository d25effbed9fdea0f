// The CPU kernels of sequence_stats, choice_confidence, sample_consistency and selective.
// User-facing checks run in Python (logcal/_sequence.py, logcal/_selective.py); the checks
// here guard what the kernels rely on, so that no call can make them leave an array.
#include "logcal/cpu_sequence.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"
#include "logcal/cpu.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

constexpr int kHost = -1;

// The offsets as read, once, into a private copy checked as it is taken; the kernel reads only
// that copy.
void run_sequence_stats(SequenceStatsCall& call) {
  logcal::IndexError bad;
  const Status s = run_on_checked_copy(
      call.offsets, size_t(call.args.n_seq + 1),
      [&](const logcal::IntArray& raw, int64_t* dst) {
        return logcal::copy_offsets(raw, call.n_tokens, dst, &bad);
      },
      &call.args.offsets, [&] { return logcal::cpu::sequence_stats(call.args); });
  if (s == Status::kBadIndex) raise_bad_offsets(bad, call.n_tokens);
  check_status(s, "sequence_stats");
}

// A host input of exactly `dtype` and `shape` (any strides).
Array host_input(const py::object& v, const char* name, const char* dtype,
                 const std::vector<int64_t>& shape) {
  Array a = array_arg(v, name);
  check_device(a, kHost);
  if (a.dtype != dtype) throw py::type_error(a.name + ": must have dtype " + dtype);
  if (a.shape != shape) throw std::invalid_argument(a.name + ": wrong shape");
  return a;
}

void choice_confidence(const py::object& choice_logprobs, const py::object& lengths,
                       const py::object& labels, const py::object& probs, const py::object& pred,
                       const py::object& confidence, const py::object& correct) {
  const Array x = array_arg(choice_logprobs, "choice_logprobs");
  check_device(x, kHost);
  if (x.ndim() != 2) throw std::invalid_argument("choice_logprobs: must be 2-D [Q, C]");
  logcal::ChoiceArgs args;
  args.logprobs = x.data<const void>();
  args.dtype = float_type(x);
  args.n_q = x.shape[0];
  args.n_c = x.shape[1];
  args.q_stride = x.strides[0];
  args.c_stride = x.strides[1];
  const std::vector<int64_t> q{args.n_q};
  if (!lengths.is_none()) {  // read densely by the kernel
    const Array len = host_input(lengths, "lengths", "float64", x.shape);
    if (!len.dense()) throw std::invalid_argument("lengths: must be C-contiguous");
    args.lengths = len.data<const double>();
  }
  if (!labels.is_none()) {  // compared with the prediction, never used as an address
    const Array lab = host_input(labels, "labels", "int64", q);
    if (!lab.dense()) throw std::invalid_argument("labels: must be C-contiguous");
    args.labels = lab.data<const int64_t>();
  }
  const char* f = compute_dtype(args.dtype);
  args.probs = output<void>(probs, "probs", x.shape, f, kHost);
  args.pred = output<int64_t>(pred, "pred", q, "int64", kHost);
  args.confidence = output<void>(confidence, "confidence", q, f, kHost);
  args.correct = output<uint8_t>(correct, "correct", q, "bool", kHost);
  run_without_gil(logcal::cpu::choice_confidence, args, "choice_confidence");
}

void sample_consistency(const py::object& answers, const py::object& seq_logprobs,
                        const py::object& mode, const py::object& agreement,
                        const py::object& entropy, const py::object& entropy_consistency,
                        const py::object& fsd, const py::object& n_unique,
                        const py::object& semantic_entropy) {
  const Array ans = array_arg(answers, "answers");
  if (ans.ndim() != 2) throw std::invalid_argument("answers: must be 2-D [Q, K]");
  host_input(answers, "answers", "int64", ans.shape);  // each id is read once, into a private row
  logcal::ConsistencyArgs args;
  args.answers = ans.data<const int64_t>();
  args.n_q = ans.shape[0];
  args.k = ans.shape[1];
  args.q_stride = ans.strides[0];
  args.k_stride = ans.strides[1];
  const char* se_dtype = "float32";
  if (!seq_logprobs.is_none()) {
    const Array lp = array_arg(seq_logprobs, "seq_logprobs");
    check_device(lp, kHost);
    if (lp.shape != ans.shape) throw std::invalid_argument("seq_logprobs: shape differs");
    args.seq_logprobs = lp.data<const void>();
    args.lp_dtype = float_type(lp);
    args.lp_q_stride = lp.strides[0];
    args.lp_k_stride = lp.strides[1];
    se_dtype = compute_dtype(args.lp_dtype);
  }
  const std::vector<int64_t> q{args.n_q};
  args.mode = output<int64_t>(mode, "mode", q, "int64", kHost);
  args.agreement = output<double>(agreement, "agreement", q, "float64", kHost);
  args.entropy = output<double>(entropy, "entropy", q, "float64", kHost);
  args.entropy_consistency =
      output<double>(entropy_consistency, "entropy_consistency", q, "float64", kHost);
  args.fsd = output<double>(fsd, "fsd", q, "float64", kHost);
  args.n_unique = output<int64_t>(n_unique, "n_unique", q, "int64", kHost);
  if (!semantic_entropy.is_none() && !args.seq_logprobs)
    throw std::invalid_argument("semantic_entropy: needs seq_logprobs");
  args.semantic_entropy = output<void>(semantic_entropy, "semantic_entropy", q, se_dtype, kHost);
  run_without_gil(logcal::cpu::sample_consistency, args, "sample_consistency");
}

py::tuple selective(const py::object& confidence, const py::object& correct,
                    const py::object& coverages, const py::object& threshold,
                    const py::object& coverage, const py::object& risk,
                    const py::object& accuracy) {
  const Array c = array_arg(confidence, "confidence");
  check_device(c, kHost);
  if (c.ndim() != 1) throw std::invalid_argument("confidence: must be 1-D");
  logcal::SelectiveArgs args;
  args.dtype = float_type(c);
  if (args.dtype != DType::kFloat32 && args.dtype != DType::kFloat64)
    throw py::type_error("confidence: must be float32 or float64");
  args.confidence = c.data<const void>();
  args.n = c.shape[0];
  args.conf_stride = c.strides[0];
  const Array y = array_arg(correct, "correct");
  check_device(y, kHost);
  if ((y.dtype != "bool" && y.dtype != "uint8") || y.shape != c.shape)
    throw std::invalid_argument("correct: a bool or uint8 array of the length of confidence");
  args.correct = y.data<const uint8_t>();
  args.correct_stride = y.strides[0];
  const Array cov = array_arg(coverages, "coverages");
  check_device(cov, kHost);
  if (cov.dtype != "float64" || cov.ndim() != 1 || !cov.dense())
    throw std::invalid_argument("coverages: a dense float64 array");
  args.coverages = cov.data<const double>();
  args.n_coverages = cov.shape[0];
  const std::vector<int64_t> n{args.n};
  args.threshold = output<void>(threshold, "threshold", n, compute_dtype(args.dtype), kHost);
  args.coverage = output<double>(coverage, "coverage", n, "float64", kHost);
  args.risk = output<double>(risk, "risk", n, "float64", kHost);
  args.accuracy = output<double>(accuracy, "accuracy", cov.shape, "float64", kHost);
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
  def_sequence_stats<false, &run_sequence_stats>(m);
  m.def("choice_confidence", &choice_confidence, py::kw_only(), py::arg("choice_logprobs"),
        py::arg("lengths") = py::none(), py::arg("labels") = py::none(),
        py::arg("probs") = py::none(), py::arg("pred") = py::none(),
        py::arg("confidence") = py::none(), py::arg("correct") = py::none(),
        "Softmax over each question's present options (NaN = absent) of the option scores\n"
        "(log-likelihoods, divided by lengths when given), into the given outputs.");
  m.def("sample_consistency", &sample_consistency, py::kw_only(), py::arg("answers"),
        py::arg("seq_logprobs") = py::none(), py::arg("mode") = py::none(),
        py::arg("agreement") = py::none(), py::arg("entropy") = py::none(),
        py::arg("entropy_consistency") = py::none(), py::arg("fsd") = py::none(),
        py::arg("n_unique") = py::none(), py::arg("semantic_entropy") = py::none(),
        "Agreement statistics of K sampled answers (int64 cluster ids, negative = invalid)\n"
        "per question, into the given outputs.");
  m.def("selective", &selective, py::kw_only(), py::arg("confidence"), py::arg("correct"),
        py::arg("coverages"), py::arg("threshold"), py::arg("coverage"), py::arg("risk"),
        py::arg("accuracy"),
        "Selective prediction: the risk-coverage curve into the outputs; returns\n"
        "(auroc, aurc, number of distinct confidences).");
}
