// Thin pybind11 layer over the CUDA back end: arrays arrive as raw device pointers (ints),
// shapes and strides in elements, a device ordinal and a stream handle -- python/logcal/
// _device.py extracts them from torch, cupy, DLPack or __cuda_array_interface__ arrays and
// allocates every output and workspace with the caller's framework. Each function: check ->
// select the device -> release the GIL -> launch -> raise on error. Nothing here synchronises
// except read_u64, which Python calls only where it documents a synchronisation.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "logcal_cuda.cuh"
#include "probe.cuh"

namespace py = pybind11;
using logcal::DType;

namespace {

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  if (err == cudaErrorInvalidValue)
    throw std::invalid_argument(std::string(what) + ": invalid argument");
  throw std::runtime_error(std::string(what) + ": CUDA error: " + cudaGetErrorString(err));
}

// Makes `device` current for the scope, and restores the caller's device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

template <class T>
T* ptr(uint64_t p) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(p));
}

cudaStream_t stream_of(uint64_t s) {
  return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(s));
}

template <class Rows>
Rows rows_of(uint64_t data, int dtype, const std::vector<int64_t>& shape,
             const std::vector<int64_t>& strides, const char* name) {
  if (shape.empty() || shape.size() != strides.size() ||
      shape.size() - 1 > size_t(logcal::kMaxLeadingDims))
    throw std::invalid_argument(std::string(name) + ": unsupported shape");
  if (dtype < 0 || dtype > 3) throw std::invalid_argument(std::string(name) + ": bad dtype code");
  Rows r;
  r.data = ptr<void>(data);
  r.dtype = DType(dtype);
  r.ndim = int(shape.size() - 1);
  r.vocab = shape.back();
  r.col_stride = strides.back();
  r.n_rows = 1;
  for (int d = 0; d < r.ndim; ++d) {
    r.shape[d] = shape[size_t(d)];
    r.stride[d] = strides[size_t(d)];
    r.n_rows *= shape[size_t(d)];
  }
  return r;
}

int sm_count(int device) {
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  return n;
}

logcal::TokenStatsArgs token_args(uint64_t logits, int dtype, const std::vector<int64_t>& shape,
                                  const std::vector<int64_t>& strides, uint64_t targets,
                                  int64_t ignore_index, int64_t top_k, double temperature,
                                  const std::vector<uint64_t>& outs) {
  logcal::TokenStatsArgs a;
  a.logits = rows_of<logcal::ConstRows>(logits, dtype, shape, strides, "logits");
  a.targets = ptr<const int64_t>(targets);
  a.ignore_index = ignore_index;
  a.top_k = top_k;
  a.temperature = temperature;
  if (outs.size() != 8) throw std::invalid_argument("token_stats: expected 8 output pointers");
  a.logsumexp = ptr<void>(outs[0]);
  a.max_logprob = ptr<void>(outs[1]);
  a.argmax = ptr<int64_t>(outs[2]);
  a.entropy = ptr<void>(outs[3]);
  a.target_logprob = ptr<void>(outs[4]);
  a.target_rank = ptr<int64_t>(outs[5]);
  a.topk_ids = ptr<int64_t>(outs[6]);
  a.topk_logprobs = ptr<void>(outs[7]);
  return a;
}

size_t token_stats_workspace(int device, int dtype, const std::vector<int64_t>& shape,
                             const std::vector<int64_t>& strides, int64_t top_k) {
  DeviceGuard g(device);
  const auto a =
      token_args(0, dtype, shape, strides, 0, -100, top_k, 1.0, std::vector<uint64_t>(8, 0));
  return logcal::cuda::TokenStatsWorkspace(a, sm_count(device));
}

// outs: logsumexp, max_logprob, argmax, entropy, target_logprob, target_rank, topk_ids,
// topk_logprobs (0 = not wanted), dense.
void token_stats(int device, uint64_t stream, uint64_t logits, int dtype,
                 const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                 uint64_t targets, int64_t ignore_index, int64_t top_k, double temperature,
                 const std::vector<uint64_t>& outs, uint64_t workspace, size_t workspace_bytes) {
  DeviceGuard g(device);
  const auto a =
      token_args(logits, dtype, shape, strides, targets, ignore_index, top_k, temperature, outs);
  const int sms = sm_count(device);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err =
        logcal::cuda::TokenStats(a, ptr<void>(workspace), workspace_bytes, sms, stream_of(stream));
  }
  check(err, "token_stats");
}

