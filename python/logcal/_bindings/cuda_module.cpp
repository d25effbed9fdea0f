// The CUDA kernels on array views: the same keyword signatures as the CPU module (ops.h), run
// on the arrays' device and the caller's stream (ArrayView.stream). Scratch memory is taken in
// stream order (cudaMallocAsync / cudaFreeAsync on that stream), so it is never reused while a
// kernel of this call may still read it. Index values are copied and checked on the device
// (CopyIndices / CopyOffsets); the one synchronisation of such a call reads that check's
// result, so that a bad value raises here with the CPU's message. Nothing else synchronises,
// except the functions documented to (calibration_stats reads its first invalid sample).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "logcal_cuda.cuh"
#include "ops.h"

namespace py = pybind11;
using namespace logcal_bindings;

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
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

cudaStream_t stream_of(const Array& a) {
  return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(a.stream));
}

// The device of the first input, which every other argument must share.
int device_of(const py::object& first, const char* name) {
  const Array a = array_arg(first, name);
  if (a.device < 0) throw std::invalid_argument(a.name + ": must be in CUDA memory here");
  return a.device;
}

int sm_count(int device) {
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  return n;
}

// Device memory for one call, allocated and freed in the order of `stream`.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes) check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync");
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Copies `n` values of device memory to the host once the work queued on `stream` is done.
template <class T>
std::vector<T> to_host(const T* d, size_t n, cudaStream_t stream) {
  std::vector<T> h(n);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  }
  check(err, "cudaMemcpyAsync");
  return h;
}

// The private copy of index values as the host sees it, for judging a bad one with the CPU's
// rule code (so the message is the CPU's). uint64 sources keep their unsigned reading.
logcal::IntArray host_copy_view(const std::vector<int64_t>& h, const logcal::IntArray& source) {
  logcal::IntArray v;
  v.data = h.data();
  v.type =
      source.type == logcal::IntType::kUInt64 ? logcal::IntType::kUInt64 : logcal::IntType::kInt64;
  v.ndim = 1;
  v.size = int64_t(h.size());
  v.shape[0] = v.size;
  v.stride[0] = 1;
  return v;
}

constexpr unsigned long long kNoneBad = ~0ull;

// --- token_stats, log_softmax ----------------------------------------------------------------

// Copies n index values into `checked` on the device with `launch(raw, dst, first_bad)`, checked
// as they are read, and reads the check's result (one synchronisation). On a bad value the copy
// is judged on the host by `judge(host_view, scratch)`, the CPU's rule code, which raises.
template <class Launch, class Judge>
const int64_t* checked_on_device(const Array& indices, int64_t n, const Scratch& checked,
                                 cudaStream_t s, Launch launch, Judge judge, const char* what) {
  const logcal::IntArray raw = int_array(indices);
  auto* first_bad = reinterpret_cast<unsigned long long*>(checked.as<int64_t>() + n);
  check(launch(raw, checked.as<int64_t>(), first_bad), what);
  if (to_host(first_bad, 1, s)[0] != kNoneBad) {
    const auto h = to_host(checked.as<int64_t>(), size_t(n), s);
    std::vector<int64_t> scratch(h.size());
    judge(host_copy_view(h, raw), scratch.data());
    throw std::runtime_error(std::string(what) + ": the device and host checks disagree");
  }
  return checked.as<int64_t>();
}

void run_token_stats(TokenStatsCall& call) {
  if (call.args.logits.vocab >= (int64_t(1) << 31))
    throw std::invalid_argument("logits on a GPU must have V < 2**31");
  const int device = call.logits.device;
  DeviceGuard guard(device);
  const cudaStream_t s = stream_of(call.logits);
  const int64_t n_rows = call.args.logits.n_rows;
  Scratch checked(call.targets ? size_t(n_rows + 1) * sizeof(int64_t) : 0, s);
  if (call.targets)
    call.args.targets = checked_on_device(
        *call.targets, n_rows, checked, s,
        [&](const logcal::IntArray& raw, int64_t* dst, unsigned long long* first_bad) {
          return logcal::cuda::CopyIndices(raw, call.target_rule, dst, first_bad, s);
        },
        [&](const logcal::IntArray& host, int64_t* dst) {
          logcal::IndexError bad;
          if (logcal::copy_indices(host, call.target_rule, dst, &bad) == logcal::Status::kBadIndex)
            raise_bad_target(*call.targets, bad, call.args.logits.vocab, call.args.ignore_index);
        },
        "token_stats");
  const int sms = sm_count(device);
  const size_t bytes = logcal::cuda::TokenStatsWorkspace(call.args, sms);
  Scratch workspace(bytes, s);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = logcal::cuda::TokenStats(call.args, workspace.as<void>(), bytes, sms, s);
  }
  check(err, "token_stats");
}

