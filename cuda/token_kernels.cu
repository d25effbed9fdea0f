// CUDA token kernels: token_stats and log_softmax over rows of logits.
//
// Work item = one piece of one row (the whole row unless rows are fewer than the GPU's block
// slots; then each row is cut into `splits` pieces and a second, small kernel merges them in
// piece order, so results never depend on scheduling). A persistent grid of 256-thread blocks
// loops over the items. Within an item:
//
//   * each thread streams 16-byte vectors (a scalar head and tail align them; strided rows go
//     element by element) and keeps an online softmax state relative to its own running
//     maximum, moved at most once per vector -- the CPU's chunk rule, in float for 16/32-bit
//     logits and double for float64;
//   * NaN and the target's rank (count of strictly larger raw logits) are counted on the way;
//   * top-k: each warp keeps candidates in a shared-memory buffer. An element is appended only
//     if it ranks before the warp's threshold, the k-th best of the candidates kept so far
//     (order of logcal/core/topk.h: larger value, then lower id); a buffer about to overflow is
//     sorted (bitonic) and cut back to k, which raises the threshold. At the end the warps' k
//     best are merged by one block-wide sort. Sorting makes the result independent of the
//     order in which candidates were appended;
//   * the threads' states merge into one logcal::SoftmaxState through the shared core's merge,
//     in a fixed tree, and logcal::RowSoftmax gives every output, as on the CPU;
//   * with the varentropy (kVarentropy, a kernel of its own), each thread also keeps the
//     centred moments of its t (logcal::SurprisalMoments, in double): each step's sums of
//     2^t (t - c) and 2^t (t - c)^2 are taken about the thread's mean of t so far, that step
//     included (logcal::MomentCentre), and merged in; the default kernels never touch them.
//
// top_k above kMaxTopKPerPass is served by further top-k passes, each excluding what the passes
// before it returned. Indexing is 64-bit; top-k ids are 32-bit row positions (V < 2^32 - 1).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "device_util.cuh"
#include "logcal/core/softmax_state.h"
#include "logcal/core/token_row.h"
#include "logcal/core/topk.h"
#include "logcal/token_args.h"
#include "logcal_cuda.cuh"

namespace logcal {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int kBlocksPerSm = 2;      // for planning the split of few rows
constexpr int64_t kMinPiece = 8192;  // rows are split into pieces at least this long
constexpr int kMaxSplits = 32;
constexpr int kMaxK = int(kMaxTopKPerPass);

template <class C>
struct Num;
template <>
struct Num<float> {
  __device__ static float exp2_(float x) { return exp2f(x); }
  __device__ static float max_(float a, float b) { return fmaxf(a, b); }
  __device__ static float min_(float a, float b) { return fminf(a, b); }
  __device__ static float neg_inf() { return __int_as_float(0xff800000); }
};
template <>
struct Num<double> {
  __device__ static double exp2_(double x) { return exp2(x); }
  __device__ static double max_(double a, double b) { return fmax(a, b); }
  __device__ static double min_(double a, double b) { return fmin(a, b); }
  __device__ static double neg_inf() { return __longlong_as_double(0xfff0000000000000ll); }
};

// Candidate buffer per warp: room for k kept entries plus one full step of appends.
template <class C>
struct TopKCap {
  static constexpr int kValue = 512;
};
template <>
struct TopKCap<double> {
  static constexpr int kValue = 256;
};

struct WarpSync {
  __device__ void operator()() const { __syncwarp(); }
};
struct BlockSync {
  __device__ void operator()() const { __syncthreads(); }
};

// The partial result of one piece of a row, as kept in the workspace between the two kernels.
// Plain data (no constructors), so it can live in shared memory.
struct PieceHeader {
  double ref, sum, tsum;
  long long n_nan, n_greater;
  double mean, m2;  // the varentropy's moments (zero when not wanted)
};

__device__ __forceinline__ SoftmaxState state_of(const PieceHeader& h) {
  SoftmaxState s;
  s.ref = h.ref;
  s.sum = h.sum;
  s.tsum = h.tsum;
  s.n_nan = h.n_nan;
  s.moments.mean = h.mean;
  s.moments.m2 = h.m2;
  return s;
}

__device__ __forceinline__ PieceHeader header_of(const SoftmaxState& s, long long n_greater) {
  return PieceHeader{s.ref,     s.sum,          s.tsum,      (long long)s.n_nan,
                     n_greater, s.moments.mean, s.moments.m2};
}

// The n pieces of a row merged in piece order, so every block that merges them gets the same
// bits. With `moments`, the varentropy's too; t_scale is the scale the threads formed t with.
__device__ __forceinline__ PieceHeader merge_pieces(const PieceHeader* h, int64_t n, double scale,
                                                    bool moments, double t_scale) {
  SoftmaxState s = state_of(h[0]);
  long long n_greater = h[0].n_greater;
  for (int64_t p = 1; p < n; ++p) {
    if (moments)
      s.merge<true>(state_of(h[p]), scale, t_scale);
    else
      s.merge(state_of(h[p]), scale);
    n_greater += h[p].n_greater;
  }
  return header_of(s, n_greater);
}

// -------------------------------------------------------------------------------------------
// The block-wide scan of one piece of a row.
// -------------------------------------------------------------------------------------------

// kTopK: keep a top-k list (token_stats always does: its top-1 is the argmax). kRank: count
// logits above the target's. kExclude: top-k only among entries ranking after (ex_val, ex_id),
// for the passes that continue a top-k beyond kMaxK. kStreaming: evict-first loads.
// How [begin, end) of a contiguous row splits for 16-byte vector loads: `head` scalar elements
// up to the first aligned address, `n_vec` whole vectors, then a scalar tail from `body_end`.
struct VectorSplit {
  int64_t head, n_vec, body_end;
};

template <class In>
__device__ __forceinline__ VectorSplit split_for_vectors(uintptr_t addr, int64_t begin,
                                                         int64_t end) {
  constexpr int64_t kVec = 16 / int64_t(sizeof(In));
  const int64_t len = end - begin;
  int64_t head = int64_t((16 - addr % 16) % 16) / int64_t(sizeof(In));
  head = head < len ? head : len;
  const int64_t n_vec = (len - head) / kVec;
  return VectorSplit{head, n_vec, begin + head + n_vec * kVec};
}

template <class In, bool kEntropy, bool kRank, bool kTopK, bool kExclude, bool kStreaming,
          bool kVarentropy = false>
struct Scan {
  using C = typename Scalar<In>::Compute;
  static constexpr int kVec = 16 / int(sizeof(In));
  static constexpr int kCap = kTopK ? TopKCap<C>::kValue : 1;
  static constexpr int kStepMax = kWarp * kVec;
  static_assert(kCap >= kMaxK + kStepMax || !kTopK, "candidate buffer too small");

