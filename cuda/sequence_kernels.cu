// CUDA sequence_stats: per-sequence sum, mean, min, count and perplexity, bitwise equal to the
// CPU back end (cpp/src/sequence.cpp), which fixes the order of every addition by the data alone:
// a sequence is cut into blocks of kBlock tokens; token i of a block goes to double accumulator
// i % 8, each accumulator adds its tokens in order, the eight are combined by the tree
// ((0+1)+(2+3))+((4+5)+(6+7)), and the block partials are merged left to right (seq_merge,
// logcal/sequence.h). Here a group of 8 threads computes a block, one thread per accumulator,
// and combines them with shuffles in that same tree -- so the GPU adds exactly what the CPU adds,
// in the same order, and gets the same bits.
//
// Sequences of up to kGroupMaxBlocks blocks are handled by one group each (many groups per
// block, a grid-stride loop); longer ones by a whole block (32 groups), which computes 32
// consecutive blocks at a time and merges them in order.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "device_util.cuh"
#include "logcal/half.h"
#include "logcal/sequence.h"
#include "logcal_cuda.cuh"

namespace logcal {
namespace cuda {
namespace {

constexpr int64_t kBlock = 8192;  // = kBlock of cpp/src/sequence.cpp: part of the result's bits
constexpr int kLanes = 8;         // = kSeqLanes of cpp/src/sequence_blocks.h
constexpr int kSeqThreads = 256;
constexpr int kGroups = kSeqThreads / kLanes;
constexpr int64_t kGroupMaxBlocks = 8;

// SeqPartial without member initialisers, for shared memory.
struct SeqPod {
  double sum, min;
  long long count;
  int nan;
};

__device__ __forceinline__ SeqPod pod_of(const SeqPartial& p) {
  return SeqPod{p.sum, p.min, (long long)p.count, p.nan ? 1 : 0};
}
__device__ __forceinline__ SeqPartial partial_of(const SeqPod& p) {
  SeqPartial r;
  r.sum = p.sum;
  r.min = p.min;
  r.count = p.count;
  r.nan = p.nan != 0;
  return r;
}

template <class In>
struct Source {
  const In* data;
  const int64_t* offsets;  // flat layout when non-null
  int64_t stride;
  int64_t length, row_stride, col_stride;
  const uint8_t* mask;
  int64_t mask_row_stride, mask_col_stride;