logcal::LogSoftmaxArgs softmax_args(uint64_t logits, int dtype, const std::vector<int64_t>& shape,
                                    const std::vector<int64_t>& strides, uint64_t out,
                                    int out_dtype, const std::vector<int64_t>& out_strides,
                                    double temperature) {
  logcal::LogSoftmaxArgs a;
  a.logits = rows_of<logcal::ConstRows>(logits, dtype, shape, strides, "logits");
  a.out = rows_of<logcal::MutableRows>(out, out_dtype, shape, out_strides, "out");
  a.temperature = temperature;
  return a;
}

size_t log_softmax_workspace(int device, int dtype, const std::vector<int64_t>& shape,
                             const std::vector<int64_t>& strides) {
  DeviceGuard g(device);
  const auto a = softmax_args(0, dtype, shape, strides, 0, dtype, strides, 1.0);
  return logcal::cuda::LogSoftmaxWorkspace(a, sm_count(device));
}

void log_softmax(int device, uint64_t stream, uint64_t logits, int dtype,
                 const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                 uint64_t out, int out_dtype, const std::vector<int64_t>& out_strides,
                 double temperature, uint64_t workspace, size_t workspace_bytes) {
  DeviceGuard g(device);
  const auto a =
      softmax_args(logits, dtype, shape, strides, out, out_dtype, out_strides, temperature);
  const int sms = sm_count(device);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err =
        logcal::cuda::LogSoftmax(a, ptr<void>(workspace), workspace_bytes, sms, stream_of(stream));
  }
  check(err, "log_softmax");
}

void first_bad_target(int device, uint64_t stream, uint64_t targets, int64_t n, int64_t vocab,
                      int64_t ignore_index, uint64_t first) {
  DeviceGuard g(device);
  check(logcal::cuda::FirstBadTarget(ptr<const int64_t>(targets), n, vocab, ignore_index,
                                     ptr<unsigned long long>(first), stream_of(stream)),
        "first_bad_target");
}

// outs: sum, mean, min, perplexity, count (dense [n_seq]). Flat layout when offsets != 0.
void sequence_stats(int device, uint64_t stream, uint64_t data, int dtype, int64_t n_seq,
                    uint64_t offsets, int64_t stride, int64_t length, int64_t row_stride,
                    int64_t col_stride, uint64_t mask, int64_t mask_row_stride,
                    int64_t mask_col_stride, const std::vector<uint64_t>& outs) {
  DeviceGuard g(device);
  if (outs.size() != 5) throw std::invalid_argument("sequence_stats: expected 5 outputs");
  if (dtype < 0 || dtype > 3) throw std::invalid_argument("sequence_stats: bad dtype code");
  logcal::SequenceStatsArgs a;
  a.data = ptr<const void>(data);
  a.dtype = DType(dtype);
  a.n_seq = n_seq;
  a.offsets = ptr<const int64_t>(offsets);
  a.stride = stride;
  a.length = length;
  a.row_stride = row_stride;
  a.col_stride = col_stride;
  a.mask = ptr<const uint8_t>(mask);
  a.mask_row_stride = mask_row_stride;
  a.mask_col_stride = mask_col_stride;
  a.sum = ptr<void>(outs[0]);
  a.mean = ptr<void>(outs[1]);
  a.min = ptr<void>(outs[2]);
  a.perplexity = ptr<void>(outs[3]);
  a.count = ptr<int64_t>(outs[4]);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = logcal::cuda::SequenceStats(a, stream_of(stream));
  }
  check(err, "sequence_stats");
}

void first_bad_offset(int device, uint64_t stream, uint64_t offsets, int64_t n_seq,
                      int64_t n_tokens, uint64_t first) {
  DeviceGuard g(device);
  check(logcal::cuda::FirstBadOffset(ptr<const int64_t>(offsets), n_seq, n_tokens,
                                     ptr<unsigned long long>(first), stream_of(stream)),
        "first_bad_offset");
}

