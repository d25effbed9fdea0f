// CPU kernels: sequence_stats (per-sequence sum, mean, min, count, perplexity of token
// log-probabilities) and choice_confidence (softmax over the options of multiple-choice
// questions).
//
// sequence_stats is bound by memory bandwidth. Its results must not depend on the number of
// threads, so the summation order is fixed by the data alone: a sequence is cut into blocks of
// kBlock tokens, each block is summed in kLanes interleaved double accumulators combined by a
// fixed tree, and the block sums are added left to right. Threads only decide who computes
// which block: short sequences are shared out whole (balanced by token count), sequences of at
// least kLong tokens are split into their blocks across all threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "logcal/cpu_sequence.h"
#include "logcal/half.h"
#include "parallel.h"

namespace logcal {
namespace cpu {
namespace {

// Part of the definition of each sum's rounding: changing either changes result bits.
constexpr int64_t kBlock = 8192;
constexpr int kLanes = 8;
// Sequences at least this long are split across threads block by block.
constexpr int64_t kLong = 8 * kBlock;
// Per-sequence overhead in token equivalents, to balance many short sequences.
constexpr int64_t kSeqCost = 16;
// Fewest tokens worth a thread of their own.
constexpr int64_t kMinWork = 1 << 15;

// Sum, min, NaN flag and count over n tokens (every `stride`-th element from x; mask entries
// every `mask_stride`-th from m when kMasked). kContiguous only lets the compiler vectorise:
// both variants add in the same order and give the same bits.
template <class In, bool kMasked, bool kContiguous>
SeqPartial reduce_block(const In* x, int64_t stride, const uint8_t* m, int64_t mask_stride,
                        int64_t n) {
  using C = typename Scalar<In>::Compute;
  const int64_t xs = kContiguous ? 1 : stride;
  const int64_t ms = kContiguous ? 1 : mask_stride;
  double acc[kLanes];
  C mn[kLanes];
  int32_t bad[kLanes];
  int64_t cnt[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    acc[j] = 0.0;
    mn[j] = std::numeric_limits<C>::infinity();
    bad[j] = 0;
    cnt[j] = 0;
  }
  auto step = [&](int j, int64_t i) __attribute__((always_inline)) {
    const C v = Scalar<In>::load(x[i * xs]);
    if constexpr (kMasked) {
      const bool keep = m[i * ms] != 0;
      acc[j] += keep ? double(v) : 0.0;
      mn[j] = (keep && v < mn[j]) ? v : mn[j];
      bad[j] |= int32_t(keep && v != v);
      cnt[j] += keep;
    } else {
      acc[j] += double(v);
      mn[j] = v < mn[j] ? v : mn[j];
      bad[j] |= int32_t(v != v);
    }
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) step(j, i + j);
  for (int j = 0; i + j < n; ++j) step(j, i + j);

  SeqPartial p;
  p.sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  double lo = std::numeric_limits<double>::infinity();
  int32_t any_bad = 0;
  int64_t count = 0;
  for (int j = 0; j < kLanes; ++j) {
    lo = double(mn[j]) < lo ? double(mn[j]) : lo;
    any_bad |= bad[j];
    count += cnt[j];
  }
  p.min = lo;
  p.nan = any_bad != 0;
  p.count = kMasked ? count : n;
  return p;
}

// The unmasked contiguous float32 and float64 blocks, written with explicit 16-byte vectors
// (the baseline x86-64 width; the loop is memory bound from there). Lane j of the vectors is
// lane j of reduce_block, and the tail and the final combination are reduce_block's, so the
// bits are the same as the generic path's.
typedef float V4f __attribute__((vector_size(16)));
typedef double V2d __attribute__((vector_size(16)));

// float32 lanes 0-1 and 2-3 of v as doubles. GCC scalarises __builtin_convertvector of half
// vectors, so on x86 this is spelled with the SSE2 intrinsics.
inline void widen(V4f v, V2d& lo, V2d& hi) {
#if defined(__SSE2__)
  const __m128 x = __m128(v);
  lo = V2d(_mm_cvtps_pd(x));
  hi = V2d(_mm_cvtps_pd(_mm_movehl_ps(x, x)));
#else
  lo = V2d{double(v[0]), double(v[1])};
  hi = V2d{double(v[2]), double(v[3])};
#endif
}

template <class T>
inline T load_vec(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Finishes a block from per-lane state (the vector loop's, spilled): tail elements into their
// lanes, then the fixed combination. The vector loops look for NaN only through the sum (a NaN
// anywhere makes it NaN); a NaN sum, rare, sends the block to a scan that tells a NaN from
// inf + (-inf).
template <class C>
SeqPartial finish_lanes(double* acc, C* mn, const C* x, int64_t i, int64_t n) {
  for (int j = 0; i + j < n; ++j) {
    const C v = x[i + j];
    acc[j] += double(v);
    mn[j] = v < mn[j] ? v : mn[j];
  }
  SeqPartial p;
  p.sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  double lo = std::numeric_limits<double>::infinity();
  for (int j = 0; j < kLanes; ++j) lo = double(mn[j]) < lo ? double(mn[j]) : lo;
  p.min = lo;
  p.nan = false;
  if (p.sum != p.sum)
    for (int64_t k = 0; k < n; ++k) p.nan = p.nan || x[k] != x[k];
  p.count = n;
  return p;
}

template <>
SeqPartial reduce_block<float, false, true>(const float* x, int64_t, const uint8_t*, int64_t,
                                            int64_t n) {
  static_assert(kLanes == 8, "the vector loop holds 8 lanes");
  const float inf = std::numeric_limits<float>::infinity();
  V2d a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
  V4f m0 = {inf, inf, inf, inf}, m1 = m0;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const V4f lo = load_vec<V4f>(x + i);
    const V4f hi = load_vec<V4f>(x + i + 4);
    V2d w0, w1, w2, w3;
    widen(lo, w0, w1);
    widen(hi, w2, w3);
    a0 += w0;
    a1 += w1;
    a2 += w2;
    a3 += w3;
    m0 = lo < m0 ? lo : m0;
    m1 = hi < m1 ? hi : m1;
  }
  double acc[8] = {a0[0], a0[1], a1[0], a1[1], a2[0], a2[1], a3[0], a3[1]};
  float mn[8] = {m0[0], m0[1], m0[2], m0[3], m1[0], m1[1], m1[2], m1[3]};
  return finish_lanes(acc, mn, x, i, n);
}

template <>
SeqPartial reduce_block<double, false, true>(const double* x, int64_t, const uint8_t*, int64_t,
                                             int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  V2d a[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
  V2d m[4] = {{inf, inf}, {inf, inf}, {inf, inf}, {inf, inf}};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int v = 0; v < 4; ++v) {
      const V2d xv = load_vec<V2d>(x + i + 2 * v);
      a[v] += xv;
      m[v] = xv < m[v] ? xv : m[v];
    }
  }
  double acc[8];
  double mn[8];
  for (int v = 0; v < 4; ++v)
    for (int l = 0; l < 2; ++l) {
      acc[2 * v + l] = a[v][l];
      mn[2 * v + l] = m[v][l];
    }
  return finish_lanes(acc, mn, x, i, n);
}


// The masked contiguous blocks (padded layout with a mask), the same way: a masked-out element
// enters the sum as +0.0 and the minimum as +inf, which is what reduce_block's selects do.
typedef int32_t V4i __attribute__((vector_size(16)));
typedef int64_t V2l __attribute__((vector_size(16)));

// Lane masks of the mask bytes m[0, 8): all ones where counted; lanes 0-3 and 4-7.
inline void mask_lanes(const uint8_t* m, V4i& lo, V4i& hi) {
#if defined(__SSE2__)
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
  const __m128i zero = _mm_cmpeq_epi8(b, _mm_setzero_si128());
  const __m128i keep = _mm_xor_si128(zero, _mm_cmpeq_epi8(zero, zero));
  const __m128i k16 = _mm_unpacklo_epi8(keep, keep);
  lo = V4i(_mm_unpacklo_epi16(k16, k16));
  hi = V4i(_mm_unpackhi_epi16(k16, k16));
#else
  for (int j = 0; j < 4; ++j) {
    lo[j] = m[j] ? -1 : 0;
    hi[j] = m[4 + j] ? -1 : 0;
  }
#endif
}

// 32-bit lane masks widened to 64-bit lanes: lanes 0-1 and 2-3 of k.
inline void widen_mask(V4i k, V2l& lo, V2l& hi) {
#if defined(__SSE2__)
  lo = V2l(_mm_unpacklo_epi32(__m128i(k), __m128i(k)));
  hi = V2l(_mm_unpackhi_epi32(__m128i(k), __m128i(k)));
#else
  lo = V2l{k[0], k[1]};
  hi = V2l{k[2], k[3]};
#endif
}

template <class C>
SeqPartial finish_lanes_masked(double* acc, C* mn, int64_t count, const C* x, const uint8_t* m,
                               int64_t i, int64_t n) {
  for (int j = 0; i + j < n; ++j) {
    const C v = x[i + j];
    const bool keep = m[i + j] != 0;
    acc[j] += keep ? double(v) : 0.0;
    mn[j] = (keep && v < mn[j]) ? v : mn[j];
    count += keep;
  }
  SeqPartial p;
  p.sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  double lo = std::numeric_limits<double>::infinity();
  for (int j = 0; j < kLanes; ++j) lo = double(mn[j]) < lo ? double(mn[j]) : lo;
  p.min = lo;
  p.nan = false;
  if (p.sum != p.sum)
    for (int64_t k = 0; k < n; ++k) p.nan = p.nan || (m[k] != 0 && x[k] != x[k]);
  p.count = count;
  return p;
}

template <>
SeqPartial reduce_block<float, true, true>(const float* x, int64_t, const uint8_t* m, int64_t,
                                           int64_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  const V4f inf4 = {inf, inf, inf, inf};
  V2d a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
  V4f m0 = inf4, m1 = inf4;
  V4i c0 = {0, 0, 0, 0}, c1 = c0;  // per-lane counts (a block is far below 2^31)
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    V4i k0, k1;
    mask_lanes(m + i, k0, k1);
    const V4i lo = load_vec<V4i>(x + i);
    const V4i hi = load_vec<V4i>(x + i + 4);
    V2d w0, w1, w2, w3;
    widen(V4f(lo & k0), w0, w1);
    widen(V4f(hi & k1), w2, w3);
    a0 += w0;
    a1 += w1;
    a2 += w2;
    a3 += w3;
    const V4f v0 = V4f((lo & k0) | (V4i(inf4) & ~k0));
    const V4f v1 = V4f((hi & k1) | (V4i(inf4) & ~k1));
    m0 = v0 < m0 ? v0 : m0;
    m1 = v1 < m1 ? v1 : m1;
    c0 -= k0;
    c1 -= k1;
  }
  double acc[8] = {a0[0], a0[1], a1[0], a1[1], a2[0], a2[1], a3[0], a3[1]};
  float mn[8] = {m0[0], m0[1], m0[2], m0[3], m1[0], m1[1], m1[2], m1[3]};
  const int64_t count = int64_t(c0[0]) + c0[1] + c0[2] + c0[3] + c1[0] + c1[1] + c1[2] + c1[3];
  return finish_lanes_masked(acc, mn, count, x, m, i, n);
}

template <>
SeqPartial reduce_block<double, true, true>(const double* x, int64_t, const uint8_t* m, int64_t,
                                            int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  const V2d inf2 = {inf, inf};
  V2d a[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
  V2d mv[4] = {inf2, inf2, inf2, inf2};
  V4i c0 = {0, 0, 0, 0}, c1 = c0;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    V4i k0, k1;
    mask_lanes(m + i, k0, k1);
    c0 -= k0;
    c1 -= k1;
    V2l k[4];
    widen_mask(k0, k[0], k[1]);
    widen_mask(k1, k[2], k[3]);
    for (int v = 0; v < 4; ++v) {
      const V2l xv = load_vec<V2l>(x + i + 2 * v);
      a[v] += V2d(xv & k[v]);
      const V2d mval = V2d((xv & k[v]) | (V2l(inf2) & ~k[v]));
      mv[v] = mval < mv[v] ? mval : mv[v];
    }
  }
  double acc[8];
  double mn[8];
  for (int v = 0; v < 4; ++v)
    for (int l = 0; l < 2; ++l) {
      acc[2 * v + l] = a[v][l];
      mn[2 * v + l] = mv[v][l];
    }
  const int64_t count = int64_t(c0[0]) + c0[1] + c0[2] + c0[3] + c1[0] + c1[1] + c1[2] + c1[3];
  return finish_lanes_masked(acc, mn, count, x, m, i, n);
}

template <class In>
struct FlatSource {
  const In* data;
  int64_t stride;
  const int64_t* offsets;