  struct Shared {
    C val[kTopK ? kWarps : 1][kCap];
    uint32_t id[kTopK ? kWarps : 1][kCap];
    C mval[kTopK ? kWarps * kMaxK : 1];
    uint32_t mid[kTopK ? kWarps * kMaxK : 1];
    double w_ref[kWarps], w_sum[kWarps], w_tsum[kWarps];
    long long w_nan[kWarps], w_gt[kWarps];
    double w_mean[kVarentropy ? kWarps : 1], w_m2[kVarentropy ? kWarps : 1];
  };

  // Per thread.
  C ref, sum, tsum, scale, target;
  SurprisalMoments moments;  // kVarentropy only
  int nan;
  unsigned n_greater;
  // Per warp (every lane holds the same values).
  int count, k;
  C tv;
  uint32_t tid;
  C ex_val;
  uint32_t ex_id;

  __device__ void reset(C scale_, C target_, int k_, C ex_val_, uint32_t ex_id_) {
    ref = Num<C>::neg_inf();
    sum = tsum = C(0);
    moments = SurprisalMoments{};
    scale = scale_;
    target = target_;
    nan = 0;
    n_greater = 0;
    count = 0;
    k = k_;
    tv = Num<C>::neg_inf();
    tid = kEmptyId;  // with tv = -inf: every non-NaN element ranks before it
    ex_val = ex_val_;
    ex_id = ex_id_;
  }

  // Sorts the warp's buffer best first and keeps the k best; the k-th becomes the threshold.
  __device__ void compact(Shared& sm, int warp, int lane) {
    C* val = sm.val[warp];
    uint32_t* ids = sm.id[warp];
    const int n = next_pow2(count > 2 ? count : 2);
    for (int i = count + lane; i < n; i += kWarp) {
      val[i] = Num<C>::neg_inf();
      ids[i] = kEmptyId;
    }
    __syncwarp();
    bitonic_sort(val, ids, n, lane, kWarp, WarpSync{});
    count = count < k ? count : k;
    if (count == k) {
      tv = val[k - 1];
      tid = ids[k - 1];
    }
    __syncwarp();
  }