logcal::cuda::CalibDeviceArgs calib_args(const py::dict& d) {
  logcal::cuda::CalibDeviceArgs a;
  auto get_i = [&](const char* k, int64_t dflt) {
    return d.contains(k) ? py::cast<int64_t>(d[k]) : dflt;
  };
  auto get_p = [&](const char* k) { return d.contains(k) ? py::cast<uint64_t>(d[k]) : 0; };
  a.n = get_i("n", 0);
  a.confidence = ptr<const void>(get_p("confidence"));
  a.conf_type = int(get_i("conf_type", 1));
  a.conf_stride = get_i("conf_stride", 1);
  a.correct = ptr<const void>(get_p("correct"));
  a.correct_type = int(get_i("correct_type", 0));
  a.correct_stride = get_i("correct_stride", 1);
  a.max_logprob = ptr<const void>(get_p("max_logprob"));
  a.lp_type = int(get_i("lp_type", 0));
  a.argmax = ptr<const int64_t>(get_p("argmax"));
  a.targets = ptr<const int64_t>(get_p("targets"));
  a.ignore_index = get_i("ignore_index", -100);
  a.n_bins = get_i("n_bins", 15);
  a.edges = ptr<const double>(get_p("edges"));
  a.n_edges = get_i("n_edges", 0);
  a.right_closed = d.contains("right_closed") && py::cast<bool>(d["right_closed"]);
  a.eps = d.contains("eps") ? py::cast<double>(d["eps"]) : 1e-12;
  a.light = d.contains("light") && py::cast<bool>(d["light"]);
  a.count = ptr<int64_t>(get_p("count"));
  a.sums = ptr<uint64_t>(get_p("sums"));
  a.first_invalid = ptr<unsigned long long>(get_p("first_invalid"));
  return a;
}

size_t calibration_workspace(const py::dict& d) {
  return logcal::cuda::CalibrationWorkspace(calib_args(d));
}

void calibration_stats(int device, uint64_t stream, const py::dict& d, uint64_t workspace,
                       size_t workspace_bytes) {
  DeviceGuard g(device);
  const auto a = calib_args(d);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err =
        logcal::cuda::CalibrationStats(a, ptr<void>(workspace), workspace_bytes, stream_of(stream));
  }
  check(err, "calibration_stats");
}

void calibration_add_state(int device, uint64_t stream, uint64_t dst_count, uint64_t dst_sums,
                           uint64_t src_count, uint64_t src_sums, int64_t n_bins) {
  DeviceGuard g(device);
  check(logcal::cuda::CalibrationAddState(ptr<int64_t>(dst_count), ptr<uint64_t>(dst_sums),
                                          ptr<const int64_t>(src_count),
                                          ptr<const uint64_t>(src_sums), n_bins, stream_of(stream)),
        "calibration_add_state");
}

// Reads one 64-bit word written by earlier work on `stream`: waits for that stream (only).
uint64_t read_u64(int device, uint64_t stream, uint64_t src) {
  DeviceGuard g(device);
  uint64_t value = 0;
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cudaMemcpyAsync(&value, ptr<const void>(src), sizeof value, cudaMemcpyDeviceToHost,
                          stream_of(stream));
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream_of(stream));
  }
  check(err, "read_u64");
  return value;
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
  m.attr("MAX_TOPK_PER_PASS") = logcal::cuda::kMaxTopKPerPass;
  m.def("device_count", &logcal::cuda::DeviceCount);
  m.def("sm_count", &sm_count);
  m.def("token_stats_workspace", &token_stats_workspace);
  m.def("token_stats", &token_stats);
  m.def("log_softmax_workspace", &log_softmax_workspace);
  m.def("log_softmax", &log_softmax);
  m.def("first_bad_target", &first_bad_target);
  m.def("sequence_stats", &sequence_stats);
  m.def("first_bad_offset", &first_bad_offset);
  m.def("calibration_workspace", &calibration_workspace);
  m.def("calibration_stats", &calibration_stats);
  m.def("calibration_add_state", &calibration_add_state);
  m.def("read_u64", &read_u64);
  m.def("selftest_row_logsumexp", &selftest_row_logsumexp);
}