  int64_t size(int64_t s) const { return offsets[s + 1] - offsets[s]; }
  SeqPartial piece(int64_t s, int64_t lo, int64_t hi) const {
    const In* p = data + (offsets[s] + lo) * stride;
    return stride == 1 ? reduce_block<In, false, true>(p, 1, nullptr, 1, hi - lo)
                       : reduce_block<In, false, false>(p, stride, nullptr, 1, hi - lo);
  }
};

template <class In>
struct PaddedSource {
  const In* data;
  int64_t length, row_stride, col_stride;
  const uint8_t* mask;
  int64_t mask_row_stride, mask_col_stride;

  int64_t size(int64_t) const { return length; }
  SeqPartial piece(int64_t s, int64_t lo, int64_t hi) const {
    const In* p = data + s * row_stride + lo * col_stride;
    if (!mask) {
      return col_stride == 1 ? reduce_block<In, false, true>(p, 1, nullptr, 1, hi - lo)
                             : reduce_block<In, false, false>(p, col_stride, nullptr, 1, hi - lo);
    }
    const uint8_t* m = mask + s * mask_row_stride + lo * mask_col_stride;
    return col_stride == 1 && mask_col_stride == 1
               ? reduce_block<In, true, true>(p, 1, m, 1, hi - lo)
               : reduce_block<In, true, false>(p, col_stride, m, mask_col_stride, hi - lo);
  }
};

// Blocks of a sequence, combined left to right from the identity: the one order every path uses.
template <class Src>
SeqPartial reduce_sequence(const Src& src, int64_t s) {
  const int64_t len = src.size(s);
  SeqPartial acc;
  for (int64_t lo = 0; lo < len; lo += kBlock)
    acc = seq_merge(acc, src.piece(s, lo, std::min(lo + kBlock, len)));
  return acc;
}

template <class Out>
struct SeqWriter {
  Out *sum, *mean, *min, *perplexity;
  int64_t* count;

