// The CPU kernels of the confidence recalibration maps on array views. User-facing validation
// is in python/logcal/recalibration/; the checks here guard what the kernels rely on, so that
// no call can make them leave an array.
#include "logcal/cpu_recalibration.h"

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"

namespace py = pybind11;
using namespace logcal_bindings;

namespace {

constexpr int kHost = -1;

// A dense 1-D host input of `dtype` (n < 0: any length).
Array dense_vector(const py::object& v, const char* name, const char* dtype, int64_t n) {
  Array a = array_arg(v, name);
  check_device(a, kHost);
  if (a.dtype != dtype) throw py::type_error(a.name + ": must have dtype " + dtype);
  if (a.ndim() != 1 || !a.dense() || (n >= 0 && a.shape[0] != n))
    throw std::invalid_argument(a.name + ": expected a dense 1-D array" +
                                (n >= 0 ? " of " + std::to_string(n) : std::string()));
  return a;
}

// Fits into x, y ([N] float64); returns how many points were kept.
int64_t isotonic_fit(const py::object& confidence, const py::object& correct, const py::object& x,
                     const py::object& y) {
  const Array c = dense_vector(confidence, "confidence", "float64", -1);
  logcal::IsotonicArgs args;
  args.n = c.shape[0];
  if (args.n < 1) throw std::invalid_argument("confidence: must not be empty");
  args.confidence = c.data<const double>();
  args.correct = dense_vector(correct, "correct", "uint8", args.n).data<const uint8_t>();
  args.x = dense_vector(x, "x", "float64", args.n).data<double>();
  args.y = dense_vector(y, "y", "float64", args.n).data<double>();
  int64_t kept = 0;
  args.n_kept = &kept;
  run_without_gil(logcal::cpu::isotonic_fit, args, "isotonic_fit");
  return kept;
}

py::tuple platt_sums(const py::object& confidence, const py::object& correct, double a, double b,
                     int64_t stride) {
  Array c = array_arg(confidence, "confidence");
  check_device(c, kHost);
  if (c.dtype != "float32" && c.dtype != "float64")
    throw py::type_error("confidence: must have dtype float32 or float64");
  if (c.ndim() != 1 || !c.dense())
    throw std::invalid_argument("confidence: expected a dense 1-D array");
  const int64_t length = c.shape[0];
  if (length < 1) throw std::invalid_argument("confidence: must not be empty");
  if (stride < 1) throw std::invalid_argument("stride: must be >= 1");
  logcal::PlattArgs args;
  args.confidence = c.data<const void>();
  args.conf_dtype = c.dtype == "float32" ? logcal::DType::kFloat32 : logcal::DType::kFloat64;
  args.correct = dense_vector(correct, "correct", "uint8", length).data<const uint8_t>();
  args.n = (length + stride - 1) / stride;
  args.stride = stride;
  args.a = a;
  args.b = b;
  double sums[6];
  args.sums = sums;
  run_without_gil(logcal::cpu::platt_sums, args, "platt_sums");
  return py::make_tuple(
      sums[0], py::make_tuple(sums[1], sums[2]),
      py::make_tuple(py::make_tuple(sums[3], sums[4]), py::make_tuple(sums[4], sums[5])));
}

}  // namespace

void bind_recalibration(py::module_& m) {
  m.def("isotonic_fit", &isotonic_fit, py::kw_only(), py::arg("confidence"), py::arg("correct"),
        py::arg("x"), py::arg("y"),
        "Isotonic regression of 0/1 correct (uint8) on confidence (float64 in [0, 1]): the\n"
        "ends of each constant stretch into x, y; returns how many.");
  m.def("platt_sums", &platt_sums, py::kw_only(), py::arg("confidence"), py::arg("correct"),
        py::arg("a"), py::arg("b"), py::arg("stride") = 1,
        "The logistic loss of sigmoid(a z + b), z the logit of confidence (float32 or float64,\n"
        "clipped to [1e-12, 1 - 1e-12]), against 0/1 correct (uint8), its gradient and Hessian\n"
        "in (a, b): (loss, (ga, gb), ((haa, hab), (hab, hbb))). stride > 1: over the samples\n"
        "0, stride, 2 stride, ... only.");
}