  __device__ int64_t size(int64_t s) const {
    return offsets ? offsets[s + 1] - offsets[s] : length;
  }
  __device__ const In* at(int64_t s, int64_t i) const {
    return offsets ? data + (offsets[s] + i) * stride : data + s * row_stride + i * col_stride;
  }
  __device__ bool keep(int64_t s, int64_t i) const {
    return mask[s * mask_row_stride + i * mask_col_stride] != 0;
  }
};

// The partial of tokens [lo, lo + n) of sequence s, computed by the 8 threads of a group
// (`sub` = 0..7 their accumulator) and returned to all of them. The loop and the combination
// are cpp/src/sequence.cpp's reduce_block, one accumulator per thread.
template <class In, bool kMasked>
__device__ SeqPartial block_partial(const Source<In>& src, int64_t s, int64_t lo, int64_t n,
                                    int sub, unsigned gmask) {
  using C = typename Scalar<In>::Compute;
  double acc = 0.0;
  C mn = C(INFINITY);
  int bad = 0;
  long long cnt = 0;
  for (int64_t i = sub; i < n; i += kLanes) {
    const C v = Scalar<In>::load(*src.at(s, lo + i));
    if (kMasked) {
      const bool keep = src.keep(s, lo + i);
      acc += keep ? double(v) : 0.0;
      mn = (keep && v < mn) ? v : mn;
      bad |= int(keep && v != v);
      cnt += keep;
    } else {
      acc += double(v);
      mn = v < mn ? v : mn;
      bad |= int(v != v);
    }
  }
  // ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)): IEEE addition is commutative, so every
  // thread of the group forms exactly these sums.
  acc = acc + __shfl_xor_sync(gmask, acc, 1, kLanes);
  acc = acc + __shfl_xor_sync(gmask, acc, 2, kLanes);
  acc = acc + __shfl_xor_sync(gmask, acc, 4, kLanes);
  double m = INFINITY;
  int any_bad = 0;
  long long count = 0;
  for (int j = 0; j < kLanes; ++j) {  // the CPU's lane order (decides between -0.0 and +0.0)
    const double mj = double(__shfl_sync(gmask, mn, j, kLanes));
    m = mj < m ? mj : m;
    any_bad |= __shfl_sync(gmask, bad, j, kLanes);
    count += __shfl_sync(gmask, cnt, j, kLanes);
  }
  SeqPartial p;
  p.sum = acc;
  p.min = m;
  p.nan = any_bad != 0;
  p.count = kMasked ? count : n;
  return p;
}

template <class In>
__device__ void write_result(const SequenceStatsArgs& a, int64_t s, const SeqPartial& p) {
  using Out = typename Scalar<In>::Compute;
  const SeqResult r = seq_finish(p);
  if (a.sum) static_cast<Out*>(a.sum)[s] = Out(r.sum);
  if (a.mean) static_cast<Out*>(a.mean)[s] = Out(r.mean);
  if (a.min) static_cast<Out*>(a.min)[s] = Out(r.min);
  if (a.perplexity) static_cast<Out*>(a.perplexity)[s] = Out(r.perplexity);
  if (a.count) a.count[s] = r.count;
}

// One group of 8 threads per sequence of at most kGroupMaxBlocks blocks.
template <class In, bool kMasked>
__global__ void __launch_bounds__(kSeqThreads, 4)
    SequenceGroupKernel(SequenceStatsArgs a, Source<In> src) {
  const int sub = threadIdx.x % kLanes;
  const unsigned gmask = 0xffu << ((threadIdx.x % kWarp) / kLanes * kLanes);
  const int64_t n_groups = int64_t(gridDim.x) * kGroups;
  for (int64_t s = int64_t(blockIdx.x) * kGroups + threadIdx.x / kLanes; s < a.n_seq;
       s += n_groups) {
    const int64_t len = src.size(s);
    if (len > kGroupMaxBlocks * kBlock) continue;  // SequenceLongKernel's
    SeqPartial acc;
    for (int64_t lo = 0; lo < len; lo += kBlock) {
      const int64_t n = len - lo < kBlock ? len - lo : kBlock;
      acc = seq_merge(acc, block_partial<In, kMasked>(src, s, lo, n, sub, gmask));
    }
    if (sub == 0) write_result<In>(a, s, acc);
  }
}

// One block of 32 groups per long sequence: rounds of 32 consecutive token blocks, merged in
// order by thread 0.
template <class In, bool kMasked>
__global__ void __launch_bounds__(kSeqThreads, 1)
    SequenceLongKernel(SequenceStatsArgs a, Source<In> src) {
  __shared__ SeqPod parts[kGroups];
  __shared__ SeqPod total;
  const int sub = threadIdx.x % kLanes, g = threadIdx.x / kLanes;
  const unsigned gmask = 0xffu << ((threadIdx.x % kWarp) / kLanes * kLanes);
  for (int64_t s = blockIdx.x; s < a.n_seq; s += gridDim.x) {
    const int64_t len = src.size(s);
    if (len <= kGroupMaxBlocks * kBlock) continue;  // uniform over the block
    const int64_t n_blocks = (len + kBlock - 1) / kBlock;
    if (threadIdx.x == 0) total = pod_of(SeqPartial{});
    for (int64_t r0 = 0; r0 < n_blocks; r0 += kGroups) {
      const int64_t bi = r0 + g;
      if (bi < n_blocks) {  // uniform over each group
        const int64_t lo = bi * kBlock;
        const int64_t n = len - lo < kBlock ? len - lo : kBlock;
        const SeqPartial p = block_partial<In, kMasked>(src, s, lo, n, sub, gmask);
        if (sub == 0) parts[g] = pod_of(p);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        SeqPartial acc = partial_of(total);
        for (int j = 0; j < kGroups && r0 + j < n_blocks; ++j)
          acc = seq_merge(acc, partial_of(parts[j]));
        total = pod_of(acc);
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) write_result<In>(a, s, partial_of(total));
    __syncthreads();
  }
}

__global__ void FirstBadOffsetKernel(const int64_t* __restrict__ off, int64_t n, int64_t n_tokens,
                                     unsigned long long* first) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i <= n;
       i += int64_t(gridDim.x) * blockDim.x) {
    bool bad;
    if (i == 0) {
      bad = off[0] != 0;
    } else {
      bad = off[i] < off[i - 1] || off[i] < 0 || off[i] > n_tokens || (i == n && off[i] != n_tokens);
    }
    if (bad) atomicMin(first, (unsigned long long)i);
  }
}

template <class In>
cudaError_t launch(const SequenceStatsArgs& a, cudaStream_t stream) {
  Source<In> src{static_cast<const In*>(a.data), a.offsets, a.stride, a.length, a.row_stride,
                 a.col_stride, a.mask, a.mask_row_stride, a.mask_col_stride};
  int device = 0, sms = 1;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    return cudaGetLastError();
  }
  const int64_t group_blocks = (a.n_seq + kGroups - 1) / kGroups;
  const int64_t cap = int64_t(sms) * 8;
  const unsigned g1 = unsigned(group_blocks < cap ? group_blocks : cap);
  const unsigned g2 = unsigned(a.n_seq < int64_t(sms) * 4 ? a.n_seq : int64_t(sms) * 4);
  // Padded rows are long only if L is; flat sequences may be (their lengths stay on the device).
  const bool maybe_long = a.offsets ? true : a.length > kGroupMaxBlocks * kBlock;
  if (a.mask) {
    SequenceGroupKernel<In, true><<<g1, kSeqThreads, 0, stream>>>(a, src);
    if (maybe_long) SequenceLongKernel<In, true><<<g2, kSeqThreads, 0, stream>>>(a, src);
  } else {
    SequenceGroupKernel<In, false><<<g1, kSeqThreads, 0, stream>>>(a, src);
    if (maybe_long) SequenceLongKernel<In, false><<<g2, kSeqThreads, 0, stream>>>(a, src);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t SequenceStats(const SequenceStatsArgs& args, cudaStream_t stream) {
  if (args.n_seq < 0 || (!args.offsets && args.length < 0)) return cudaErrorInvalidValue;
  if (args.offsets && args.mask) return cudaErrorInvalidValue;
  if (args.n_seq == 0) return cudaSuccess;
  return visit_dtype(args.dtype, cudaErrorInvalidValue,
                     [&](auto tag) { return launch<decltype(tag)>(args, stream); });
}

cudaError_t FirstBadOffset(const int64_t* d_offsets, int64_t n, int64_t n_tokens,
                           unsigned long long* d_first, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  const int64_t blocks64 = (n + 1 + 255) / 256;
  const unsigned blocks = unsigned(blocks64 < 4096 ? blocks64 : 4096);
  FirstBadOffsetKernel<<<blocks, 256, 0, stream>>>(d_offsets, n, n_tokens, d_first);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace logcal
