// A parallel LSD radix sort of unsigned integer keys, shared by the kernels that only need
// the order of their inputs (selective, isotonic calibration).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "logcal/common.h"
#include "parallel.h"

namespace logcal {
namespace cpu {

constexpr int kDigitBits = 11;
constexpr int kBuckets = 1 << kDigitBits;
constexpr int64_t kMinPiece = 1 << 16;  // fewest keys worth a thread

inline int64_t n_pieces_for(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), n / kMinPiece));
}

// Sorts keys[0, n) ascending; tmp has room for n keys. *out receives where the result is (keys
// or tmp). Stable LSD passes over kDigitBits-bit digits; each piece of the array histograms its
// digits, then scatters to its own offsets, so the result does not depend on the pieces.
template <class K>
Status radix_sort(K* keys, K* tmp, int64_t n, K** out) {
  constexpr int kPasses = (int(sizeof(K)) * 8 + kDigitBits - 1) / kDigitBits;
  *out = keys;
  if (n <= 1) return Status::kOk;
  const int64_t P = n_pieces_for(n);
  auto piece_begin = [&](int64_t p) { return n * p / P; };

  // Which digits vary at all: a digit every key shares leaves the order as it is.
  std::vector<K> piece_or(size_t(P), K(0)), piece_and(size_t(P), ~K(0));
  Status st = parallel_for(P, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      K o = 0, a = ~K(0);
      for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i) {
        o |= keys[i];
        a &= keys[i];
      }
      piece_or[size_t(p)] = o;
      piece_and[size_t(p)] = a;
    }
  });
  if (st != Status::kOk) return st;
  K all_or = 0, all_and = ~K(0);
  for (int64_t p = 0; p < P; ++p) {
    all_or |= piece_or[size_t(p)];
    all_and &= piece_and[size_t(p)];
  }
  const K varying = all_or ^ all_and;

  std::vector<int64_t> hist(size_t(P) * kBuckets);
  K* src = keys;
  K* dst = tmp;
  for (int pass = 0; pass < kPasses; ++pass) {
    const int shift = pass * kDigitBits;
    const K digit_mask = K(kBuckets - 1) << shift;
    if ((varying & digit_mask) == 0) continue;
    st = parallel_for(P, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        int64_t* h = hist.data() + p * kBuckets;
        std::fill(h, h + kBuckets, 0);
        for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i)
          ++h[(src[i] >> shift) & (kBuckets - 1)];
      }
    });
    if (st != Status::kOk) return st;
    // Exclusive offsets in (digit, piece) order: stable.
    int64_t run = 0;
    for (int d = 0; d < kBuckets; ++d)
      for (int64_t p = 0; p < P; ++p) {
        int64_t& h = hist[size_t(p * kBuckets + d)];
        const int64_t c = h;
        h = run;
        run += c;
      }
    st = parallel_for(P, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        int64_t* h = hist.data() + p * kBuckets;
        for (int64_t i = piece_begin(p); i < piece_begin(p + 1); ++i) {
          const K k = src[i];
          dst[h[(k >> shift) & (kBuckets - 1)]++] = k;
        }
      }
    });
    if (st != Status::kOk) return st;
    std::swap(src, dst);
  }
  *out = src;
  return Status::kOk;
}

}  // namespace cpu
}  // namespace logcal
