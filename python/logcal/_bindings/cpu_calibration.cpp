// The CPU calibration kernels on array views. User-facing validation (messages that name the
// argument and position) is in python/logcal/calibration/; the checks here guard what the
// kernels rely on, so that no call can make them leave an array.
#include "logcal/cpu_calibration.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

constexpr int kHost = -1;

// A 1-D host input of n elements (any stride).
Array host_vector(const py::object& v, const char* name, int64_t n) {
  Array a = array_arg(v, name);
  check_device(a, kHost);
  if (a.ndim() != 1 || a.shape[0] != n)
    throw std::invalid_argument(a.name + ": expected a 1-D array of " + std::to_string(n));
  return a;
}

// Adds the statistics of (confidence, correct[, weights]) to the state arrays; returns the
// position of the first invalid sample, or -1 (the state is then unspecified).
int64_t calibration_stats(const py::object& confidence, const py::object& correct,
                          const py::object& weights, int64_t n_bins, const py::object& edges,
                          bool right_closed, double edges_scale, double eps, bool light,
                          int64_t n_bootstrap, uint64_t seed, int64_t block, int64_t offset,
                          const py::object& count, const py::object& sums,
                          const py::object& boot_bins, const py::object& boot_totals) {
  namespace calib = logcal::calib;
  logcal::cpu::CalibrationArgs args;
  const Samples in = samples_arg(confidence, correct, "correct", kHost);
  args.n = in.n;
  args.confidence = in.confidence.data<const void>();
  args.conf_type = in.conf_type;
  args.conf_stride = in.confidence.strides[0];
  args.correct = in.correct.data<const void>();
  args.correct_type = in.correct_type;
  args.correct_stride = in.correct.strides[0];
  if (!weights.is_none()) {
    const Array w = host_vector(weights, "weights", args.n);
    if (w.dtype != "float64") throw py::type_error("weights: expected float64");
    args.weights = w.data<const double>();
    args.weight_stride = w.strides[0];
  }
  if (n_bins < 1 || block < 1 || n_bootstrap < 0 || offset < 0)
    throw std::invalid_argument("calibration_stats: n_bins, block >= 1; n_bootstrap, offset >= 0");
  args.n_bins = n_bins;
  const InnerEdges e = inner_edges_arg(edges, n_bins, kHost);
  args.edges = e.data;
  args.n_edges = e.n;
  args.right_closed = right_closed;
  args.edges_scale = edges_scale;
  args.eps = eps;
  args.light = light;
  args.n_bootstrap = n_bootstrap;
  args.seed = seed;
  args.block = block;
  args.offset = offset;
  args.count = output<int64_t>(count, "count", {n_bins}, "int64", kHost);
  args.sums = output<uint64_t>(sums, "sums", {n_bins, calib::kNumFields, 2}, "uint64", kHost);
  if (!args.count || !args.sums) throw std::invalid_argument("count and sums are required");
  if (n_bootstrap > 0) {
    args.boot_bins =
        output<uint64_t>(boot_bins, "boot_bins", {n_bootstrap, n_bins, calib::kNumBootBinFields, 2},
                         "uint64", kHost);
    args.boot_totals = output<uint64_t>(
        boot_totals, "boot_totals", {n_bootstrap, calib::kNumBootTotalFields, 2}, "uint64", kHost);
    if (!args.boot_bins || !args.boot_totals)
      throw std::invalid_argument("boot_bins and boot_totals are required with n_bootstrap");
  }
  int64_t first_invalid = -1;
  args.first_invalid = &first_invalid;
  run_without_gil(logcal::cpu::calibration_stats, args, "calibration_stats");
  return first_invalid;
}

// Sequential per-bin sums in the confidence's type (torchmetrics' order); returns the first
// invalid position or -1.
int64_t binned_sums_sequential(const py::object& confidence, const py::object& accuracy,
                               const py::object& edges, double edges_scale, bool check_accuracy,
                               const py::object& count, const py::object& conf_sum,
                               const py::object& acc_sum) {
  logcal::cpu::SequentialSumsArgs args;
  const Samples in = samples_arg(confidence, accuracy, "accuracy", kHost);
  const Array& c = in.confidence;
  args.n = in.n;
  args.confidence = c.data<const void>();
  args.conf_type = in.conf_type;
  args.conf_stride = c.strides[0];
  args.accuracy = in.correct.data<const void>();
  args.accuracy_type = in.correct_type;
  args.accuracy_stride = in.correct.strides[0];
  const Array e = array_arg(edges, "edges");
  check_device(e, kHost);
  if (e.dtype != c.dtype || e.ndim() != 1 || !e.dense())
    throw std::invalid_argument("edges: expected dense inner edges of the confidence's dtype");
  args.edges = e.data<const void>();
  args.n_edges = e.shape[0];
  args.edges_scale = edges_scale;
  args.check_accuracy = check_accuracy;
  const std::vector<int64_t> bins{args.n_edges + 1};
  const char* t = c.dtype.c_str();
  args.count = output<void>(count, "count", bins, t, kHost);
  args.conf_sum = output<void>(conf_sum, "conf_sum", bins, t, kHost);
  args.acc_sum = output<void>(acc_sum, "acc_sum", bins, t, kHost);
  if (!args.count || !args.conf_sum || !args.acc_sum)
    throw std::invalid_argument("count, conf_sum and acc_sum are required");
  int64_t first_invalid = -1;
  args.first_invalid = &first_invalid;
  run_without_gil(logcal::cpu::binned_sums_sequential, args, "binned_sums_sequential");
  return first_invalid;
}

