// The CPU token kernels: token_stats and log_softmax over rows of logits.
//
// This file is compiled once per instruction-set level, by token_kernels_{baseline,avx2,
// avx512}.cpp, each of which defines LOGCAL_ISA_NAMESPACE first. Everything here lives in that
// namespace, so the three copies never meet at link time; dispatch.cpp picks one at run time.
//
// One pass over each row, in chunks that stay in L1:
//   pass A over the chunk: maximum, NaN check, rank of the target, top-k candidates;
//   pass B over the same (cached) chunk: sum of 2^t and sum of 2^t * t relative to the running
//   maximum, which moves at most once per chunk (one scalar rescale, never one per element);
//   pass C, only for the varentropy: the sums of 2^t (t - c) and 2^t (t - c)^2 about the mean c
//   of t so far, the chunk's weights 2^t kept from pass B (core/softmax_state.h says why centred).
// Rows are spread over threads; when there are fewer rows than threads, each row is split into
// segments whose states merge exactly as two halves of a row do (SoftmaxState::merge).
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including token_kernels_impl.h"
#endif

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "isa_local.h"
#include "logcal/core/half.h"
#include "logcal/core/softmax_state.h"
#include "logcal/core/token_row.h"
#include "logcal/core/topk.h"
#include "logcal/token_args.h"
#include "parallel.h"
#include "simd.h"

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace {

constexpr int64_t kChunk = 2048;  // elements per chunk: 8 KB of float32, comfortably in L1
// Up to this k the top-k list is kept while streaming (sorted insertion of rare candidates);
// above it, a selection pass over the row is cheaper than insertions into a long list.
constexpr int64_t kStreamingTopKMax = 128;
// Float partial sums are handed to double lanes every this many elements (see pass B).
constexpr int64_t kFlushElements = 128;
template <class C>
constexpr int64_t kFlushVectors = std::max<int64_t>(2, kFlushElements / simd::Vec<C>::kLanes);
// A thread is given at least this many logits (about 0.1 ms of work): waking a parked thread
// costs 10-30 us on a busy or virtualised machine, which smaller shares would not repay.
constexpr int64_t kMinElementsPerThread = 262144;
// Existing outputs at least this large are written with non-temporal stores (they would not
// stay cached, and skipping the read-for-ownership saves a third of the traffic).
constexpr int64_t kStreamingBytes = int64_t(32) << 20;
// Rows are split across threads only into pieces at least this long.
constexpr int64_t kMinSegment = 16384;

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Reads elements [begin, begin + len) of a row as the compute type C into `buf`, padded with
// -inf to a whole number of vectors (padding adds nothing to any statistic). Returns a pointer
// to the values: the row itself when it is already dense in C and needs no padding.
template <class In, class C>
const C* load_chunk(const In* row, int64_t col_stride, int64_t begin, int64_t len, C* buf) {
  constexpr int W = simd::Vec<C>::kLanes;
  if constexpr (std::is_same_v<In, C>) {
    if (col_stride == 1 && len % W == 0) return row + begin;
  }
  if (col_stride == 1) {
    const In* src = row + begin;
    for (int64_t i = 0; i < len; ++i) buf[i] = Scalar<In>::load(src[i]);
  } else {
    for (int64_t i = 0; i < len; ++i) buf[i] = Scalar<In>::load(row[(begin + i) * col_stride]);
  }
  for (int64_t i = len; i % W != 0; ++i) buf[i] = kNegInf<C>;
  return buf;
}

// What a scan of one segment of a row produces (its top-k list is kept by the caller).
struct SegmentResult {
  SoftmaxState state;
  int64_t n_greater = 0;  // elements with a logit strictly above the target's
};

// What the scan computes; all compile-time, so unused work costs nothing.
template <bool kEntropy_, bool kRank_, bool kTopK_, bool kVarentropy_ = false>
struct ScanOptions {
  static constexpr bool kEntropy = kEntropy_ || kVarentropy_;
  static constexpr bool kRank = kRank_;
  static constexpr bool kTopK = kTopK_;
  static constexpr bool kVarentropy = kVarentropy_;
};

// Scratch per thread: the chunk's values, and with the varentropy its weights 2^t.
template <class C>
constexpr int64_t kScanBuffer = kChunk + simd::Vec<C>::kLanes;

// Pass C over a chunk of n_vec vectors `x` with weights `e` (pass B's 2^t): merges the chunk's
// varentropy moments into st, before st.add(chunk_sum, chunk_tsum). Centred at the mean of t
// over the row so far, this chunk included, so each chunk's float sums hold the spread of t about
// that mean, not its distance from the maximum.
template <class C>
void add_chunk_moments(SoftmaxState& st, const C* x, const C* e, int64_t n_vec, double chunk_sum,
                       double chunk_tsum, C scale) {
  using VC = simd::V<C>;
  constexpr int W = simd::Vec<C>::kLanes;
  const MomentCentre<C> c = MomentCentre<C>::at(
      st.ref, (st.tsum + chunk_tsum) / (st.sum + chunk_sum), scale, kExp2Floor<C>);
  const VC raw_v = simd::broadcast(c.raw), scale_v = simd::broadcast(scale);
  const VC lo_v = simd::broadcast(c.lo), hi_v = simd::broadcast(c.hi);
  // t - c, clamped as t is: a masked (-inf) logit, or one whose difference overflows C, sits at
  // the floor; a rounding above the maximum at 0.
  auto centred = [&](int64_t v) {
    return simd::min<C>(simd::max<C>((simd::load(x + v * W) - raw_v) * scale_v, lo_v), hi_v);
  };
  simd::V<double> wide_tc[2] = {}, wide_qc[2] = {};
  for (int64_t v0 = 0; v0 < n_vec; v0 += kFlushVectors<C>) {
    const int64_t v1 = std::min(n_vec, v0 + kFlushVectors<C>);
    VC tc0 = {}, tc1 = {}, qc0 = {}, qc1 = {};
    int64_t v = v0;
    for (; v + 2 <= v1; v += 2) {
      const VC u0 = centred(v), u1 = centred(v + 1);
      const VC eu0 = simd::load(e + v * W) * u0, eu1 = simd::load(e + (v + 1) * W) * u1;
      tc0 += eu0;
      tc1 += eu1;
      qc0 += eu0 * u0;
      qc1 += eu1 * u1;
    }
    if (v < v1) {
      const VC u0 = centred(v);
      const VC eu0 = simd::load(e + v * W) * u0;
      tc0 += eu0;
      qc0 += eu0 * u0;
    }
    simd::add_widened(wide_tc[0], wide_tc[1], tc0 + tc1);
    simd::add_widened(wide_qc[0], wide_qc[1], qc0 + qc1);
  }
  st.moments.merge(
      SurprisalMoments::about(c.t, chunk_sum, simd::reduce_sum<double>(wide_tc[0] + wide_tc[1]),
                              simd::reduce_sum<double>(wide_qc[0] + wide_qc[1])),
      st.sum, chunk_sum);
}

// `buf` holds kScanBuffer<C> values, twice that with the varentropy.
template <class Opt, class In, class C>
SegmentResult scan_segment(const In* row, int64_t col_stride, int64_t begin, int64_t end,
                           C target_logit, double scale, TopKList<C>* topk, C* buf) {
  using VC = simd::V<C>;
  using Mask = typename simd::Vec<C>::Mask;
  constexpr int W = simd::Vec<C>::kLanes;
  SegmentResult result;
  SoftmaxState& st = result.state;

  // The first elements enter the top-k list unconditionally (even -inf ones, which matter when
  // k exceeds the number of finite logits); after that only those beating the threshold do.
  int64_t prologue_end = begin;
  C tau = kNegInf<C>;
  if constexpr (Opt::kTopK) {
    prologue_end = std::min(end, begin + (topk->capacity - topk->size));
    for (int64_t j = begin; j < prologue_end; ++j) {
      const C x = Scalar<In>::load(row[j * col_stride]);
      if (x == x) topk->offer(x, j);  // a NaN row has no top-k anyway
    }
    if (topk->full()) tau = topk->threshold();
  }
  const VC target_v = simd::broadcast(target_logit);
  const VC floor_v = simd::broadcast(kExp2Floor<C>);
  const VC scale_v = simd::broadcast(C(scale));

  for (int64_t chunk_begin = begin; chunk_begin < end; chunk_begin += kChunk) {
    const int64_t len = std::min(kChunk, end - chunk_begin);
    const int64_t n_vec = (len + W - 1) / W;
    const C* x = load_chunk(row, col_stride, chunk_begin, len, buf);

    // Pass A: maximum, NaN, rank and top-k candidates.
    VC vmax = simd::broadcast(kNegInf<C>);
    Mask nan_seen = {};
    Mask n_greater = {};
    VC tau_v = simd::broadcast(tau);
    for (int64_t v = 0; v < n_vec; ++v) {
      const VC xv = simd::load(x + v * W);
      vmax = simd::max<C>(vmax, xv);
      nan_seen |= (xv != xv);
      if constexpr (Opt::kRank) n_greater -= (xv > target_v);  // true is -1
      if constexpr (Opt::kTopK) {
        if (simd::any(xv > tau_v)) {  // rare once the list has warmed up
          const int64_t first = chunk_begin + v * W;
          for (int lane = 0; lane < W; ++lane) {
            const int64_t j = first + lane;
            if (xv[lane] > tau && j >= prologue_end && j < end) {
              topk->offer(xv[lane], j);
              if (topk->full()) tau = topk->threshold();
            }
          }
          tau_v = simd::broadcast(tau);
        }
      }
    }
    if (simd::any(nan_seen)) st.n_nan += 1;
    if constexpr (Opt::kRank) {
      for (int lane = 0; lane < W; ++lane) result.n_greater += n_greater[lane];
    }

    // Move the reference to the new maximum: once per chunk, one scalar rescale.
    const C chunk_max = simd::reduce_max<C>(vmax);
    if (chunk_max > st.ref) st.rebase<Opt::kVarentropy>(chunk_max, scale, double(C(scale)));
    if (!(st.ref > kNegInf<double>)) continue;  // only -inf so far: nothing to add

    // Pass B: sums of 2^t and 2^t * t over the chunk, now in L1. Two float accumulators each
    // hide the latency of the adds; every kFlushElements they are handed to double lanes, so
    // no float lane sums more than 16 terms (on the 4-lane baseline build; 4 with AVX-512)
    // and the result is as accurate at every instruction-set level.
    const VC ref_v = simd::broadcast(C(st.ref));
    C* const weights = buf + kScanBuffer<C>;  // pass B's 2^t, for pass C
    simd::V<double> wide_sum[2] = {}, wide_tsum[2] = {};
    for (int64_t v0 = 0; v0 < n_vec; v0 += kFlushVectors<C>) {
      const int64_t v1 = std::min(n_vec, v0 + kFlushVectors<C>);
      VC sum0 = {}, sum1 = {}, tsum0 = {}, tsum1 = {};
      int64_t v = v0;
      for (; v + 2 <= v1; v += 2) {
        const VC t0 = simd::max<C>((simd::load(x + v * W) - ref_v) * scale_v, floor_v);
        const VC t1 = simd::max<C>((simd::load(x + (v + 1) * W) - ref_v) * scale_v, floor_v);
        const VC e0 = simd::exp2(t0);
        const VC e1 = simd::exp2(t1);
        if constexpr (Opt::kVarentropy) {
          simd::store(weights + v * W, e0);
          simd::store(weights + (v + 1) * W, e1);
        }
        sum0 += e0;
        sum1 += e1;
        if constexpr (Opt::kEntropy) {
          tsum0 += e0 * t0;
          tsum1 += e1 * t1;
        }
      }
      if (v < v1) {
        const VC t0 = simd::max<C>((simd::load(x + v * W) - ref_v) * scale_v, floor_v);
        const VC e0 = simd::exp2(t0);
        if constexpr (Opt::kVarentropy) simd::store(weights + v * W, e0);
        sum0 += e0;
        if constexpr (Opt::kEntropy) tsum0 += e0 * t0;
      }
      simd::add_widened(wide_sum[0], wide_sum[1], sum0 + sum1);
      if constexpr (Opt::kEntropy) simd::add_widened(wide_tsum[0], wide_tsum[1], tsum0 + tsum1);
    }
    const double chunk_sum = simd::reduce_sum<double>(wide_sum[0] + wide_sum[1]);
    const double chunk_tsum =
        Opt::kEntropy ? simd::reduce_sum<double>(wide_tsum[0] + wide_tsum[1]) : 0.0;
    if constexpr (Opt::kVarentropy)
      add_chunk_moments<C>(st, x, weights, n_vec, chunk_sum, chunk_tsum, C(scale));
    st.add(chunk_sum, chunk_tsum);
  }
  return result;
}

// How a job over [n_rows, V] is cut into tasks: each row into `pieces` contiguous segments.
struct Split {
  int64_t pieces;

  static Split plan(int64_t n_rows, int64_t vocab) {
    const int64_t threads = get_num_threads();
    if (n_rows >= threads) return Split{1};
    const int64_t wanted = (threads + n_rows - 1) / n_rows;
    return Split{std::max<int64_t>(1, std::min(wanted, vocab / kMinSegment))};
  }
  // Rows per thread at least: enough logits to be worth a thread.
  static int64_t row_grain(int64_t vocab) {
    return std::max<int64_t>(1, kMinElementsPerThread / vocab);
  }
  int64_t begin(int64_t piece, int64_t vocab) const { return vocab * piece / pieces; }
  int64_t end(int64_t piece, int64_t vocab) const { return vocab * (piece + 1) / pieces; }
};

// ------------------------------------------------------------------------------------------
// token_stats
// ------------------------------------------------------------------------------------------

template <class In>
struct TokenStatsJob {
  using C = typename Scalar<In>::Compute;
  const TokenStatsArgs& a;
  const In* base;
  int64_t vocab, k, list_capacity;
  double scale, inv_temperature;
  bool streaming_topk;

  explicit TokenStatsJob(const TokenStatsArgs& args)
      : a(args),
        base(static_cast<const In*>(args.logits.data)),
        vocab(args.logits.vocab),
        k(args.top_k),
        scale(kLog2e / args.temperature),
        inv_temperature(1.0 / args.temperature) {
    streaming_topk = k <= kStreamingTopKMax;
    // The list always holds at least the top-1: that is the argmax.
    list_capacity = streaming_topk ? std::max<int64_t>(k, 1) : 1;
  }

  const In* row_ptr(int64_t row) const { return base + a.logits.row_offset(row); }

  bool has_target(int64_t row) const {
    return a.targets != nullptr && a.targets[row] != a.ignore_index;
  }
  C target_logit(int64_t row) const {
    return has_target(row) ? Scalar<In>::load(row_ptr(row)[a.targets[row] * a.logits.col_stride])
                           : C(0);
  }

  template <class Opt>
  SegmentResult scan(int64_t row, int64_t begin, int64_t end, TopKList<C>* list, C* buf) const {
    return scan_segment<Opt>(row_ptr(row), a.logits.col_stride, begin, end, target_logit(row),
                             scale, list, buf);
  }

  SegmentResult scan(int64_t row, int64_t begin, int64_t end, TopKList<C>* list, C* buf) const {
    // The statistics are always wanted; rank only with targets (top-k always: it gives argmax);
    // the varentropy's moments only when asked for.
    if (a.varentropy != nullptr) {
      if (a.targets != nullptr)
        return scan<ScanOptions<true, true, true, true>>(row, begin, end, list, buf);
      return scan<ScanOptions<true, false, true, true>>(row, begin, end, list, buf);
    }
    if (a.targets != nullptr)
      return scan<ScanOptions<true, true, true>>(row, begin, end, list, buf);
    return scan<ScanOptions<true, false, true>>(row, begin, end, list, buf);
  }

  // Scratch values per thread for scan (pass C's weights too with the varentropy).
  int64_t buffer_size() const { return kScanBuffer<C> * (a.varentropy != nullptr ? 2 : 1); }

  // Top-k for large k: the k best of the whole row (valid rows have no NaN) by selection,
  // linear in V, then a sort of those k alone -- not a partial sort of all V, whose heap costs
  // log k per element. For float rows the order (larger value, then lower id) is one 64-bit
  // integer key per entry (the value's order-preserving bits, then the id), which selects and
  // sorts far faster than (value, id) pairs. Buffers are per thread, reused row to row.
  const std::pair<C, int64_t>* select_topk(int64_t row) const {
    thread_local Vector<std::pair<C, int64_t>> best;
    const In* p = row_ptr(row);
    const int64_t cs = a.logits.col_stride;
    if constexpr (std::is_same_v<C, float>) {
      if (vocab <= int64_t(UINT32_MAX)) {
        thread_local Vector<uint64_t> keys;
        keys.resize(static_cast<size_t>(vocab));
        for (int64_t j = 0; j < vocab; ++j) {
          // +0.0f folds -0 into +0 (equal values tie on the id); then the bits, flipped so that
          // a larger float is a smaller key.
          uint32_t u = float_to_bits(Scalar<In>::load(p[j * cs]) + 0.0f);
          u ^= (u >> 31) ? 0xffffffffu : 0x80000000u;
          keys[size_t(j)] = (uint64_t(~u) << 32) | uint64_t(j);
        }
        std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end());
        std::sort(keys.begin(), keys.begin() + k);
        best.resize(static_cast<size_t>(k));
        for (int64_t i = 0; i < k; ++i) {
          const int64_t j = int64_t(keys[size_t(i)] & 0xffffffffu);
          best[size_t(i)] = {Scalar<In>::load(p[j * cs]), j};
        }
        return best.data();
      }
    }
    best.resize(static_cast<size_t>(vocab));
    for (int64_t j = 0; j < vocab; ++j) best[size_t(j)] = {Scalar<In>::load(p[j * cs]), j};
    auto before = [](const std::pair<C, int64_t>& x, const std::pair<C, int64_t>& y) {
      return ranks_before(x.first, x.second, y.first, y.second);
    };
    std::nth_element(best.begin(), best.begin() + (k - 1), best.end(), before);
    std::sort(best.begin(), best.begin() + k, before);
    return best.data();
  }

  void finish_row(int64_t row, const SegmentResult& r, const TopKList<C>& list) const {
    if (!r.state.valid()) {
      write_invalid_row<C>(a, row, /*row_fields=*/true, /*first=*/0, /*step=*/1);
      return;
    }
    const RowSoftmax rs = RowSoftmax::from(r.state, inv_temperature);
    write_row_fields<C>(a, row, r.state, rs, list.ids[0], has_target(row), target_logit(row),
                        r.n_greater);
    if (k == 0) return;
    if (streaming_topk) {
      for (int64_t i = 0; i < k; ++i)
        write_topk_entry<C>(a, row, i, rs, list.ids[i], list.values[i]);
      return;
    }
    const std::pair<C, int64_t>* best = select_topk(row);
    for (int64_t i = 0; i < k; ++i)
      write_topk_entry<C>(a, row, i, rs, best[i].second, best[i].first);
  }

  Status run() const {
    const int64_t n_rows = a.logits.n_rows;
    const Split split = Split::plan(n_rows, vocab);
    const int64_t cap = list_capacity;
    if (split.pieces == 1) {
      // Each task is a whole row: scan and finish it at once.
      return parallel_for(n_rows, Split::row_grain(vocab), [&](int64_t r0, int64_t r1) {
        Vector<C> buf(static_cast<size_t>(buffer_size()));
        Vector<C> values(static_cast<size_t>(cap));
        Vector<int64_t> ids(static_cast<size_t>(cap));
        for (int64_t row = r0; row < r1; ++row) {
          TopKList<C> list{values.data(), ids.data(), cap, 0};
          const SegmentResult r = scan(row, 0, vocab, &list, buf.data());
          finish_row(row, r, list);
        }
      });
    }
    // Few rows: scan the segments in parallel, then merge each row's segments in order.
    const int64_t n_tasks = n_rows * split.pieces;
    Vector<SegmentResult> parts(static_cast<size_t>(n_tasks));
    Vector<C> values(static_cast<size_t>(n_tasks * cap));
    Vector<int64_t> ids(static_cast<size_t>(n_tasks * cap));
    Vector<int64_t> sizes(static_cast<size_t>(n_tasks));
    Status s = parallel_for(n_tasks, 1, [&](int64_t t0, int64_t t1) {
      Vector<C> buf(static_cast<size_t>(buffer_size()));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / split.pieces, piece = t % split.pieces;
        TopKList<C> list{values.data() + t * cap, ids.data() + t * cap, cap, 0};
        parts[size_t(t)] =
            scan(row, split.begin(piece, vocab), split.end(piece, vocab), &list, buf.data());
        sizes[size_t(t)] = list.size;
      }
    });
    if (s != Status::kOk) return s;
    return parallel_for(n_rows, Split::row_grain(vocab), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t first = row * split.pieces;
        SegmentResult merged = parts[size_t(first)];
        TopKList<C> list{values.data() + first * cap, ids.data() + first * cap, cap,
                         sizes[size_t(first)]};
        for (int64_t t = first + 1; t < first + split.pieces; ++t) {
          if (a.varentropy != nullptr)
            merged.state.merge<true>(parts[size_t(t)].state, scale, double(C(scale)));
          else
            merged.state.merge(parts[size_t(t)].state, scale);
          merged.n_greater += parts[size_t(t)].n_greater;
          list.merge(
              TopKList<C>{values.data() + t * cap, ids.data() + t * cap, cap, sizes[size_t(t)]});
        }
        finish_row(row, merged, list);
      }
    });
  }
};