void log_softmax(const py::object& logits, const py::object& out, double temperature,
                 bool out_is_new) {
  const int device = device_of(logits, "logits");
  const auto args = log_softmax_args(logits, out, temperature, out_is_new, true);
  if (args.logits.vocab >= (int64_t(1) << 31))
    throw std::invalid_argument("logits on a GPU must have V < 2**31");
  DeviceGuard guard(device);
  const cudaStream_t s = stream_of(array_arg(logits, "logits"));
  const int sms = sm_count(device);
  const size_t bytes = logcal::cuda::LogSoftmaxWorkspace(args, sms);
  Scratch workspace(bytes, s);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = logcal::cuda::LogSoftmax(args, workspace.as<void>(), bytes, sms, s);
  }
  check(err, "log_softmax");
}

// --- sequence_stats --------------------------------------------------------------------------

void run_sequence_stats(SequenceStatsCall& call) {
  DeviceGuard guard(call.data.device);
  const cudaStream_t s = stream_of(call.data);
  const int64_t n_off = call.offsets ? call.args.n_seq + 1 : 0;
  Scratch checked(call.offsets ? size_t(n_off + 1) * sizeof(int64_t) : 0, s);
  if (call.offsets)
    call.args.offsets = checked_on_device(
        *call.offsets, n_off, checked, s,
        [&](const logcal::IntArray& raw, int64_t* dst, unsigned long long* first_bad) {
          return logcal::cuda::CopyOffsets(raw, call.n_tokens, dst, first_bad, s);
        },
        [&](const logcal::IntArray& host, int64_t* dst) {
          logcal::IndexError bad;
          if (logcal::copy_offsets(host, call.n_tokens, dst, &bad) == logcal::Status::kBadIndex)
            raise_bad_offsets(bad, call.n_tokens);
        },
        "sequence_stats");
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = logcal::cuda::SequenceStats(call.args, s);
  }
  check(err, "sequence_stats");
}

// --- calibration -----------------------------------------------------------------------------

// The state arrays of a device accumulator: count [n_bins] int64, sums [n_bins, 7, 2] (uint64
// words, held as int64 by frameworks without uint64), on `device`.
void state_arrays(const py::object& count, const py::object& sums, int64_t n_bins, int device,
                  logcal::cuda::CalibDeviceArgs& a) {
  a.n_bins = n_bins;
  const Array c = array_arg(count, "count");
  const Array w = array_arg(sums, "sums");
  check_output(c, {n_bins}, "int64", device);
  check_output(w, {n_bins, logcal::calib::kNumFields, 2}, w.dtype == "uint64" ? "uint64" : "int64",
               device);
  a.count = c.data<int64_t>();
  a.sums = w.data<uint64_t>();
}

// Adds (confidence, correct) pairs into the state -- only if every sample is valid: they are
// binned into private cells first, and the first invalid position is read back (one
// synchronisation). Returns that position, or -1 (then the state has the samples).
int64_t calibration_stats(const py::object& confidence, const py::object& correct, int64_t n_bins,
                          const py::object& edges, double eps, bool light, const py::object& count,
                          const py::object& sums) {
  const int device = device_of(confidence, "confidence");
  const Samples in = samples_arg(confidence, correct, "correct", device);
  if (n_bins < 1) throw std::invalid_argument("n_bins must be >= 1");
  logcal::cuda::CalibDeviceArgs a;
  a.n = in.n;
  a.confidence = in.confidence.data<const void>();
  a.conf_type = int(in.conf_type);
  a.conf_stride = in.confidence.strides[0];
  a.correct = in.correct.data<const void>();
  a.correct_type = int(in.correct_type);
  a.correct_stride = in.correct.strides[0];
  a.eps = eps;
  a.light = light;
  logcal::cuda::CalibDeviceArgs target = a;
  state_arrays(count, sums, n_bins, device, target);
  const InnerEdges e = inner_edges_arg(edges, n_bins, device);
  a.edges = e.data;
  a.n_edges = e.n;
  a.n_bins = n_bins;
  if (a.n == 0) return -1;
  DeviceGuard guard(device);
  const cudaStream_t s = stream_of(in.confidence);
  constexpr int64_t kWords = 1 + logcal::calib::kNumFields * 2;  // count + sums of a bin
  Scratch cells(size_t(n_bins * kWords + 1) * sizeof(int64_t), s);
  a.count = cells.as<int64_t>();
  a.sums = reinterpret_cast<uint64_t*>(cells.as<int64_t>() + n_bins);
  a.first_invalid = reinterpret_cast<unsigned long long*>(cells.as<int64_t>() + n_bins * kWords);
  check(cudaMemsetAsync(cells.as<void>(), 0, size_t(n_bins * kWords) * sizeof(int64_t), s),
        "cudaMemsetAsync");
  check(cudaMemsetAsync(a.first_invalid, 0xff, sizeof(int64_t), s), "cudaMemsetAsync");
  const size_t bytes = logcal::cuda::CalibrationWorkspace(a);
  Scratch workspace(bytes, s);
  check(logcal::cuda::CalibrationStats(a, workspace.as<void>(), bytes, s), "calibration_stats");
  const unsigned long long first = to_host(a.first_invalid, 1, s)[0];
  if (first != kNoneBad) return int64_t(first);
  check(logcal::cuda::CalibrationAddState(target.count, target.sums, a.count, a.sums, n_bins, s),
        "calibration_stats");
  return -1;
}