  void operator()(int64_t s, const SeqPartial& p) const {
    const SeqResult r = seq_finish(p);
    if (sum) sum[s] = Out(r.sum);
    if (mean) mean[s] = Out(r.mean);
    if (min) min[s] = Out(r.min);
    if (perplexity) perplexity[s] = Out(r.perplexity);
    if (count) count[s] = r.count;
  }
};

// `boundary(p, P)`: first sequence of piece p of P (boundary(0) = 0, boundary(P) = n_seq).
template <class Src, class Out, class Boundary>
Status run_sequences(const Src& src, int64_t n_seq, int64_t total_work, const Boundary& boundary,
                     const SeqWriter<Out>& write) {
  const int64_t n_pieces =
      std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), total_work / kMinWork));
  // Phase 1: sequences shorter than kLong, whole, one piece per thread.
  Status st = parallel_for(n_pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t s1 = boundary(p + 1, n_pieces);
      for (int64_t s = boundary(p, n_pieces); s < s1; ++s)
        if (src.size(s) < kLong) write(s, reduce_sequence(src, s));
    }
  });
  if (st != Status::kOk) return st;

  // Phase 2: long sequences, block by block across the threads, then folded in order.
  std::vector<int64_t> longs, first_block;
  int64_t n_blocks = 0;
  for (int64_t s = 0; s < n_seq; ++s) {
    const int64_t len = src.size(s);
    if (len >= kLong) {
      longs.push_back(s);
      first_block.push_back(n_blocks);
      n_blocks += (len + kBlock - 1) / kBlock;
    }
  }
  if (longs.empty()) return Status::kOk;
  first_block.push_back(n_blocks);
  std::vector<SeqPartial> partials(static_cast<size_t>(n_blocks));
  st = parallel_for(n_blocks, 4, [&](int64_t b, int64_t e) {
    size_t li = size_t(std::upper_bound(first_block.begin(), first_block.end(), b) -
                       first_block.begin() - 1);
    for (int64_t blk = b; blk < e; ++blk) {
      while (first_block[li + 1] <= blk) ++li;
      const int64_t s = longs[li];
      const int64_t lo = (blk - first_block[li]) * kBlock;
      partials[size_t(blk)] = src.piece(s, lo, std::min(lo + kBlock, src.size(s)));
    }
  });
  if (st != Status::kOk) return st;
  for (size_t li = 0; li < longs.size(); ++li) {
    SeqPartial acc;
    for (int64_t blk = first_block[li]; blk < first_block[li + 1]; ++blk)
      acc = seq_merge(acc, partials[size_t(blk)]);
    write(longs[li], acc);
  }
  return Status::kOk;
}

