// Device-side building blocks shared by the CUDA kernels: element loads, a bitonic sort of
// (value, id) pairs in shared memory, and the top-k order with an explicit "empty" slot.
// Everything numerical comes from cpp/include/logcal/core (softmax_state.h, topk.h, half.h), so
// the CPU and GPU answer each question the same way.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "logcal/core/half.h"
#include "logcal/core/topk.h"

namespace logcal {
namespace cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// Top-k ids are kept as 32-bit row positions; this id marks an empty slot (so V < 2^32 - 1).
constexpr uint32_t kEmptyId = 0xffffffffu;

// Element loads as the compute type. bf16/fp16 widen exactly (logcal/core/half.h).
template <class In>
__device__ __forceinline__ typename Scalar<In>::Compute load_elem(const In* p) {
  return Scalar<In>::load(*p);
}

// 16 bytes of elements as the compute type; kStreaming: evict-first (the data is read once).
template <class In, bool kStreaming>
__device__ __forceinline__ void load_vec16(const In* p, typename Scalar<In>::Compute* out) {
  constexpr int kN = 16 / int(sizeof(In));
  const uint4* q = reinterpret_cast<const uint4*>(p);
  uint4 raw = kStreaming ? __ldcs(q) : __ldg(q);
  const In* e = reinterpret_cast<const In*>(&raw);
#pragma unroll
  for (int i = 0; i < kN; ++i) out[i] = Scalar<In>::load(e[i]);
}

// The top-k order (topk.h) extended with empty slots, which rank after everything.
template <class C>
__device__ __forceinline__ bool slot_before(C va, uint32_t ia, C vb, uint32_t ib) {
  if (ia == kEmptyId) return false;
  if (ib == kEmptyId) return true;
  return ranks_before(va, int64_t(ia), vb, int64_t(ib));
}

// Sorts n (a power of two) pairs best first, in shared memory, with `nthreads` threads whose
// index is `tid`; `sync()` is the barrier among them (__syncwarp or __syncthreads). Bitonic
// network: the result depends only on the input multiset (keys are distinct: ids are unique),
// so it is deterministic whatever order the pairs were appended in.
template <class C, class Sync>
__device__ __forceinline__ void bitonic_sort(C* val, uint32_t* id, int n, int tid, int nthreads,
                                             Sync sync) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < (n >> 1); i += nthreads) {
        const int lo = 2 * stride * (i / stride) + (i % stride);
        const int hi = lo + stride;
        const bool best_first = (lo & size) == 0;
        const C vl = val[lo], vh = val[hi];
        const uint32_t il = id[lo], ih = id[hi];
        const bool swap = best_first ? slot_before(vh, ih, vl, il) : slot_before(vl, il, vh, ih);
        if (swap) {
          val[lo] = vh;
          val[hi] = vl;
          id[lo] = ih;
          id[hi] = il;
        }
      }
      sync();
    }
  }
}

__device__ __forceinline__ int next_pow2(int x) {
  int p = 1;
  while (p < x) p <<= 1;
  return p;
}

__device__ __forceinline__ unsigned lanemask_lt() {
  unsigned m;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
  return m;
}

}  // namespace cuda
}  // namespace logcal
