// Thin pybind11 layer over the CPU calibration kernel: unpack 1-D strided arrays, release the
// GIL, call, and turn a status into an exception. User-facing validation (with messages that
// name the argument and position) is in python/logcal/_calibration.py; the checks here only
// guard the kernel's preconditions.
#include "logcal/cpu_calibration.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

int64_t stride_of(const py::array& a, const char* name) {
  if (a.ndim() != 1) throw std::invalid_argument(std::string(name) + ": expected a 1-D array");
  if (a.strides(0) % a.itemsize() != 0)
    throw std::invalid_argument(std::string(name) +
                                ": stride is not a multiple of the element size");
  return a.strides(0) / a.itemsize();
}

template <class T>
T* dense_out(const py::object& o, py::ssize_t size, const char* name) {
  auto a = py::cast<py::array_t<T, py::array::c_style>>(o);
  if (a.size() != size) throw std::invalid_argument(std::string(name) + ": wrong size");
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + ": not writeable");
  return a.mutable_data();
}

// Adds the statistics of (confidence, correct[, weights]) to the state arrays; returns the
// position of the first invalid sample, or -1.
int64_t calibration_stats(const py::array& confidence, int conf_type, const py::array& correct,
                          int correct_type, const py::object& weights, int64_t n_bins,
                          const py::object& edges, bool right_closed, double edges_scale,
                          double eps, bool light, int64_t n_bootstrap, uint64_t seed, int64_t block,
                          int64_t offset, const py::object& count, const py::object& sums,
                          const py::object& boot_bins, const py::object& boot_totals) {
  namespace calib = logcal::calib;
  logcal::cpu::CalibrationArgs args;
  args.n = confidence.shape(0);
  args.confidence = confidence.data();
  args.conf_type = logcal::cpu::ConfType(conf_type);
  if (confidence.itemsize() != (conf_type == 0 ? 4 : 8))
    throw std::invalid_argument("confidence: element size does not match its type");
  args.conf_stride = stride_of(confidence, "confidence");
  if (correct.shape(0) != args.n) throw std::invalid_argument("correct: wrong length");
  static const int kCorrectSize[] = {1, 4, 8, 4, 8};
  if (correct_type < 0 || correct_type > 4 || correct.itemsize() != kCorrectSize[correct_type])
    throw std::invalid_argument("correct: element size does not match its type");
  args.correct = correct.data();
  args.correct_type = logcal::cpu::CorrectType(correct_type);
  args.correct_stride = stride_of(correct, "correct");
  py::array_t<double> w;
  if (!weights.is_none()) {
    w = py::cast<py::array_t<double>>(weights);
    if (w.ndim() != 1 || w.shape(0) != args.n) throw std::invalid_argument("weights: wrong length");
    args.weights = w.data();
    args.weight_stride = stride_of(w, "weights");
  }
  args.n_bins = n_bins;
  py::array_t<double, py::array::c_style> e;
  if (!edges.is_none()) {
    e = py::cast<py::array_t<double, py::array::c_style>>(edges);
    args.edges = e.data();
    args.n_edges = e.size();
  }
  args.right_closed = right_closed;
  args.edges_scale = edges_scale;
  args.eps = eps;
  args.light = light;
  args.n_bootstrap = n_bootstrap;
  args.seed = seed;
  args.block = block;
  args.offset = offset;
  args.count = dense_out<int64_t>(count, n_bins, "count");
  args.sums = dense_out<uint64_t>(sums, n_bins * calib::kNumFields * 2, "sums");
  if (n_bootstrap > 0) {
    args.boot_bins = dense_out<uint64_t>(
        boot_bins, n_bootstrap * n_bins * calib::kNumBootBinFields * 2, "boot_bins");
    args.boot_totals = dense_out<uint64_t>(
        boot_totals, n_bootstrap * calib::kNumBootTotalFields * 2, "boot_totals");
  }
  int64_t first_invalid = -1;
  args.first_invalid = &first_invalid;
  run_without_gil(logcal::cpu::calibration_stats, args, "calibration_stats");
  return first_invalid;
}