  // One step: N consecutive elements of the row per thread (ids first, first + 1, ...);
  // `ok` false for threads past the end. Every lane of the warp calls it (ballots).
  template <int N>
  __device__ void step(const C (&x)[N], int64_t first, bool ok, Shared& sm, int warp, int lane) {
    C vmax = Num<C>::neg_inf();
    if (ok) {
#pragma unroll
      for (int e = 0; e < N; ++e) {
        vmax = Num<C>::max_(vmax, x[e]);  // drops NaN
        nan |= int(x[e] != x[e]);
        if (kRank) n_greater += unsigned(x[e] > target);
      }
      if (!kExclude) {
        if (vmax > ref) {  // move the reference once per step (SoftmaxState::rebase, in C)
          if (sum != C(0)) {
            const C d = (ref - vmax) * scale;
            const C a = Num<C>::exp2_(d);
            tsum = a * (tsum + d * sum);
            sum = a * sum;
            if (kVarentropy)
              moments.rebase((double(ref) - double(vmax)) * double(scale), double(a));
          }
          ref = vmax;
        }
        if (ref > Num<C>::neg_inf()) {
          const C sum_before = sum;
          C w[N];
#pragma unroll
          for (int e = 0; e < N; ++e) {
            const C t = Num<C>::max_((x[e] - ref) * scale, kExp2Floor<C>);
            const C p = Num<C>::exp2_(t);
            sum += p;
            if (kEntropy || kVarentropy) tsum += p * t;
            w[e] = p;
          }
          if (kVarentropy) add_step_moments<N>(x, w, sum_before);
        }
      }
    }
    if constexpr (kTopK) {
      const bool maybe = ok && vmax >= tv;  // no element of the step can pass otherwise
      if (!__any_sync(kFullMask, maybe)) return;
      C* val = sm.val[warp];
      uint32_t* ids = sm.id[warp];
#pragma unroll
      for (int e = 0; e < N; ++e) {
        const uint32_t j = uint32_t(first + e);
        bool pass = maybe && ranks_before(x[e], int64_t(j), tv, int64_t(tid));
        if (kExclude) pass = pass && ranks_before(ex_val, int64_t(ex_id), x[e], int64_t(j));
        const unsigned b = __ballot_sync(kFullMask, pass);
        if (pass) {
          const int pos = count + __popc(b & lanemask_lt());
          val[pos] = x[e];
          ids[pos] = j;
        }
        count += __popc(b);
      }
      __syncwarp();
      if (count > kCap - kStepMax) compact(sm, warp, lane);
    }
  }

  // The varentropy's moments of one step's elements x with weights w = 2^t, merged into the
  // thread's, about the thread's mean of t with this step included (the CPU's pass C, per step).
  template <int N>
  __device__ void add_step_moments(const C (&x)[N], const C (&w)[N], C sum_before) {
    const MomentCentre<C> c =
        MomentCentre<C>::at(double(ref), double(tsum) / double(sum), scale, kExp2Floor<C>);
    C s = C(0), tc = C(0), qc = C(0);
#pragma unroll
    for (int e = 0; e < N; ++e) {
      // t - c, clamped as t is (a masked logit, or an overflowed difference, at the floor)
      const C u = Num<C>::min_(Num<C>::max_((x[e] - c.raw) * scale, c.lo), c.hi);
      const C wu = w[e] * u;
      s += w[e];
      tc += wu;
      qc += wu * u;
    }
    moments.merge(SurprisalMoments::about(c.t, double(s), double(tc), double(qc)),
                  double(sum_before), double(s));
  }

