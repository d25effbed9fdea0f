// CUDA back end, first piece: a device probe and a row log-sum-exp kernel built on the shared
// numerical core (logcal/softmax_state.h), so the build proves that core compiles for the GPU
// and a GPU test can compare it with the CPU kernels. Launchers take a stream, never throw and
// never synchronise; they return cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace logcal {
namespace cuda {

// Number of usable CUDA devices; 0 (not an error) when there is no driver or no device.
int DeviceCount();

// d_out[r] = logsumexp(d_logits[r, :]) for a dense float32 [n_rows, vocab] array.
cudaError_t RowLogSumExp(const float* d_logits, int64_t n_rows, int64_t vocab, float* d_out,
                         cudaStream_t stream);

}  // namespace cuda
}  // namespace logcal
