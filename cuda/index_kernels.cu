// Index values read once into private device memory, checked as they are read
// (logcal/core/indices.h). The kernels that follow read only the copy, so nothing a caller does
// to its array on another stream or thread can send them outside their arrays.
#include "logcal/core/indices.h"
#include "logcal_cuda.cuh"

namespace logcal {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : (b < kMaxBlocks ? b : kMaxBlocks));
}

// dst[i] = values[i] as int64 (the uint64 bits for values above INT64_MAX); the smallest i whose
// value breaks `rule` goes to *first_bad.
__global__ void CopyIndicesKernel(IntArray values, IndexRule rule, int64_t* __restrict__ dst,
                                  unsigned long long* first_bad) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < values.size;
       i += int64_t(gridDim.x) * blockDim.x) {
    bool big;
    const int64_t v = values.load(i, &big);
    dst[i] = v;
    if (!rule.ok(v, big)) atomicMin(first_bad, (unsigned long long)i);
  }
}

// The other rules, judged on the private copy: a start other than 0, a decrease, an end other
// than n_tokens.
__global__ void OffsetOrderKernel(const int64_t* __restrict__ off, int64_t n, int64_t n_tokens,
                                  unsigned long long* first_bad) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const bool bad =
        i == 0 ? off[0] != 0 : off[i] < off[i - 1] || (i == n - 1 && off[i] != n_tokens);
    if (bad) atomicMin(first_bad, (unsigned long long)i);
  }
}

}  // namespace

cudaError_t CopyIndices(const IntArray& values, const IndexRule& rule, int64_t* d_dst,
                        unsigned long long* d_first_bad, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(d_first_bad, 0xff, sizeof *d_first_bad, stream);
  if (err != cudaSuccess || values.size == 0) return err;
  CopyIndicesKernel<<<blocks_for(values.size), kThreads, 0, stream>>>(values, rule, d_dst,
                                                                      d_first_bad);
  return cudaGetLastError();
}

cudaError_t CopyOffsets(const IntArray& offsets, int64_t n_tokens, int64_t* d_dst,
                        unsigned long long* d_first_bad, cudaStream_t stream) {
  if (offsets.size < 1) return cudaErrorInvalidValue;
  cudaError_t err = cudaMemsetAsync(d_first_bad, 0xff, sizeof *d_first_bad, stream);
  if (err != cudaSuccess) return err;
  const unsigned blocks = blocks_for(offsets.size);
  // Inside [0, n_tokens] is the index rule with bound n_tokens + 1.
  const IndexRule inside{n_tokens + 1, false, 0};
  CopyIndicesKernel<<<blocks, kThreads, 0, stream>>>(offsets, inside, d_dst, d_first_bad);
  OffsetOrderKernel<<<blocks, kThreads, 0, stream>>>(d_dst, offsets.size, n_tokens, d_first_bad);
  return cudaGetLastError();
}

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

}  // namespace cuda
}  // namespace logcal