  // Streams elements [begin, end) of a row (row[j * col_stride]).
  __device__ void run(const In* row, int64_t col_stride, int64_t begin, int64_t end, Shared& sm) {
    const int t = threadIdx.x, warp = t / kWarp, lane = t % kWarp;
    const uintptr_t addr = reinterpret_cast<uintptr_t>(row + begin);
    if (col_stride != 1 || addr % sizeof(In) != 0) {
      for (int64_t j0 = begin; j0 < end; j0 += kThreads) {
        const int64_t j = j0 + t;
        const bool ok = j < end;
        C x[1] = {ok ? load_elem(row + j * col_stride) : C(0)};
        step<1>(x, j, ok, sm, warp, lane);
      }
      return;
    }
    const VectorSplit split = split_for_vectors<In>(addr, begin, end);
    const int64_t head = split.head, n_vec = split.n_vec, body_end = split.body_end;
    {  // head: fewer than kVec elements, one per thread
      const int64_t j = begin + t;
      const bool ok = t < head;
      C x[1] = {ok ? load_elem(row + j) : C(0)};
      step<1>(x, j, ok, sm, warp, lane);
    }
    const In* vbase = row + begin + head;
    for (int64_t q0 = 0; q0 < n_vec; q0 += 2 * kThreads) {
      const int64_t qa = q0 + t, qb = qa + kThreads;
      C xa[kVec], xb[kVec];
      const bool oka = qa < n_vec, okb = qb < n_vec;
      if (oka) load_vec16<In, kStreaming>(vbase + qa * kVec, xa);
      if (okb) load_vec16<In, kStreaming>(vbase + qb * kVec, xb);
      if (!oka) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) xa[e] = C(0);
      }
      if (!okb) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) xb[e] = C(0);
      }
      step<kVec>(xa, begin + head + qa * kVec, oka, sm, warp, lane);
      step<kVec>(xb, begin + head + qb * kVec, okb, sm, warp, lane);
    }
    {  // tail
      const int64_t j = body_end + t;
      const bool ok = j < end;
      C x[1] = {ok ? load_elem(row + j) : C(0)};
      step<1>(x, j, ok, sm, warp, lane);
    }
  }

  // Merges the threads' states (fixed tree) into *total (written by thread 0); with kTopK, leaves
  // the piece's k best, sorted, in sm.mval / sm.mid [0, k) (empty slots where fewer exist). Ends
  // with a barrier.
  __device__ void finish(Shared& sm, double scale_d, PieceHeader* total) {
    const int t = threadIdx.x, warp = t / kWarp, lane = t % kWarp;
    const double t_scale = double(scale);  // the scale the t of this block were formed with
    SoftmaxState st;
    st.ref = double(ref);
    st.sum = double(sum);
    st.tsum = double(tsum);
    st.n_nan = nan;
    if (kVarentropy) st.moments = moments;
    long long g = n_greater;
    for (int off = kWarp / 2; off > 0; off >>= 1) {
      SoftmaxState o;
      o.ref = __shfl_down_sync(kFullMask, st.ref, off);
      o.sum = __shfl_down_sync(kFullMask, st.sum, off);
      o.tsum = __shfl_down_sync(kFullMask, st.tsum, off);
      o.n_nan = __shfl_down_sync(kFullMask, st.n_nan, off);
      if (kVarentropy) {
        o.moments.mean = __shfl_down_sync(kFullMask, st.moments.mean, off);
        o.moments.m2 = __shfl_down_sync(kFullMask, st.moments.m2, off);
      }
      g += __shfl_down_sync(kFullMask, g, off);
      st.merge<kVarentropy>(o, scale_d, t_scale);
    }
    if (lane == 0) {
      sm.w_ref[warp] = st.ref;
      sm.w_sum[warp] = st.sum;
      sm.w_tsum[warp] = st.tsum;
      sm.w_nan[warp] = st.n_nan;
      sm.w_gt[warp] = g;
      if (kVarentropy) {
        sm.w_mean[warp] = st.moments.mean;
        sm.w_m2[warp] = st.moments.m2;
      }
    }
    if constexpr (kTopK) {
      compact(sm, warp, lane);
      const int kp = next_pow2(k);
      for (int i = lane; i < kp; i += kWarp) {
        const bool have = i < count;
        sm.mval[warp * kp + i] = have ? sm.val[warp][i] : Num<C>::neg_inf();
        sm.mid[warp * kp + i] = have ? sm.id[warp][i] : kEmptyId;
      }
      __syncthreads();
      bitonic_sort(sm.mval, sm.mid, kWarps * kp, t, kThreads, BlockSync{});
    } else {
      __syncthreads();
    }
    if (t == 0) {
      auto warp_state = [&](int w) {
        SoftmaxState o;
        o.ref = sm.w_ref[w];
        o.sum = sm.w_sum[w];
        o.tsum = sm.w_tsum[w];
        o.n_nan = sm.w_nan[w];
        if (kVarentropy) o.moments = SurprisalMoments{sm.w_mean[w], sm.w_m2[w]};
        return o;
      };
      SoftmaxState s = warp_state(0);
      long long gsum = sm.w_gt[0];
      for (int w = 1; w < kWarps; ++w) {
        s.merge<kVarentropy>(warp_state(w), scale_d, t_scale);
        gsum += sm.w_gt[w];
      }
      *total = header_of(s, gsum);
    }
  }
};

// -------------------------------------------------------------------------------------------
// token_stats
// -------------------------------------------------------------------------------------------

struct TokenPlan {
  int64_t splits;
  int64_t items;
  int k_list;      // entries kept per pass: max(min(top_k, kMaxK), 1)
  int64_t passes;  // 1 + further top-k passes
};

TokenPlan plan_token(const TokenStatsArgs& a, int sm_count) {
  TokenPlan p;
  const int64_t n = a.logits.n_rows, v = a.logits.vocab;
  const int64_t slots = int64_t(sm_count > 0 ? sm_count : 1) * kBlocksPerSm;
  p.splits = 1;
  if (n < slots) {
    int64_t s = (slots + n - 1) / n;
    const int64_t by_len = v / kMinPiece;
    s = s < by_len ? s : by_len;
    s = s < kMaxSplits ? s : kMaxSplits;
    p.splits = s > 1 ? s : 1;
  }
  p.items = n * p.splits;
  const int64_t k = a.top_k;
  p.k_list = int(k < kMaxK ? (k > 1 ? k : 1) : kMaxK);
  p.passes = k > kMaxK ? (k + kMaxK - 1) / kMaxK : 1;
  return p;
}

template <class C>
struct WorkspaceLayout {
  PieceHeader* headers;
  C* vals;
  uint32_t* ids;
  static size_t bytes(int64_t items, int k_list) {
    return size_t(items) * (sizeof(PieceHeader) + size_t(k_list) * (sizeof(C) + sizeof(uint32_t))) +
           64;
  }
  __host__ __device__ static WorkspaceLayout at(void* base, int64_t items, int k_list) {
    WorkspaceLayout w;
    char* p = static_cast<char*>(base);
    w.headers = reinterpret_cast<PieceHeader*>(p);
    p += size_t(items) * sizeof(PieceHeader);
    w.vals = reinterpret_cast<C*>(p);
    p += size_t(items) * size_t(k_list) * sizeof(C);
    w.ids = reinterpret_cast<uint32_t*>(p);
    return w;
  }
};

