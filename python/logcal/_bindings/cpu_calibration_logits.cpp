// Confidences of token positions for CalibrationAccumulator.update_from_logits on the CPU:
// exp_det(max_logprob), the same bits as the CUDA kernel computes
// (logcal/core/calibration_logits.h). This file is compiled with -ffp-contract=off.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "logcal/core/calibration_logits.h"

namespace py = pybind11;

namespace {

template <class T>
py::array_t<double> confidence_of(py::array_t<T, py::array::c_style> lp) {
  py::array_t<double> out(lp.size());
  const T* src = lp.data();
  double* dst = out.mutable_data();
  const py::ssize_t n = lp.size();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i)
      dst[i] = logcal::calib::confidence_from_max_logprob(double(src[i]));
  }
  return out;
}

}  // namespace

void bind_calibration_logits(py::module_& m) {
  m.def("calib_confidence_from_max_logprob", &confidence_of<float>, py::arg("max_logprob"),
        "exp(max_logprob) with the same bits as the CUDA binning kernel computes.");
  m.def("calib_confidence_from_max_logprob", &confidence_of<double>, py::arg("max_logprob"));
  m.def(
      "calib_exp_det", [](double x) { return logcal::calib::exp_det(x); }, py::arg("x"),
      "The deterministic exponential of the calibration terms.");
}
