// The CUDA back end of logcal: launchers. Each takes device pointers and a stream, never throws,
// never synchronises, and returns a cudaError_t (cudaErrorInvalidValue for arguments the caller
// should have validated). Arguments reuse the CPU back end's structs (logcal/token_args.h,
// logcal/sequence.h), so both back ends are driven the same way.
//
// Scratch memory ("workspace") is allocated by the caller -- in Python, by the array framework
// of the inputs, on their stream -- after asking for its size with the *_workspace functions.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "logcal/core/indices.h"
#include "logcal/sequence.h"
#include "logcal/token_args.h"

namespace logcal {
namespace cuda {

// Number of usable CUDA devices; 0 (not an error) when there is no driver or no device.
int DeviceCount();

// The largest top_k one pass of token_stats keeps on chip. Larger k is served by further
// passes over the logits, each adding the next kMaxTopKPerPass entries.
constexpr int64_t kMaxTopKPerPass = 64;

// token_stats (semantics: cpu token_kernels_impl.h and API.md). `targets`, when given, are dense
// int64 [n_rows] already checked (CopyIndices); the kernels still never read outside the row for
// any target value. `sm_count`: multiprocessors of the current device.
size_t TokenStatsWorkspace(const TokenStatsArgs& args, int sm_count);
cudaError_t TokenStats(const TokenStatsArgs& args, void* d_workspace, size_t workspace_bytes,
                       int sm_count, cudaStream_t stream);

// log_softmax: a statistics pass over each row, then a write pass over the same row (the
// second read mostly from L2). Rows are split over several blocks when they are few.
size_t LogSoftmaxWorkspace(const LogSoftmaxArgs& args, int sm_count);
cudaError_t LogSoftmax(const LogSoftmaxArgs& args, void* d_workspace, size_t workspace_bytes,
                       int sm_count, cudaStream_t stream);

// Copies index values (device memory, any integer type, shape and strides) into d_dst[size] as
// int64, checked against `rule` as they are read; *d_first_bad (set here) receives the smallest
// bad position, or UINT64_MAX. The caller reads it (one synchronisation) before any kernel
// reads d_dst.
cudaError_t CopyIndices(const IntArray& values, const IndexRule& rule, int64_t* d_dst,
                        unsigned long long* d_first_bad, cudaStream_t stream);

// The same for CSR offsets [S+1]: inside [0, n_tokens], starting at 0, non-decreasing, ending
// at n_tokens. *d_first_bad is the smallest position where any rule fails; the caller judges
// which one from the copy (logcal::copy_offsets on the host), so the message is the CPU's.
cudaError_t CopyOffsets(const IntArray& offsets, int64_t n_tokens, int64_t* d_dst,
                        unsigned long long* d_first_bad, cudaStream_t stream);

// sequence_stats, bitwise equal to the CPU back end (same blocks, lanes and order of additions).
cudaError_t SequenceStats(const SequenceStatsArgs& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace logcal

namespace logcal {
namespace cuda {

// Calibration statistics on the device, into the CPU's exact state layout: count [n_bins] int64
// and sums [n_bins][calib::kNumFields][2] uint64 (lo, hi) -- ADDED to, so an accumulator passes
// its state. Unweighted, no bootstrap. Bins: uniform (edges == null) or the n_edges sorted inner
// edges (device memory). Every per-sample term is the CPU's (logcal/core/calibration.h, compiled
// without FMA contraction) and the sums are integers, so the state is bitwise the CPU's.
//
// Samples come either from arrays (confidence float32/float64, correct uint8/int32/int64/
// float32/float64, codes of python/logcal/_calibration.py), validated in the pass: the position
// of the first invalid sample goes to *first_invalid (atomicMin; caller-initialised to
// UINT64_MAX) and invalid samples are not added; or from token_stats outputs (max_logprob
// non-null): confidence = exp_det(max_logprob[i]), correct = argmax[i] == targets[i]; rows with
// NaN statistics or an ignored target are skipped.
struct CalibDeviceArgs {
  int64_t n = 0;
  const void* confidence = nullptr;
  int conf_type = 1;  // 0 float32, 1 float64
  int64_t conf_stride = 1;
  const void* correct = nullptr;
  int correct_type = 0;  // 0 uint8, 1 int32, 2 int64, 3 float32, 4 float64
  int64_t correct_stride = 1;

  const void* max_logprob = nullptr;  // [n] dense; float32 (lp_type 0) or float64 (1)
  int lp_type = 0;
  const int64_t* argmax = nullptr;   // [n] dense
  const int64_t* targets = nullptr;  // [n] dense
  int64_t ignore_index = -100;

  int64_t n_bins = 15;
  const double* edges = nullptr;  // device, [n_edges]
  int64_t n_edges = 0;
  bool right_closed = false;
  double eps = 1e-12;
  bool light = false;

  int64_t* count = nullptr;                     // device
  uint64_t* sums = nullptr;                     // device
  unsigned long long* first_invalid = nullptr;  // device, may be null for the logits source
};

// Scratch the caller provides (bytes; 0 when the per-block cells fit in shared memory).
size_t CalibrationWorkspace(const CalibDeviceArgs& args);
cudaError_t CalibrationStats(const CalibDeviceArgs& args, void* d_workspace, size_t workspace_bytes,
                             cudaStream_t stream);

// dst += src for two states of n_bins bins (exact 128-bit adds).
cudaError_t CalibrationAddState(int64_t* d_dst_count, uint64_t* d_dst_sums,
                                const int64_t* d_src_count, const uint64_t* d_src_sums,
                                int64_t n_bins, cudaStream_t stream);

}  // namespace cuda
}  // namespace logcal
