// CPU kernels: sequence_stats (per-sequence sum, mean, min, count, perplexity of token
// log-probabilities) and choice_confidence (softmax over the options of multiple-choice
// questions).
//
// sequence_stats is bound by memory bandwidth. Its results must not depend on the number of
// threads: every sum runs in the order logcal/core/sequence.h fixes (blocks of kSeqBlock
// tokens, kSeqLanes interleaved double lanes combined by a fixed tree, block partials merged
// left to right). Threads only decide who computes which block: short sequences are shared out
// whole (balanced by token count), sequences of at least kLong tokens are split into their
// blocks across all threads. Contiguous float32 and float64 blocks run in vectorised kernels
// compiled per instruction-set level (sequence_blocks_impl.h), which add in the same order as
// the generic loop here.
#include "logcal/core/sequence.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#include "isa.h"
#include "logcal/core/half.h"
#include "logcal/cpu.h"
#include "logcal/cpu_sequence.h"
#include "parallel.h"
#include "sequence_blocks.h"

namespace logcal {
namespace cpu {
namespace {

// Sequences at least this long are split across threads block by block.
constexpr int64_t kLong = 8 * kSeqBlock;
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
  double acc[kSeqLanes];
  C mn[kSeqLanes];
  int32_t bad[kSeqLanes];
  int64_t cnt[kSeqLanes];
  for (int j = 0; j < kSeqLanes; ++j) {
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
  for (; i + kSeqLanes <= n; i += kSeqLanes)
    for (int j = 0; j < kSeqLanes; ++j) step(j, i + j);
  for (int j = 0; i + j < n; ++j) step(j, i + j);

  int32_t any_bad = 0;
  int64_t count = 0;
  for (int j = 0; j < kSeqLanes; ++j) {
    any_bad |= bad[j];
    count += cnt[j];
  }
  return seq_block_partial([&](int j) { return acc[j]; }, [&](int j) { return double(mn[j]); },
                           kMasked ? count : n, any_bad != 0);
}

// Contiguous blocks go to the vectorised kernels of the active instruction-set level
// (sequence_blocks.h), which add in the order of reduce_block and give its bits. n <= kSeqBlock.
template <class In>
SeqPartial contiguous_block(const SequenceBlocks& k, const In* x, const uint8_t* m, int64_t n) {
  if constexpr (std::is_same_v<In, float>) {
    return m ? k.f32_masked(x, m, n) : k.f32(x, n);
  } else if constexpr (std::is_same_v<In, double>) {
    return m ? k.f64_masked(x, m, n) : k.f64(x, n);
  } else {
    // 16-bit floats: widened to float32 (exactly) a block at a time, then the float32 kernel.
    // The generic loop computes them in float32 too, so the bits are the same.
    static_assert(std::is_same_v<typename Scalar<In>::Compute, float>, "a 16-bit float");
    float wide[kSeqBlock];
    if constexpr (std::is_same_v<In, Float16>)
      k.widen_f16(x, wide, n);
    else
      k.widen_bf16(x, wide, n);
    return m ? k.f32_masked(wide, m, n) : k.f32(wide, n);
  }
}

template <class In>
struct FlatSource {
  const SequenceBlocks& blocks;
  const In* data;
  int64_t stride;
  const int64_t* offsets;

  int64_t size(int64_t s) const { return offsets[s + 1] - offsets[s]; }
  SeqPartial piece(int64_t s, int64_t lo, int64_t hi) const {
    const In* p = data + (offsets[s] + lo) * stride;
    return stride == 1 ? contiguous_block(blocks, p, nullptr, hi - lo)
                       : reduce_block<In, false, false>(p, stride, nullptr, 1, hi - lo);
  }
};

template <class In>
struct PaddedSource {
  const SequenceBlocks& blocks;
  const In* data;
  int64_t length, row_stride, col_stride;
  const uint8_t* mask;
  int64_t mask_row_stride, mask_col_stride;

  int64_t size(int64_t) const { return length; }
  SeqPartial piece(int64_t s, int64_t lo, int64_t hi) const {
    const In* p = data + s * row_stride + lo * col_stride;
    if (!mask) {
      return col_stride == 1 ? contiguous_block(blocks, p, nullptr, hi - lo)
                             : reduce_block<In, false, false>(p, col_stride, nullptr, 1, hi - lo);
    }
    const uint8_t* m = mask + s * mask_row_stride + lo * mask_col_stride;
    return col_stride == 1 && mask_col_stride == 1
               ? contiguous_block(blocks, p, m, hi - lo)
               : reduce_block<In, true, false>(p, col_stride, m, mask_col_stride, hi - lo);
  }
};

// Blocks of a sequence, combined left to right from the identity: the one order every path uses.
template <class Src>
SeqPartial reduce_sequence(const Src& src, int64_t s) {
  const int64_t len = src.size(s);
  SeqPartial acc;
  for (int64_t lo = 0; lo < len; lo += kSeqBlock)
    acc = seq_merge(acc, src.piece(s, lo, std::min(lo + kSeqBlock, len)));
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
      n_blocks += (len + kSeqBlock - 1) / kSeqBlock;
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
      const int64_t lo = (blk - first_block[li]) * kSeqBlock;
      partials[size_t(blk)] = src.piece(s, lo, std::min(lo + kSeqBlock, src.size(s)));
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
    const FlatSource<In> src{sequence_blocks(), data, a.stride, a.offsets};
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
        if (cost(mid) < target)
          lo = mid + 1;
        else
          hi = mid;
      }
      return lo;
    };
    return run_sequences(src, n, total, boundary, write);
  }
  const PaddedSource<In> src{sequence_blocks(), data,   a.length,          a.row_stride,
                             a.col_stride,      a.mask, a.mask_row_stride, a.mask_col_stride};
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
  return parallel_for(
      a.n_q, std::max<int64_t>(1, 4096 / std::max<int64_t>(n_c, 1)), [&](int64_t b, int64_t e) {
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

LOGCAL_IN_EACH_LEVEL(extern const SequenceBlocks kSequenceBlocks)

const SequenceBlocks& sequence_blocks() { return *LOGCAL_ACTIVE_LEVEL(kSequenceBlocks); }

Status sequence_stats(const SequenceStatsArgs& args) {
  if (args.n_seq < 0 || (!args.offsets && args.length < 0)) return Status::kInvalidArgument;
  try {  // the long-sequence bookkeeping allocates
    return visit_dtype(args.dtype, Status::kInvalidArgument,
                       [&](auto tag) { return sequence_stats_typed<decltype(tag)>(args); });
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  } catch (...) {
    return Status::kInternal;
  }
}

Status choice_confidence(const ChoiceArgs& args) {
  if (args.n_q < 0 || args.n_c < 0 || (args.correct && !args.labels))
    return Status::kInvalidArgument;
  return visit_dtype(args.dtype, Status::kInvalidArgument,
                     [&](auto tag) { return choice_typed<decltype(tag)>(args); });
}

}  // namespace cpu
}  // namespace logcal