// ------------------------------------------------------------------------------------------
// log_softmax: the statistics pass above (sums only), then a write pass over the same row,
// which for rows up to ~1 MB is still in L2.
// ------------------------------------------------------------------------------------------

template <class In, class Out>
struct LogSoftmaxJob {
  using C = typename Scalar<In>::Compute;
  const LogSoftmaxArgs& a;
  const In* in;
  Out* out;
  int64_t vocab;
  double scale, inv_temperature;
  bool streaming;  // a large existing output: non-temporal stores (see out_is_new)

  explicit LogSoftmaxJob(const LogSoftmaxArgs& args)
      : a(args),
        in(static_cast<const In*>(args.logits.data)),
        out(static_cast<Out*>(args.out.data)),
        vocab(args.logits.vocab),
        scale(kLog2e / args.temperature),
        inv_temperature(1.0 / args.temperature),
        streaming(!args.out_is_new &&
                  args.logits.n_rows * args.logits.vocab * int64_t(sizeof(Out)) >=
                      kStreamingBytes) {}

  SoftmaxState scan(int64_t row, int64_t begin, int64_t end, C* buf) const {
    return scan_segment<ScanOptions<false, false, false>>(
               in + a.logits.row_offset(row), a.logits.col_stride, begin, end, C(0), scale,
               static_cast<TopKList<C>*>(nullptr), buf)
        .state;
  }