template <class In>
Status sequence_stats_typed(const SequenceStatsArgs& a) {
  using Out = typename Scalar<In>::Compute;
  const SeqWriter<Out> write{static_cast<Out*>(a.sum), static_cast<Out*>(a.mean),
                             static_cast<Out*>(a.min), static_cast<Out*>(a.perplexity), a.count};
  const In* data = static_cast<const In*>(a.data);
  if (a.offsets) {
    const FlatSource<In> src{data, a.stride, a.offsets};
    const int64_t* off = a.offsets;
    const int64_t n = a.n_seq;
    // Cost of the sequences before s: their tokens plus a per-sequence overhead (monotone in s).
    auto cost = [&](int64_t s) { return (off[s] - off[0]) + kSeqCost * s; };
    const int64_t total = cost(n);
    auto boundary = [&](int64_t p, int64_t n_pieces) -> int64_t {
      if (p >= n_pieces) return n;
      const int64_t target = int64_t((__int128)total * p / n_pieces);
      int64_t lo = 0, hi = n;  // first s in [0, n] with cost(s) >= target
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (cost(mid) < target) lo = mid + 1; else hi = mid;
      }
      return lo;
    };
    return run_sequences(src, n, total, boundary, write);
  }
  const PaddedSource<In> src{data, a.length, a.row_stride, a.col_stride,
                             a.mask, a.mask_row_stride, a.mask_col_stride};
  const int64_t n = a.n_seq;
  auto boundary = [&](int64_t p, int64_t n_pieces) -> int64_t {
    return int64_t((__int128)n * p / n_pieces);
  };
  return run_sequences(src, n, n * (a.length + kSeqCost), boundary, write);
}