// Sequential per-bin sums in the confidence's type (torchmetrics' order); returns the first
// invalid position or -1.
int64_t binned_sums_sequential(const py::array& confidence, int conf_type,
                               const py::array& accuracy, int acc_type, const py::array& edges,
                               double edges_scale, bool check_accuracy, const py::array& count,
                               const py::array& conf_sum, const py::array& acc_sum) {
  logcal::cpu::SequentialSumsArgs args;
  const py::ssize_t item = conf_type == 0 ? 4 : 8;
  static const int kAccSize[] = {1, 4, 8, 4, 8};
  if (confidence.itemsize() != item || edges.itemsize() != item || count.itemsize() != item ||
      conf_sum.itemsize() != item || acc_sum.itemsize() != item)
    throw std::invalid_argument("binned_sums_sequential: element sizes do not match the type");
  if (acc_type < 0 || acc_type > 4 || accuracy.itemsize() != kAccSize[acc_type])
    throw std::invalid_argument("accuracy: element size does not match its type");
  args.n = confidence.shape(0);
  if (accuracy.shape(0) != args.n) throw std::invalid_argument("accuracy: wrong length");
  args.confidence = confidence.data();
  args.conf_type = logcal::cpu::ConfType(conf_type);
  args.conf_stride = stride_of(confidence, "confidence");
  args.accuracy = accuracy.data();
  args.accuracy_type = logcal::cpu::CorrectType(acc_type);
  args.accuracy_stride = stride_of(accuracy, "accuracy");
  if (!(edges.flags() & py::array::c_style)) throw std::invalid_argument("edges: not contiguous");
  args.edges = edges.data();
  args.n_edges = edges.size();
  args.edges_scale = edges_scale;
  args.check_accuracy = check_accuracy;
  for (const py::array* o : {&count, &conf_sum, &acc_sum})
    if (o->size() != args.n_edges + 1 || !(o->flags() & py::array::c_style) || !o->writeable())
      throw std::invalid_argument(
          "binned_sums_sequential: outputs must be writeable, dense, n_edges + 1 long");
  args.count = const_cast<void*>(count.data());
  args.conf_sum = const_cast<void*>(conf_sum.data());
  args.acc_sum = const_cast<void*>(acc_sum.data());
  int64_t first_invalid = -1;
  args.first_invalid = &first_invalid;
  run_without_gil(logcal::cpu::binned_sums_sequential, args, "binned_sums_sequential");
  return first_invalid;
}

// Top-label pairs of the rows of a 2-D (n, k) probability array with any strides, into the
// dense outputs; returns (first invalid probability as row * k + class, first invalid label
// row), -1 where none.
py::tuple top_label(const py::array& probs, int probs_type, const py::array& labels,
                    const py::array& confidence, const py::array& correct) {
  logcal::cpu::TopLabelArgs args;
  if (probs.ndim() != 2) throw std::invalid_argument("probs: expected a 2-D array");
  const py::ssize_t item = probs_type == 0 ? 4 : 8;
  if (probs.itemsize() != item || confidence.itemsize() != item)
    throw std::invalid_argument("top_label: element sizes do not match the type");
  if (probs.strides(0) % item != 0 || probs.strides(1) % item != 0)
    throw std::invalid_argument("probs: strides are not multiples of the element size");
  args.n = probs.shape(0);
  args.k = probs.shape(1);
  args.probs = probs.data();
  args.probs_type = logcal::cpu::ConfType(probs_type);
  args.row_stride = probs.strides(0) / item;
  args.class_stride = probs.strides(1) / item;
  if (labels.itemsize() != 8 || labels.shape(0) != args.n)
    throw std::invalid_argument("labels: expected n int64 values");
  args.labels = static_cast<const int64_t*>(labels.data());
  args.label_stride = stride_of(labels, "labels");
  for (const py::array* o : {&confidence, &correct})
    if (o->ndim() != 1 || o->shape(0) != args.n || !(o->flags() & py::array::c_style) ||
        !o->writeable())
      throw std::invalid_argument("top_label: outputs must be writeable, dense, n long");
  if (correct.itemsize() != 1) throw std::invalid_argument("correct: expected bytes");
  args.confidence = const_cast<void*>(confidence.data());
  args.correct = static_cast<uint8_t*>(const_cast<void*>(correct.data()));
  int64_t bad_prob = -1, bad_label = -1;
  args.first_bad_prob = &bad_prob;
  args.first_bad_label = &bad_label;
  run_without_gil(logcal::cpu::top_label, args, "top_label");
  return py::make_tuple(bad_prob, bad_label);
}

// The scalar core, exposed for tests: the exact bin index, the deterministic log, the fixed-point
// value and the bootstrap weight must agree with their Python references value for value.
int64_t uniform_bin(double c, int64_t n) { return logcal::calib::uniform_bin(c, n); }
double log_det(double x) { return logcal::calib::log_det(x); }
py::tuple to_fixed(double v) {
  const auto t = logcal::calib::to_fixed(v);
  return py::make_tuple(t.lo, t.hi);
}
uint32_t bootstrap_weight(uint64_t seed, uint64_t unit, uint64_t replicate) {
  return logcal::calib::bootstrap_weight(logcal::calib::bootstrap_unit_key(seed, unit), replicate);
}

}  // namespace

void bind_calibration(py::module_& m) {
  m.def("calibration_stats", &calibration_stats);
  m.def("binned_sums_sequential", &binned_sums_sequential);
  m.def("top_label", &top_label);
  m.def("calib_uniform_bin", &uniform_bin);
  m.def("calib_log_det", &log_det);
  m.def("calib_to_fixed", &to_fixed);
  m.def("calib_bootstrap_weight", &bootstrap_weight);
}
