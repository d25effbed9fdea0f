// Thin pybind11 layer over the CUDA back end. For now: the device probe and a self-test that
// runs the shared numerical core on the GPU from host memory (no torch or cupy needed).
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "probe.cuh"

namespace py = pybind11;

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Copies a dense float32 [n, V] array to the device, runs RowLogSumExp, copies the result back.
py::array_t<float> selftest_row_logsumexp(py::array_t<float, py::array::c_style> logits) {
  if (logits.ndim() != 2) throw std::invalid_argument("logits must be 2-D");
  const int64_t n = logits.shape(0), v = logits.shape(1);
  py::array_t<float> out(n);
  {
    py::gil_scoped_release release;
    float *d_in = nullptr, *d_out = nullptr;
    cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&d_in), sizeof(float) * size_t(n * v));
    if (err == cudaSuccess)
      err = cudaMalloc(reinterpret_cast<void**>(&d_out), sizeof(float) * size_t(n));
    if (err == cudaSuccess)
      err = cudaMemcpy(d_in, logits.data(), sizeof(float) * size_t(n * v), cudaMemcpyHostToDevice);
    if (err == cudaSuccess) err = logcal::cuda::RowLogSumExp(d_in, n, v, d_out, nullptr);
    if (err == cudaSuccess)
      err =
          cudaMemcpy(out.mutable_data(), d_out, sizeof(float) * size_t(n), cudaMemcpyDeviceToHost);
    cudaFree(d_in);
    cudaFree(d_out);
    check(err, "selftest_row_logsumexp");
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core_cuda, m) {
  m.doc() = "logcal CUDA kernels (internal: use the functions of the logcal package)";
  m.def("device_count", &logcal::cuda::DeviceCount);
  m.def("selftest_row_logsumexp", &selftest_row_logsumexp);
}