template <class In>
Status choice_typed(const ChoiceArgs& a) {
  using Out = typename Scalar<In>::Compute;
  const In* lp = static_cast<const In*>(a.logprobs);
  Out* probs = static_cast<Out*>(a.probs);
  Out* conf = static_cast<Out*>(a.confidence);
  const int64_t n_c = a.n_c;
  return parallel_for(a.n_q, std::max<int64_t>(1, 4096 / std::max<int64_t>(n_c, 1)),
                      [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      const In* row = lp + q * a.q_stride;
      const double* len = a.lengths ? a.lengths + q * n_c : nullptr;
      Out* prow = probs ? probs + q * n_c : nullptr;
      auto score = [&](int64_t c) {
        return choice_score(double(Scalar<In>::load(row[c * a.c_stride])), len, c);
      };
      auto put = [&](int64_t c, double p) {
        if (prow) prow[c] = Out(p);
      };
      double confidence;
      const int64_t pred = choice_softmax(n_c, score, put, &confidence);
      if (a.pred) a.pred[q] = pred;
      if (conf) conf[q] = Out(confidence);
      if (a.correct) a.correct[q] = uint8_t(pred >= 0 && a.labels && pred == a.labels[q]);
    }
  });
}

}  // namespace

Status sequence_stats(const SequenceStatsArgs& args) {
  if (args.n_seq < 0 || (!args.offsets && args.length < 0)) return Status::kInvalidArgument;
  try {  // the long-sequence bookkeeping allocates
    switch (args.dtype) {
      case DType::kFloat16: return sequence_stats_typed<Float16>(args);
      case DType::kBFloat16: return sequence_stats_typed<BFloat16>(args);
      case DType::kFloat32: return sequence_stats_typed<float>(args);
      case DType::kFloat64: return sequence_stats_typed<double>(args);
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  } catch (...) {
    return Status::kInternal;
  }
  return Status::kInvalidArgument;
}

Status choice_confidence(const ChoiceArgs& args) {
  if (args.n_q < 0 || args.n_c < 0 || (args.correct && !args.labels))
    return Status::kInvalidArgument;
  switch (args.dtype) {
    case DType::kFloat16: return choice_typed<Float16>(args);
    case DType::kBFloat16: return choice_typed<BFloat16>(args);
    case DType::kFloat32: return choice_typed<float>(args);
    case DType::kFloat64: return choice_typed<double>(args);
  }
  return Status::kInvalidArgument;
}

}  // namespace cpu
}  // namespace logcal