__device__ __forceinline__ bool target_in_range(int64_t t, int64_t v) { return t >= 0 && t < v; }

// Writes every output of a finished row, through the writers the CPU's finish_row uses
// (logcal/core/token_row.h). vals/ids: the row's k_list best (pass 0), sorted. Called by all
// threads of a block; `t` is the thread index.
template <class In>
__device__ void finish_token_row(const TokenStatsArgs& a, int64_t row, const SoftmaxState& st,
                                 long long n_greater, const typename Scalar<In>::Compute* vals,
                                 const uint32_t* ids, int k_list, double inv_t, int t) {
  if (!st.valid()) {
    write_invalid_row<typename Scalar<In>::Compute>(a, row, t == 0, t, kThreads);
    return;
  }
  using C = typename Scalar<In>::Compute;
  const int64_t k0 = a.top_k < k_list ? a.top_k : k_list;  // entries of this pass
  const RowSoftmax rs = RowSoftmax::from(st, inv_t);
  if (t == 0) {
    const int64_t target = a.targets != nullptr ? a.targets[row] : -1;
    const bool targeted =
        a.targets != nullptr && target != a.ignore_index && target_in_range(target, a.logits.vocab);
    const In* rowp = static_cast<const In*>(a.logits.data) + a.logits.row_offset(row);
    const double xt = targeted ? double(load_elem(rowp + target * a.logits.col_stride)) : 0.0;
    write_row_fields<C>(a, row, st, rs, int64_t(ids[0]), targeted, xt, n_greater);
  }
  for (int64_t i = t; i < k0; i += kThreads)
    write_topk_entry<C>(a, row, i, rs, int64_t(ids[i]), double(vals[i]));
}

template <class In, bool kRank, bool kVarentropy>
__global__ void __launch_bounds__(kThreads, 2)
    TokenStatsKernel(TokenStatsArgs a, TokenPlan plan, void* d_workspace) {
  using C = typename Scalar<In>::Compute;
  using S = Scan<In, true, kRank, true, false, true, kVarentropy>;
  __shared__ typename S::Shared sm;
  __shared__ PieceHeader s_total;
  const double scale_d = kLog2e / a.temperature;
  const double inv_t = 1.0 / a.temperature;
  const In* base = static_cast<const In*>(a.logits.data);
  const int64_t v = a.logits.vocab;
  const auto ws = WorkspaceLayout<C>::at(d_workspace, plan.items, plan.k_list);
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t row = item / plan.splits, piece = item % plan.splits;
    const int64_t b = v * piece / plan.splits, e = v * (piece + 1) / plan.splits;
    const In* rowp = base + a.logits.row_offset(row);
    C target = C(INFINITY);  // nothing is above +inf: rank 0 when there is no target
    if (kRank) {
      const int64_t tg = a.targets[row];
      if (tg != a.ignore_index && target_in_range(tg, v))
        target = load_elem(rowp + tg * a.logits.col_stride);
    }
    S s;
    s.reset(C(scale_d), target, plan.k_list, C(0), kEmptyId);
    s.run(rowp, a.logits.col_stride, b, e, sm);
    s.finish(sm, scale_d, &s_total);
    __syncthreads();  // s_total, s_gt and sm.mval/mid visible to all
    if (plan.splits == 1) {
      finish_token_row<In>(a, row, state_of(s_total), s_total.n_greater, sm.mval, sm.mid,
                           plan.k_list, inv_t, threadIdx.x);
    } else {
      if (threadIdx.x == 0) ws.headers[item] = s_total;
      for (int i = threadIdx.x; i < plan.k_list; i += kThreads) {
        ws.vals[item * plan.k_list + i] = sm.mval[i];
        ws.ids[item * plan.k_list + i] = sm.mid[i];
      }
    }
    __syncthreads();  // before the shared memory is reused for the next item
  }
}

