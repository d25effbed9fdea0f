#include "logcal/softmax_state.h"
#include "probe.cuh"

namespace logcal {
namespace cuda {
namespace {

constexpr int kWarp = 32;

// One warp per row: each lane folds its strided elements into a SoftmaxState, then the lanes'
// states merge with shuffles, exactly as the CPU merges row segments.
__global__ void RowLogSumExpKernel(const float* __restrict__ d_logits, int64_t n_rows,
                                   int64_t vocab, float* __restrict__ d_out) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n_rows) return;
  const float* x = d_logits + row * vocab;
  SoftmaxState st;
  for (int64_t j = lane; j < vocab; j += kWarp) {
    const double v = x[j];
    if (v != v) {
      st.n_nan += 1;
    } else if (v > st.ref) {
      st.rebase(v, kLog2e);
    }
    if (st.ref > -INFINITY) {
      const double t = (v - st.ref) * kLog2e;
      st.add(exp2(t), 0.0);
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    SoftmaxState other;
    other.ref = __shfl_down_sync(0xffffffffu, st.ref, offset);
    other.sum = __shfl_down_sync(0xffffffffu, st.sum, offset);
    other.tsum = __shfl_down_sync(0xffffffffu, st.tsum, offset);
    other.n_nan = __shfl_down_sync(0xffffffffu, st.n_nan, offset);
    st.merge(other, kLog2e);
  }
  if (lane == 0) {
    d_out[row] =
        st.valid() ? float(RowSoftmax::from(st, 1.0).logsumexp()) : __int_as_float(0x7fc00000);
  }
}

}  // namespace

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" / "no device" error
    return 0;
  }
  return n;
}

cudaError_t RowLogSumExp(const float* d_logits, int64_t n_rows, int64_t vocab, float* d_out,
                         cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  constexpr int kRowsPerBlock = kThreads / kWarp;
  const int64_t blocks = (n_rows + kRowsPerBlock - 1) / kRowsPerBlock;
  RowLogSumExpKernel<<<unsigned(blocks), kThreads, 0, stream>>>(d_logits, n_rows, vocab, d_out);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace logcal