// Top-label pairs of the rows of a 2-D (n, k) probability array with any strides, into the
// dense outputs; returns (first invalid probability as row * k + class, first invalid label
// row), -1 where none. Labels are compared, never used as addresses.
py::tuple top_label(const py::object& probs, const py::object& labels, const py::object& confidence,
                    const py::object& correct) {
  logcal::cpu::TopLabelArgs args;
  const Array p = array_arg(probs, "probs");
  check_device(p, kHost);
  if (p.ndim() != 2) throw std::invalid_argument("probs: expected a 2-D array");
  args.n = p.shape[0];
  args.k = p.shape[1];
  args.probs = p.data<const void>();
  args.probs_type = conf_type(p);
  args.row_stride = p.strides[0];
  args.class_stride = p.strides[1];
  const Array lab = host_vector(labels, "labels", args.n);
  if (lab.dtype != "int64") throw py::type_error("labels: expected int64");
  args.labels = lab.data<const int64_t>();
  args.label_stride = lab.strides[0];
  const std::vector<int64_t> n{args.n};
  args.confidence = output<void>(confidence, "confidence", n, p.dtype.c_str(), kHost);
  args.correct = output<uint8_t>(correct, "correct", n, "bool", kHost);
  if (!args.confidence || !args.correct)
    throw std::invalid_argument("confidence and correct are required");
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
  m.def("calibration_stats", &calibration_stats, py::kw_only(), py::arg("confidence"),
        py::arg("correct"), py::arg("weights") = py::none(), py::arg("n_bins"),
        py::arg("edges") = py::none(), py::arg("right_closed") = false,
        py::arg("edges_scale") = 0.0, py::arg("eps"), py::arg("light") = false,
        py::arg("n_bootstrap") = 0, py::arg("seed") = 0, py::arg("block") = 1,
        py::arg("offset") = 0, py::arg("count"), py::arg("sums"), py::arg("boot_bins") = py::none(),
        py::arg("boot_totals") = py::none(),
        "Adds the exact binned sums of (confidence, correct[, weights]) into count [n_bins]\n"
        "and sums [n_bins, 7, 2] (and the bootstrap replicates); returns the first invalid\n"
        "sample's position, or -1.");
  m.def("binned_sums_sequential", &binned_sums_sequential, py::kw_only(), py::arg("confidence"),
        py::arg("accuracy"), py::arg("edges"), py::arg("edges_scale"), py::arg("check_accuracy"),
        py::arg("count"), py::arg("conf_sum"), py::arg("acc_sum"),
        "Per-bin count and sums in the confidence's float type, added in sample order\n"
        "(torchmetrics' convention); returns the first invalid position, or -1.");
  m.def("top_label", &top_label, py::kw_only(), py::arg("probs"), py::arg("labels"),
        py::arg("confidence"), py::arg("correct"),
        "Top-label (confidence, correct) of each row of probs [N, K]; returns (first bad\n"
        "probability as row * K + class, first bad label row), -1 where none.");
  m.def("calib_uniform_bin", &uniform_bin, py::arg("c"), py::arg("n_bins"),
        "The exact uniform bin of confidence c (floor(c * n_bins), n_bins - 1 for c = 1).");
  m.def("calib_log_det", &log_det, py::arg("x"), "The deterministic log of the NLL terms.");
  m.def("calib_to_fixed", &to_fixed, py::arg("value"),
        "floor(value * 2**64) as (lo, hi) 64-bit words.");
  m.def("calib_bootstrap_weight", &bootstrap_weight, py::arg("seed"), py::arg("unit"),
        py::arg("replicate"), "The Poisson(1) weight of a bootstrap unit in a replicate.");
}