// Merges the pieces of each row, in piece order, then writes the row.
template <class In>
__global__ void __launch_bounds__(kThreads, 1)
    TokenStatsMergeKernel(TokenStatsArgs a, TokenPlan plan, const void* d_workspace) {
  using C = typename Scalar<In>::Compute;
  constexpr int kMaxEntries = kMaxSplits * kMaxK;
  __shared__ C s_val[kMaxEntries];
  __shared__ uint32_t s_id[kMaxEntries];
  __shared__ PieceHeader s_total;
  const double scale_d = kLog2e / a.temperature;
  const auto ws = WorkspaceLayout<C>::at(const_cast<void*>(d_workspace), plan.items, plan.k_list);
  const int kpow = next_pow2(plan.k_list);
  const int n = next_pow2(int(plan.splits) * kpow);
  for (int64_t row = blockIdx.x; row < a.logits.n_rows; row += gridDim.x) {
    const int64_t first = row * plan.splits;
    if (threadIdx.x == 0)
      s_total = merge_pieces(ws.headers + first, plan.splits, scale_d, a.varentropy != nullptr,
                             double(C(scale_d)));
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const int p = i / kpow, j = i % kpow;
      const bool have = p < plan.splits && j < plan.k_list;
      s_val[i] = have ? ws.vals[(first + p) * plan.k_list + j] : Num<C>::neg_inf();
      s_id[i] = have ? ws.ids[(first + p) * plan.k_list + j] : kEmptyId;
    }
    __syncthreads();
    bitonic_sort(s_val, s_id, n, threadIdx.x, kThreads, BlockSync{});
    finish_token_row<In>(a, row, state_of(s_total), s_total.n_greater, s_val, s_id, plan.k_list,
                         1.0 / a.temperature, threadIdx.x);
    __syncthreads();
  }
}

// A further top-k pass (top_k > kMaxK): entries [pass * kMaxK, ...) of each valid row, the best
// among those ranking after the last entry of the pass before. One block per row.
template <class In>
__global__ void __launch_bounds__(kThreads, 2) TopKPassKernel(TokenStatsArgs a, int64_t pass) {
  using C = typename Scalar<In>::Compute;
  using S = Scan<In, false, false, true, true, true>;
  __shared__ typename S::Shared sm;
  __shared__ PieceHeader s_total;
  const In* base = static_cast<const In*>(a.logits.data);
  const int64_t v = a.logits.vocab, k = a.top_k;
  const int64_t first = pass * kMaxK;
  const int k_here = int(k - first < kMaxK ? k - first : kMaxK);
  for (int64_t row = blockIdx.x; row < a.logits.n_rows; row += gridDim.x) {
    const int64_t prev_id = a.topk_ids[row * k + first - 1];
    if (prev_id < 0) {  // an invalid row: pass 0 wrote NaN / -1 everywhere
      continue;         // uniform over the block: no barrier is skipped by some threads only
    }
    const In* rowp = base + a.logits.row_offset(row);
    const C prev_val = load_elem(rowp + prev_id * a.logits.col_stride);
    // log-probabilities relative to the top-1: logprob(x) = (x - x0) / T + max_logprob
    const int64_t id0 = a.topk_ids[row * k];
    const double x0 = double(load_elem(rowp + id0 * a.logits.col_stride));
    const double lp0 = double(static_cast<const C*>(a.topk_logprobs)[row * k]);
    S s;
    s.reset(C(kLog2e / a.temperature), C(0), k_here, prev_val, uint32_t(prev_id));
    s.run(rowp, a.logits.col_stride, 0, v, sm);
    s.finish(sm, kLog2e / a.temperature, &s_total);
    __syncthreads();
    for (int i = threadIdx.x; i < k_here; i += kThreads) {
      a.topk_ids[row * k + first + i] = int64_t(sm.mid[i]);
      static_cast<C*>(a.topk_logprobs)[row * k + first + i] =
          C((double(sm.mval[i]) - x0) / a.temperature + lp0);
    }
    __syncthreads();
  }
}

template <class K>
int grid_for(K kernel, int64_t items, int sm_count) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) != cudaSuccess ||
      per_sm < 1) {
    cudaGetLastError();
    per_sm = 1;
  }
  const int64_t slots = int64_t(sm_count > 0 ? sm_count : 1) * per_sm;
  return int(items < slots ? items : slots);
}

// -------------------------------------------------------------------------------------------
// log_softmax
// -------------------------------------------------------------------------------------------

template <class Out, int N>
__device__ __forceinline__ void store_out(Out* dst, int64_t stride, const Out (&y)[N]) {
  constexpr int kBytes = N * int(sizeof(Out));
  const uintptr_t addr = reinterpret_cast<uintptr_t>(dst);
  if (stride == 1 && kBytes % 16 == 0 && addr % 16 == 0) {
    const uint4* src = reinterpret_cast<const uint4*>(y);
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i) __stcs(reinterpret_cast<uint4*>(dst) + i, src[i]);
  } else if (stride == 1 && kBytes == 8 && addr % 8 == 0) {
    __stcs(reinterpret_cast<uint2*>(dst), *reinterpret_cast<const uint2*>(y));
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i * stride] = y[i];
  }
}