// Adds the top-1 (confidence, correct) pairs of token statistics into the state:
// confidence = exp(max_logprob), correct = (argmax == targets); rows with NaN statistics or an
// ignored target are skipped. targets are compared, never used as addresses. No
// synchronisation.
void calibration_from_logits(const py::object& max_logprob, const py::object& argmax,
                             const py::object& targets, int64_t ignore_index, int64_t n_bins,
                             const py::object& edges, double eps, const py::object& count,
                             const py::object& sums) {
  const int device = device_of(max_logprob, "max_logprob");
  const Array lp = array_arg(max_logprob, "max_logprob");
  if (lp.ndim() != 1 || !lp.dense()) throw std::invalid_argument("max_logprob: dense 1-D");
  const std::vector<int64_t> n{lp.shape[0]};
  logcal::cuda::CalibDeviceArgs a;
  a.n = lp.shape[0];
  a.max_logprob = lp.data<const void>();
  a.lp_type = lp.dtype == "float64" ? 1 : 0;
  if (lp.dtype != "float32" && lp.dtype != "float64")
    throw py::type_error("max_logprob: expected float32 or float64");
  a.argmax = output<int64_t>(argmax, "argmax", n, "int64", device);
  a.targets = output<int64_t>(targets, "targets", n, "int64", device);
  if (!a.argmax || !a.targets) throw std::invalid_argument("argmax and targets are required");
  a.ignore_index = ignore_index;
  a.eps = eps;
  state_arrays(count, sums, n_bins, device, a);
  const InnerEdges e = inner_edges_arg(edges, n_bins, device);
  a.edges = e.data;
  a.n_edges = e.n;
  if (a.n == 0) return;
  DeviceGuard guard(device);
  const cudaStream_t s = stream_of(lp);
  const size_t bytes = logcal::cuda::CalibrationWorkspace(a);
  Scratch workspace(bytes, s);
  check(logcal::cuda::CalibrationStats(a, workspace.as<void>(), bytes, s),
        "calibration_from_logits");
}

// Waits for the work queued on `stream` of `device` (the accumulator's state is read, or
// written from another stream, only after this).
void synchronize(int device, uint64_t stream) {
  DeviceGuard guard(device);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(stream)));
  }
  check(err, "synchronize");
}

}  // namespace

PYBIND11_MODULE(_core_cuda, m) {
  m.doc() = "logcal CUDA kernels (internal: use the functions of the logcal package)";
  m.attr("MAX_TOPK_PER_PASS") = logcal::cuda::kMaxTopKPerPass;
  m.def("device_count", &logcal::cuda::DeviceCount,
        "Number of usable CUDA devices (0 without a driver or device).");
  m.def("sm_count", &sm_count, py::arg("device"), "Multiprocessors of a device.");
  def_token_stats<true, &run_token_stats>(m);
  def_log_softmax(m, &log_softmax);
  def_sequence_stats<true, &run_sequence_stats>(m);
  m.def("calibration_stats", &calibration_stats, py::kw_only(), py::arg("confidence"),
        py::arg("correct"), py::arg("n_bins"), py::arg("edges") = py::none(), py::arg("eps"),
        py::arg("light") = false, py::arg("count"), py::arg("sums"),
        "Adds (confidence, correct) pairs into a device state (count [n_bins], sums\n"
        "[n_bins, 7, 2]) if every sample is valid; returns the first invalid position or -1\n"
        "(synchronises once).");
  m.def("calibration_from_logits", &calibration_from_logits, py::kw_only(), py::arg("max_logprob"),
        py::arg("argmax"), py::arg("targets"), py::arg("ignore_index"), py::arg("n_bins"),
        py::arg("edges") = py::none(), py::arg("eps"), py::arg("count"), py::arg("sums"),
        "Adds the top-1 pairs of token statistics into a device state (no synchronisation).");
  m.def("synchronize", &synchronize, py::arg("device"), py::arg("stream"),
        "Waits for the work queued on a stream.");
}