  void write(int64_t row, int64_t begin, int64_t end, const SoftmaxState& st, C* buf) const {
    using VC = simd::V<C>;
    constexpr int W = simd::Vec<C>::kLanes;
    const In* src = in + a.logits.row_offset(row);
    Out* dst = out + a.out.row_offset(row);
    const int64_t out_stride = a.out.col_stride;
    if (!st.valid()) {
      const Out nan = Scalar<Out>::store(InvalidRow::value<C>());
      for (int64_t j = begin; j < end; ++j) dst[j * out_stride] = nan;
      return;
    }
    const RowSoftmax rs = RowSoftmax::from(st, inv_temperature);
    // y = (x - ref) / T - ln(sum): two non-positive terms, no cancellation near 0.
    const VC ref_v = simd::broadcast(C(rs.ref));
    const VC inv_t_v = simd::broadcast(C(rs.inv_temperature));
    const VC log_sum_v = simd::broadcast(C(rs.log_sum));
    const VC neg_inf_v = simd::broadcast(-std::numeric_limits<C>::infinity());
    alignas(64) C y[kChunk];
    for (int64_t chunk_begin = begin; chunk_begin < end; chunk_begin += kChunk) {
      const int64_t len = std::min(kChunk, end - chunk_begin);
      const C* x = load_chunk(src, a.logits.col_stride, chunk_begin, len, buf);
      const bool direct = std::is_same_v<Out, C> && out_stride == 1;
      C* target = direct ? reinterpret_cast<C*>(dst + chunk_begin) : y;
      auto value = [&](int64_t i) { return rs.logprob_in<C>(x[i]); };
      // One vector of log-probabilities; lanes whose difference overflowed C are redone by
      // logprob_in (never for float64: its difference cannot overflow where C's could).
      auto vec = [&](int64_t i) {
        const VC xv = simd::load(x + i);
        const VC d = xv - ref_v;
        VC yv = d * inv_t_v - log_sum_v;
        if constexpr (std::is_same_v<C, float>) {
          if (simd::any((d == neg_inf_v) & (xv > neg_inf_v)))
            for (int l = 0; l < W; ++l) yv[l] = value(i + l);
        }
        return yv;
      };
      int64_t i = 0;
      if (direct && streaming) {
        // Scalar head up to a vector-aligned address, then non-temporal vector stores.
        for (; i < len && reinterpret_cast<uintptr_t>(target + i) % sizeof(VC) != 0; ++i)
          target[i] = value(i);
        for (; i + W <= len; i += W) simd::stream(target + i, vec(i));
      } else {
        for (; i + W <= len; i += W) simd::store(target + i, vec(i));
      }
      for (; i < len; ++i) target[i] = value(i);
      if (!direct) {
        Out* d = dst + chunk_begin * out_stride;
        if (out_stride == 1) {
          for (int64_t i = 0; i < len; ++i) d[i] = Scalar<Out>::store(y[i]);
        } else {
          for (int64_t i = 0; i < len; ++i) d[i * out_stride] = Scalar<Out>::store(y[i]);
        }
      }
    }
    if (streaming) simd::fence();
  }