// Writes log_softmax over elements [begin, end) of one row, given its finished state. The
// vectors are visited in reverse, so the most recently read (likeliest still in L2) come first.
template <class In, class Out>
__device__ void write_piece(const In* src, int64_t in_stride, Out* dst, int64_t out_stride,
                            int64_t begin, int64_t end, const SoftmaxState& st, double inv_t) {
  using C = typename Scalar<In>::Compute;
  constexpr int kVec = 16 / int(sizeof(In));
  const int t = threadIdx.x;
  if (!st.valid()) {
    const Out nan = Scalar<Out>::store(InvalidRow::value<C>());
    for (int64_t j = begin + t; j < end; j += kThreads) dst[j * out_stride] = nan;
    return;
  }
  const RowSoftmax rs = RowSoftmax::from(st, inv_t);
  auto value = [&](C x) { return Scalar<Out>::store(rs.logprob_in<C>(x)); };
  const uintptr_t addr = reinterpret_cast<uintptr_t>(src + begin);
  if (in_stride != 1 || addr % sizeof(In) != 0) {
    for (int64_t j = begin + t; j < end; j += kThreads)
      dst[j * out_stride] = value(load_elem(src + j * in_stride));
    return;
  }
  const VectorSplit split = split_for_vectors<In>(addr, begin, end);
  const int64_t head = split.head, n_vec = split.n_vec, body_end = split.body_end;
  if (t < head) dst[(begin + t) * out_stride] = value(load_elem(src + begin + t));
  if (body_end + t < end) dst[(body_end + t) * out_stride] = value(load_elem(src + body_end + t));
  const In* vsrc = src + begin + head;
  for (int64_t q = n_vec - 1 - t; q >= 0; q -= kThreads) {
    C x[kVec];
    load_vec16<In, true>(vsrc + q * kVec, x);
    Out y[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) y[e] = value(x[e]);
    store_out<Out, kVec>(dst + (begin + head + q * kVec) * out_stride, out_stride, y);
  }
}

struct SoftmaxPlan {
  int64_t splits, items;
};

SoftmaxPlan plan_softmax(const LogSoftmaxArgs& a, int sm_count) {
  TokenStatsArgs t;
  t.logits = a.logits;
  const TokenPlan p = plan_token(t, sm_count);
  return SoftmaxPlan{p.splits, p.items};
}

// Whole rows: statistics pass, then the write pass, by the same block.
template <class In, class Out>
__global__ void __launch_bounds__(kThreads, 2) LogSoftmaxRowKernel(LogSoftmaxArgs a) {
  using C = typename Scalar<In>::Compute;
  using S = Scan<In, false, false, false, false, false>;
  __shared__ typename S::Shared sm;
  __shared__ PieceHeader s_total;
  const double scale_d = kLog2e / a.temperature;
  const In* in = static_cast<const In*>(a.logits.data);
  Out* out = static_cast<Out*>(a.out.data);
  for (int64_t row = blockIdx.x; row < a.logits.n_rows; row += gridDim.x) {
    const In* src = in + a.logits.row_offset(row);
    S s;
    s.reset(C(scale_d), C(0), 1, C(0), kEmptyId);
    s.run(src, a.logits.col_stride, 0, a.logits.vocab, sm);
    s.finish(sm, scale_d, &s_total);
    __syncthreads();
    const SoftmaxState st = state_of(s_total);
    write_piece<In, Out>(src, a.logits.col_stride, out + a.out.row_offset(row), a.out.col_stride, 0,
                         a.logits.vocab, st, 1.0 / a.temperature);
    __syncthreads();
  }
}

// Few rows, first kernel: the statistics of each piece into the workspace.
template <class In>
__global__ void __launch_bounds__(kThreads, 2)
    LogSoftmaxPieceStatsKernel(LogSoftmaxArgs a, SoftmaxPlan plan, PieceHeader* d_headers) {
  using C = typename Scalar<In>::Compute;
  using S = Scan<In, false, false, false, false, false>;
  __shared__ typename S::Shared sm;
  __shared__ PieceHeader s_total;
  const double scale_d = kLog2e / a.temperature;
  const In* in = static_cast<const In*>(a.logits.data);
  const int64_t v = a.logits.vocab;
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t row = item / plan.splits, piece = item % plan.splits;
    S s;
    s.reset(C(scale_d), C(0), 1, C(0), kEmptyId);
    s.run(in + a.logits.row_offset(row), a.logits.col_stride, v * piece / plan.splits,
          v * (piece + 1) / plan.splits, sm);
    s.finish(sm, scale_d, &s_total);
    if (threadIdx.x == 0) d_headers[item] = s_total;
    __syncthreads();
  }
}

// Few rows, second kernel: each block merges its row's pieces (in piece order: every block of a
// row gets the same bits) and writes its own piece.
template <class In, class Out>
__global__ void __launch_bounds__(kThreads, 1)
    LogSoftmaxPieceWriteKernel(LogSoftmaxArgs a, SoftmaxPlan plan, const PieceHeader* d_headers) {
  __shared__ PieceHeader s_total;
  const double scale_d = kLog2e / a.temperature;
  const In* in = static_cast<const In*>(a.logits.data);
  Out* out = static_cast<Out*>(a.out.data);
  const int64_t v = a.logits.vocab;
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t row = item / plan.splits, piece = item % plan.splits;
    if (threadIdx.x == 0)
      s_total = merge_pieces(d_headers + row * plan.splits, plan.splits, scale_d, false, 0.0);
    __syncthreads();
    const SoftmaxState st = state_of(s_total);
    write_piece<In, Out>(in + a.logits.row_offset(row), a.logits.col_stride,
                         out + a.out.row_offset(row), a.out.col_stride, v * piece / plan.splits,
                         v * (piece + 1) / plan.splits, st, 1.0 / a.temperature);
    __syncthreads();
  }
}

}  // namespace

