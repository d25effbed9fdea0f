// CUDA sequence_stats: per-sequence sum, mean, min, count and perplexity, bitwise equal to the
// CPU back end: both add in the order logcal/core/sequence.h fixes by the data alone (blocks of
// kSeqBlock tokens; token i of a block into double lane i % kSeqLanes, each lane adding its
// tokens in order; the lanes combined by seq_lane_tree; block partials merged left to right by
// seq_merge). Here a group of kSeqLanes threads computes a block, one thread per lane, and
// combines the lanes with shuffles -- so the GPU adds exactly what the CPU adds, in the same
// order, and gets the same bits.
//
// Sequences of up to kGroupMaxBlocks blocks are handled by one group each (many groups per
// block, a grid-stride loop); longer ones by a whole block (kGroups groups), which computes
// kGroups consecutive blocks at a time and merges them in order.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "device_util.cuh"
#include "logcal/core/half.h"
#include "logcal/core/sequence.h"
#include "logcal/sequence.h"
#include "logcal_cuda.cuh"

namespace logcal {
namespace cuda {
namespace {

constexpr int kSeqThreads = 256;
constexpr int kGroups = kSeqThreads / kSeqLanes;
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

// The partial of tokens [lo, lo + n) of sequence s, computed by the kSeqLanes threads of a group
// (`sub` = their lane) and returned to all of them: the loop of the CPU's reduce_block
// (cpp/src/sequence.cpp), one lane per thread, and the same combination of the lanes.
template <class In, bool kMasked>
__device__ SeqPartial block_partial(const Source<In>& src, int64_t s, int64_t lo, int64_t n,
                                    int sub, unsigned gmask) {
  using C = typename Scalar<In>::Compute;
  double acc = 0.0;
  C mn = C(INFINITY);
  int bad = 0;
  long long cnt = 0;
  for (int64_t i = sub; i < n; i += kSeqLanes) {
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
  int any_bad = 0;
  long long count = 0;
  for (int j = 0; j < kSeqLanes; ++j) {
    any_bad |= __shfl_sync(gmask, bad, j, kSeqLanes);
    count += __shfl_sync(gmask, cnt, j, kSeqLanes);
  }
  return seq_block_partial([&](int j) { return __shfl_sync(gmask, acc, j, kSeqLanes); },
                           [&](int j) { return double(__shfl_sync(gmask, mn, j, kSeqLanes)); },
                           kMasked ? count : n, any_bad != 0);
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
  const int sub = threadIdx.x % kSeqLanes;
  const unsigned gmask = 0xffu << ((threadIdx.x % kWarp) / kSeqLanes * kSeqLanes);
  const int64_t n_groups = int64_t(gridDim.x) * kGroups;
  for (int64_t s = int64_t(blockIdx.x) * kGroups + threadIdx.x / kSeqLanes; s < a.n_seq;
       s += n_groups) {
    const int64_t len = src.size(s);
    if (len > kGroupMaxBlocks * kSeqBlock) continue;  // SequenceLongKernel's
    SeqPartial acc;
    for (int64_t lo = 0; lo < len; lo += kSeqBlock) {
      const int64_t n = len - lo < kSeqBlock ? len - lo : kSeqBlock;
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
  const int sub = threadIdx.x % kSeqLanes, g = threadIdx.x / kSeqLanes;
  const unsigned gmask = 0xffu << ((threadIdx.x % kWarp) / kSeqLanes * kSeqLanes);
  for (int64_t s = blockIdx.x; s < a.n_seq; s += gridDim.x) {
    const int64_t len = src.size(s);
    if (len <= kGroupMaxBlocks * kSeqBlock) continue;  // uniform over the block
    const int64_t n_blocks = (len + kSeqBlock - 1) / kSeqBlock;
    if (threadIdx.x == 0) total = pod_of(SeqPartial{});
    for (int64_t r0 = 0; r0 < n_blocks; r0 += kGroups) {
      const int64_t bi = r0 + g;
      if (bi < n_blocks) {  // uniform over each group
        const int64_t lo = bi * kSeqBlock;
        const int64_t n = len - lo < kSeqBlock ? len - lo : kSeqBlock;
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

template <class In>
cudaError_t launch(const SequenceStatsArgs& a, cudaStream_t stream) {
  Source<In> src{static_cast<const In*>(a.data),
                 a.offsets,
                 a.stride,
                 a.length,
                 a.row_stride,
                 a.col_stride,
                 a.mask,
                 a.mask_row_stride,
                 a.mask_col_stride};
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
  const bool maybe_long = a.offsets ? true : a.length > kGroupMaxBlocks * kSeqBlock;
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

}  // namespace cuda
}  // namespace logcal