  Status run() const {
    const int64_t n_rows = a.logits.n_rows;
    const Split split = Split::plan(n_rows, vocab);
    if (split.pieces == 1) {
      return parallel_for(n_rows, Split::row_grain(vocab), [&](int64_t r0, int64_t r1) {
        Vector<C> buf(kChunk + simd::Vec<C>::kLanes);
        for (int64_t row = r0; row < r1; ++row)
          write(row, 0, vocab, scan(row, 0, vocab, buf.data()), buf.data());
      });
    }
    const int64_t n_tasks = n_rows * split.pieces;
    Vector<SoftmaxState> parts(static_cast<size_t>(n_tasks));
    auto for_each_piece = [&](auto&& body) {
      return parallel_for(n_tasks, 1, [&](int64_t t0, int64_t t1) {
        Vector<C> buf(kChunk + simd::Vec<C>::kLanes);
        for (int64_t t = t0; t < t1; ++t)
          body(t / split.pieces, split.begin(t % split.pieces, vocab),
               split.end(t % split.pieces, vocab), t, buf.data());
      });
    };
    Status s = for_each_piece([&](int64_t row, int64_t b, int64_t e, int64_t t, C* buf) {
      parts[size_t(t)] = scan(row, b, e, buf);
    });
    if (s != Status::kOk) return s;
    // Merge each row's pieces in order (same order every run: deterministic).
    Vector<SoftmaxState> rows(static_cast<size_t>(n_rows));
    for (int64_t row = 0; row < n_rows; ++row) {
      SoftmaxState st = parts[size_t(row * split.pieces)];
      for (int64_t p = 1; p < split.pieces; ++p)
        st.merge(parts[size_t(row * split.pieces + p)], scale);
      rows[size_t(row)] = st;
    }
    return for_each_piece([&](int64_t row, int64_t b, int64_t e, int64_t, C* buf) {
      write(row, b, e, rows[size_t(row)], buf);
    });
  }
};

}  // namespace

Status token_stats(const TokenStatsArgs& args) {
  return visit_dtype(args.logits.dtype, Status::kInvalidArgument, [&](auto in_tag) {
    using In = decltype(in_tag);
    return TokenStatsJob<In>(args).run();
  });
}

Status log_softmax(const LogSoftmaxArgs& args) {
  return visit_dtype(args.logits.dtype, Status::kInvalidArgument, [&](auto in_tag) {
    return visit_dtype(args.out.dtype, Status::kInvalidArgument, [&](auto out_tag) {
      using In = decltype(in_tag);
      using Out = decltype(out_tag);
      return LogSoftmaxJob<In, Out>(args).run();
    });
  });
}

}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