size_t TokenStatsWorkspace(const TokenStatsArgs& args, int sm_count) {
  const TokenPlan p = plan_token(args, sm_count);
  if (p.splits == 1) return 0;
  return args.logits.dtype == DType::kFloat64 ? WorkspaceLayout<double>::bytes(p.items, p.k_list)
                                              : WorkspaceLayout<float>::bytes(p.items, p.k_list);
}

cudaError_t TokenStats(const TokenStatsArgs& args, void* d_workspace, size_t workspace_bytes,
                       int sm_count, cudaStream_t stream) {
  const int64_t n = args.logits.n_rows, v = args.logits.vocab;
  if (n == 0) return cudaSuccess;
  if (v < 1 || v >= int64_t(kEmptyId) || args.top_k < 0 || args.top_k > v ||
      !(args.temperature > 0.0))
    return cudaErrorInvalidValue;
  if (args.top_k > kMaxK && (args.topk_ids == nullptr || args.topk_logprobs == nullptr))
    return cudaErrorInvalidValue;  // further passes read what the first one wrote
  const TokenPlan plan = plan_token(args, sm_count);
  if (workspace_bytes < TokenStatsWorkspace(args, sm_count)) return cudaErrorInvalidValue;
  return visit_dtype(args.logits.dtype, cudaErrorInvalidValue, [&](auto tag) -> cudaError_t {
    using In = decltype(tag);
    auto launch = [&](auto kernel) {
      kernel<<<grid_for(kernel, plan.items, sm_count), kThreads, 0, stream>>>(args, plan,
                                                                              d_workspace);
    };
    // The varentropy's moments only when asked for: the default kernels stay as they were.
    const bool rank = args.targets != nullptr, moments = args.varentropy != nullptr;
    if (rank && moments) {
      launch(TokenStatsKernel<In, true, true>);
    } else if (rank) {
      launch(TokenStatsKernel<In, true, false>);
    } else if (moments) {
      launch(TokenStatsKernel<In, false, true>);
    } else {
      launch(TokenStatsKernel<In, false, false>);
    }
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess || plan.splits == 1) {
      if (err != cudaSuccess) return err;
    } else {
      auto m = TokenStatsMergeKernel<In>;
      m<<<grid_for(m, n, sm_count), kThreads, 0, stream>>>(args, plan, d_workspace);
      err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    for (int64_t pass = 1; pass < plan.passes; ++pass) {
      auto p = TopKPassKernel<In>;
      p<<<grid_for(p, n, sm_count), kThreads, 0, stream>>>(args, pass);
      err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
  });
}

size_t LogSoftmaxWorkspace(const LogSoftmaxArgs& args, int sm_count) {
  const SoftmaxPlan p = plan_softmax(args, sm_count);
  return p.splits == 1 ? 0 : size_t(p.items) * sizeof(PieceHeader);
}

cudaError_t LogSoftmax(const LogSoftmaxArgs& args, void* d_workspace, size_t workspace_bytes,
                       int sm_count, cudaStream_t stream) {
  const int64_t n = args.logits.n_rows, v = args.logits.vocab;
  if (n == 0) return cudaSuccess;
  if (v < 1 || !(args.temperature > 0.0) || args.out.n_rows != n || args.out.vocab != v)
    return cudaErrorInvalidValue;
  const SoftmaxPlan plan = plan_softmax(args, sm_count);
  if (workspace_bytes < LogSoftmaxWorkspace(args, sm_count)) return cudaErrorInvalidValue;
  return visit_dtype(args.logits.dtype, cudaErrorInvalidValue, [&](auto in_tag) -> cudaError_t {
    return visit_dtype(args.out.dtype, cudaErrorInvalidValue, [&](auto out_tag) -> cudaError_t {
      using In = decltype(in_tag);
      using Out = decltype(out_tag);
      if (plan.splits == 1) {
        auto k = LogSoftmaxRowKernel<In, Out>;
        k<<<grid_for(k, n, sm_count), kThreads, 0, stream>>>(args);
        return cudaGetLastError();
      }
      PieceHeader* headers = static_cast<PieceHeader*>(d_workspace);
      auto k1 = LogSoftmaxPieceStatsKernel<In>;
      k1<<<grid_for(k1, plan.items, sm_count), kThreads, 0, stream>>>(args, plan, headers);
      cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
      auto k2 = LogSoftmaxPieceWriteKernel<In, Out>;
      k2<<<grid_for(k2, plan.items, sm_count), kThreads, 0, stream>>>(args, plan, headers);
      return cudaGetLastError();
    });
  });
}

}  // namespace cuda
}  // namespace logcal
