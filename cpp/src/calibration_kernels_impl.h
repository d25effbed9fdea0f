// The CPU calibration kernel: one pass over (confidence, correctness[, weight]) samples into
// exact per-bin fixed-point sums, and the Poisson bootstrap replicates in the same pass.
//
// Compiled once per instruction-set level by calibration_kernels_{baseline,avx2,avx512}.cpp,
// each defining LOGCAL_ISA_NAMESPACE first, and always with -ffp-contract=off: the per-sample
// terms must be the same bits at every level (see calibration.h).
//
// A range of samples is processed in tiles of kTile samples whose scratch stays in L1.
//
// With 0/1 correctness (the common case) the cells are (bin, correct) pairs holding the count and
// the sums of c, (c-y)^2, nll and spiegelhalter_var(c): sum y, sum c*y and sum y^2 follow from
// the cell a sample is in. A tile goes through three passes, each short enough for the
// out-of-order core to overlap:
//   1. (vectorised) read and check the inputs -- straight from contiguous arrays with integer
//      correctness, else from the scratch that load_tile filled -- compute the exact uniform bin,
//      the fixed-point words of c, (c-y)^2 and spiegelhalter_var(c), transpose them into rows
//      per sample, and keep the probability of the outcome for the NLL;
//   2. (vectorised, four vectors side by side) the deterministic logarithm and the NLL's row;
//   3. (one sample at a time) add each sample's three rows into its cell as a 256-bit and two
//      128-bit vectors. Four copies of the cells, used in turn, break the store-to-load
//      dependency between neighbours that fall in the same cell.
// Soft labels or weights take per-bin cells with all eight sums as 128-bit integers.
// Why the passes and not one loop: a single loop's chain (bin, log, splits, transposes) was too
// long for the scheduler to overlap iterations; see benchmarks/NOTES.md for the measurements.
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including calibration_kernels_impl.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "isa_local.h"
#include "logcal/core/calibration.h"
#include "logcal/cpu_calibration.h"
#include "simd.h"
#include "simd_log.h"

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {

using calib::BinState;
using calib::U128;

namespace {

constexpr int64_t kTile = 256;
constexpr int kCopies = 4;
// Vectors whose logarithms are computed side by side (measured on AVX-512 and AVX2: 4 beats 2
// by 3-7%, and 2 beats 1).
constexpr int kLogGroup = 4;

using u128 = unsigned __int128;
using VD = simd::V<double>;
using VU = simd::Vec<double>::Bits;
using VI = simd::Vec<double>::Mask;
constexpr int W = simd::Vec<double>::kLanes;

LOGCAL_HD VU bits_of(VD x) {
  VU u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
LOGCAL_HD VD from_bits(VU u) {
  VD x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// floor(p) for 0 <= p < 2^51 (exact on every level; one instruction where the ISA has it).
LOGCAL_HD VD floor_nonneg(VD p) {
#if defined(__AVX512F__)
  return VD(_mm512_maskz_roundscale_pd(__mmask8(0xff), __m512d(p),
                                       _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
#elif defined(__AVX__)
  return VD(_mm256_floor_pd(__m256d(p)));
#else
  // Round to an integer with the 2^52 trick, step down if it rounded up.
  const VD magic = simd::broadcast(4503599627370496.0);
  const VD r = (p + magic) - magic;
  return r > p ? r - 1.0 : r;
#endif
}

// The integer value of a vector of non-negative integral doubles (< 2^51).
LOGCAL_HD VU to_index(VD integral) {
#if defined(__AVX512DQ__)
  return VU(_mm512_cvttpd_epu64(__m512d(integral)));
#else
  const VD magic = simd::broadcast(4503599627370496.0);
  return bits_of(integral + magic) & ((uint64_t(1) << 52) - 1);
#endif
}

// calib::to_fixed lane by lane: T(v) = floor(v * 2^64) as (lo, hi), 0 <= v < 2^41.
LOGCAL_HD void to_fixed(VD v, VU& lo, VU& hi) {
  const VU bits = bits_of(v);
  const VU e = bits >> 52;
  const VU m = (bits & ((uint64_t(1) << 52) - 1)) | (uint64_t(1) << 52);
  const VI s = VI(e) - 1011;
  const VI zero = VI{};
  const VI pos = s >= zero;
  const VU sl = VU(pos ? s : zero);  // in [0, 52]
  const VU sr = VU(pos ? zero : (-s < 63 ? -s : VI{} + 63));
  const VU lo_pos = m << sl;
  const VU hi_pos = (m >> 11) >> (VU{} + 53 - sl);
  const VU lo_neg = m >> sr;
  const VI live = VI(e) != zero;
  lo = VU(live & VI(pos ? lo_pos : lo_neg));
  hi = VU(live & (pos ? VI(hi_pos) : zero));
}

// T(v) = floor(v * 2^64) split at bit kLoBits: hi = floor(v * 2^(64 - kLoBits)) and
// lo = T mod 2^kLoBits, so that T = hi * 2^kLoBits + lo. Exact for v * 2^(64 - kLoBits) < 2^51
// (scalings by powers of two and the fraction t - floor(t) are exact): the same T as to_fixed
// gives, in fewer operations.
template <int kLoBits>
LOGCAL_HD void split_fixed(VD v, VU& hi, VU& lo) {
  const VD t = v * double(uint64_t(1) << (64 - kLoBits));
  const VD hf = floor_nonneg(t);
  hi = to_index(hf);
  lo = to_index(floor_nonneg((t - hf) * double(uint64_t(1) << kLoBits)));
}

// Lanes of a confidence vector outside [0, 1] (NaN included): all ones.
LOGCAL_HD VI outside_unit(VD c) { return ~((c >= 0.0) & (c <= 1.0)); }

LOGCAL_HD VD clip(VD c, VD eps, VD one_minus_eps) {
  const VD lo = c < eps ? eps : c;
  return lo > one_minus_eps ? one_minus_eps : lo;
}

// --- step 1: load and check ------------------------------------------------------------------

// W confidences at p (contiguous, or with a stride and `count` valid lanes), as doubles.
template <class T>
inline VD load_conf(const T* p) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return simd::load_as_double(p);
  } else {
    typedef T VT __attribute__((vector_size(sizeof(T) * W)));
    VT v;
    std::memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, VD);
  }
}
template <class T>
inline VD load_conf(const T* p, int64_t stride, int64_t count) {
  double tmp[W];
  for (int l = 0; l < W; ++l) tmp[l] = l < count ? static_cast<double>(p[l * stride]) : 0.5;
  return simd::load(tmp);
}

// W correctness values as 0.0 / 1.0 (integers; anything but 0 or 1 sets `bad`) or as themselves
// (floats; outside [0, 1] or NaN sets `bad`).
template <class T>
inline VD to_correct(const T* v, VI& bad) {
  if constexpr (std::is_floating_point_v<T>) {
    VD y;
    for (int l = 0; l < W; ++l) y[l] = static_cast<double>(v[l]);
    bad |= ~((y >= 0.0) & (y <= 1.0));
    return y;
  } else if constexpr (sizeof(T) <= 4) {
    // Widen straight to the 64-bit lanes of the doubles with one zero/sign extension. GCC
    // turns __builtin_convertvector of bytes into a byte-by-byte unpack (~10% of the pass), so
    // bytes take the instruction explicitly where the ISA has it.
    VI y;
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 1 && W == 8) {
      uint64_t raw;
      std::memcpy(&raw, v, sizeof raw);
      y = VI(_mm512_cvtepu8_epi64(_mm_cvtsi64_si128(static_cast<long long>(raw))));
    } else
#elif defined(__AVX2__)
    if constexpr (sizeof(T) == 1 && W == 4) {
      uint32_t raw;
      std::memcpy(&raw, v, sizeof raw);
      y = VI(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(raw))));
    } else
#endif
    {
      typedef T VT __attribute__((vector_size(sizeof(T) * W)));
      VT raw;
      std::memcpy(&raw, v, sizeof raw);
      y = __builtin_convertvector(raw, VI);
    }
    bad |= ~((y == 0) | (y == 1));
    return y == 1 ? VD{} + 1.0 : VD{};
  } else {
    VI y;
    std::memcpy(&y, v, sizeof y);
    bad |= ~((y == 0) | (y == 1));
    return y == 1 ? VD{} + 1.0 : VD{};
  }
}
template <class T>
inline VD load_correct(const T* p, VI& bad) {
  return to_correct(p, bad);
}
template <class T>
inline VD load_correct(const T* p, int64_t stride, int64_t count, VI& bad) {
  T tmp[W];
  for (int l = 0; l < W; ++l) tmp[l] = l < count ? p[l * stride] : T(0);
  return to_correct(tmp, bad);
}

// The offset of the first invalid sample of [begin, begin + len), or -1 (rare: called once a
// vector check has seen one).
template <class CT, class YT>
int64_t first_bad(const CalibrationArgs& a, int64_t begin, int64_t len) {
  const CT* c = static_cast<const CT*>(a.confidence) + begin * a.conf_stride;
  const YT* y = static_cast<const YT*>(a.correct) + begin * a.correct_stride;
  for (int64_t i = 0; i < len; ++i) {
    const double cv = static_cast<double>(c[i * a.conf_stride]);
    const YT yv = y[i * a.correct_stride];
    const bool y_ok =
        std::is_floating_point_v<YT> ? (yv >= YT(0) && yv <= YT(1)) : (yv == YT(0) || yv == YT(1));
    if (!(cv >= 0.0 && cv <= 1.0) || !y_ok) return i;
  }
  return -1;
}

// W (confidence, correctness) pairs of contiguous inputs, read and checked in place: for
// load_tile, and for the 0/1 path, which reads them straight into its terms.
template <class CT, class YT>
struct InputSource {
  const CT* c;
  const YT* y;
  int64_t len;
  LOGCAL_HD void load(int64_t v, VD& cv, VD& yv, VI& bad) const {
    const int64_t at = v * W;
    if (at + W <= len) {
      cv = load_conf(c + at);
      yv = load_correct(y + at, bad);
    } else {  // the tail, padded with (0.5, 0)
      cv = load_conf(c + at, 1, len - at);
      yv = load_correct(y + at, 1, len - at, bad);
    }
    bad |= outside_unit(cv);
  }
  double conf(int64_t i) const { return static_cast<double>(c[i]); }
  bool correct(int64_t i) const { return y[i] != YT(0); }
};

// Loads [begin, begin + len) as doubles into cbuf / ybuf / wbuf; returns the offset of the first
// invalid sample in the tile, or -1. Positions past len are padded with harmless values.
// Validity is checked on the widened values: an integer converts to 0.0 or 1.0 only from 0 or 1.
template <class CT, class YT>
int64_t load_tile(const CalibrationArgs& a, int64_t begin, int64_t len, double* cbuf, double* ybuf,
                  double* wbuf) {
  const CT* c = static_cast<const CT*>(a.confidence) + begin * a.conf_stride;
  const YT* y = static_cast<const YT*>(a.correct) + begin * a.correct_stride;
  VI bad = {};
  if (a.conf_stride == 1 && a.correct_stride == 1) {
    const InputSource<CT, YT> src{c, y, len};
    for (int64_t v = 0; v * W < len; ++v) {  // the tail is padded with (0.5, 0)
      VD cv, yv;
      src.load(v, cv, yv, bad);
      simd::store(cbuf + v * W, cv);
      simd::store(ybuf + v * W, yv);
    }
  } else {
    const int64_t full = len / W * W;
    for (int64_t i = 0; i < full; i += W) {
      const VD cv = load_conf(c + i * a.conf_stride, a.conf_stride, W);
      bad |= outside_unit(cv);
      simd::store(cbuf + i, cv);
      simd::store(ybuf + i, load_correct(y + i * a.correct_stride, a.correct_stride, W, bad));
    }
    if (full < len) {  // the tail, padded with (0.5, 0)
      const VD cv = load_conf(c + full * a.conf_stride, a.conf_stride, len - full);
      bad |= outside_unit(cv);
      simd::store(cbuf + full, cv);
      simd::store(ybuf + full,
                  load_correct(y + full * a.correct_stride, a.correct_stride, len - full, bad));
    }
  }
  if (wbuf != nullptr) {
    const double* w = a.weights + begin * a.weight_stride;
    for (int64_t i = 0; i < len; ++i) wbuf[i] = w[i * a.weight_stride];
    for (int64_t i = len; i < (len + W - 1) / W * W; ++i) wbuf[i] = 0.0;
  }
  return simd::any(bad) ? first_bad<CT, YT>(a, begin, len) : -1;
}

// --- the per-bin cells of a range ------------------------------------------------------------

// 0/1 correctness: cell 2k + y holds the count and the sums of T(c), T((c-y)^2), T(nll) and
// T(v), v = spiegelhalter_var(c), in seven 64-bit words, plain additions with no carry to
// propagate. Each T is split into a high part and a low part (T = hi * 2^L + lo); the high parts
// have a word each, the low parts share words with the count or have one. The words form three
// rows, added to the cell as one 256-bit and two 128-bit vectors per sample:
//   row a: hi_c = sum floor(c 2^48),  hi_sq = sum floor((c-y)^2 2^48),
//          lo_c_sq = sum (T(c) mod 2^16) + 2^32 sum (T((c-y)^2) mod 2^16),  (unused)
//   row b: hi_nll = sum floor(nll 2^40),  lo_nll_n = sum (T(nll) mod 2^24) + 2^40 count,
//   row c: hi_v = sum floor(v 2^48),  lo_v = sum (T(v) mod 2^16).
// (kLight, ECE only: row b alone, holding hi_c and sum (T(c) mod 2^16) + 2^32 count.) Bounds per
// sample: c, (c-y)^2 <= 1, v <= 1/16 and nll <= -log(1e-300) < 2^10, so a high part is below
// 2^50 and a low part below 2^24. The cells are folded into 128-bit sums once kFoldEvery = 2^13
// samples have gone in (checked after each tile, so fewer than 2^14 between folds): no field can
// then reach the next one (2^14 * 2^16 <= 2^32, 2^14 * 2^24 <= 2^40) and no word can overflow (2^14
// * 2^50 <= 2^64). One cache line per cell.
constexpr int kLoConf = 16;  // low bits of T(c), T((c-y)^2) and T(v)
constexpr int kLoNll = 24;   // low bits of T(nll)
constexpr int64_t kFoldEvery = int64_t(1) << 13;
static_assert(kFoldEvery + kTile < (int64_t(1) << 14), "see the bounds above");

// Many bins: with more than kFewBins bins, sweeping every cell every kFoldEvery samples would
// cost more than the samples. Then the cells have one copy, a cell is folded on its own when
// its count reaches kFoldEvery (checked as it is added to), and the cells touched since the
// last fold are listed, so that a fold visits those alone.
constexpr int64_t kFewBins = 64;
constexpr int kHiC = 0, kHiSq = 1, kLoCSq = 2, kRowA = 4;  // words of row a
constexpr int kHiNll = 0, kLoNllN = 1, kRowB = 2;          // words of row b
constexpr int kLightHiC = 0, kLightLoCN = 1;               // row b when kLight
constexpr int kHiVar = 0, kLoVar = 1, kRowC = 2;           // words of row c

typedef uint64_t RowAVec __attribute__((vector_size(8 * kRowA)));
typedef uint64_t RowBVec __attribute__((vector_size(8 * kRowB)));
typedef uint64_t RowCVec __attribute__((vector_size(8 * kRowC)));

struct alignas(64) BinaryCell {
  RowAVec a;
  RowBVec b;
  RowCVec c;
};
static_assert(sizeof(BinaryCell) == 64, "one cache line");

// Rows from lanes: the transposes that turn per-word vectors (one sample a lane) into per-sample
// rows. interleave<kHigh>(p, q) = (p0, q0, p1, q1, ...) over the low (or high) half of the lanes.
template <bool kHigh, size_t... I>
LOGCAL_HD VU interleave(VU p, VU q, std::index_sequence<I...>) {
  return __builtin_shufflevector(p, q, ((I % 2 ? W : 0) + I / 2 + (kHigh ? W / 2 : 0))...);
}
template <bool kHigh>
LOGCAL_HD VU interleave(VU p, VU q) {
  return interleave<kHigh>(p, q, std::make_index_sequence<W>());
}

// Rows a number kM * W/4 to kM * W/4 + W/4 - 1 (W >= 4): (pair j of `pairs`, lo_j, lo_j), the
// pairs being (hi_c, hi_sq) interleaved; the unused fourth word repeats lo_j (one shuffle fewer
// than a zero, and never read).
template <int kM, size_t... I>
LOGCAL_HD VU rows_a_of(VU pairs, VU lo, std::index_sequence<I...>) {
  return __builtin_shufflevector(
      pairs, lo,
      (I % 4 < 2 ? 2 * ((kM % 2) * (W / 4) + I / 4) + I % 4 : W + kM * (W / 4) + I / 4)...);
}

template <size_t J, size_t... I>
LOGCAL_HD VU splat(VU v, std::index_sequence<I...>) {  // lane J everywhere
  return __builtin_shufflevector(v, v, (I * 0 + J)...);
}

LOGCAL_HD void store_lanes(uint64_t* out, VU v) { std::memcpy(out, &v, sizeof v); }

// W samples' rows a from the vectors of their words, stored at `out`.
LOGCAL_HD void store_rows_a(uint64_t* out, VU hi_c, VU hi_sq, VU lo_c_sq) {
  const VU p = interleave<false>(hi_c, hi_sq), q = interleave<true>(hi_c, hi_sq);
  if constexpr (W == 2) {  // p = sample 0's first two words, q = sample 1's
    store_lanes(out, p);
    store_lanes(out + 2, splat<0>(lo_c_sq, std::make_index_sequence<W>()));
    store_lanes(out + 4, q);
    store_lanes(out + 6, splat<1>(lo_c_sq, std::make_index_sequence<W>()));
  } else {
    const auto lanes = std::make_index_sequence<W>();
    store_lanes(out, rows_a_of<0>(p, lo_c_sq, lanes));
    store_lanes(out + W, rows_a_of<1>(p, lo_c_sq, lanes));
    store_lanes(out + 2 * W, rows_a_of<2>(q, lo_c_sq, lanes));
    store_lanes(out + 3 * W, rows_a_of<3>(q, lo_c_sq, lanes));
  }
}

// W samples' two-word rows (b or c) from the vectors of their words.
LOGCAL_HD void store_rows_2(uint64_t* out, VU first, VU second) {
  store_lanes(out, interleave<false>(first, second));
  store_lanes(out + W, interleave<true>(first, second));
}

inline U128 from_split(uint64_t hi_sum, int lo_bits, uint64_t lo_sum) {  // hi * 2^L + lo
  U128 r{hi_sum << lo_bits, hi_sum >> (64 - lo_bits)};
  calib::add_to(r, lo_sum, 0);
  return r;
}

// Soft labels or weights: cell k holds count and the eight sums of calib::Field.
struct alignas(64) SoftCell {
  uint64_t count;
  uint64_t pad;
  u128 s[calib::kNumFields];
};

inline U128 to_u128(u128 v) {
  U128 r;
  r.lo = static_cast<uint64_t>(v);
  r.hi = static_cast<uint64_t>(v >> 64);
  return r;
}

struct Scratch {
  Vector<double> c, y, w, x;  // x: the probability of the outcome, for the NLL
  Vector<int64_t> bin;
  Vector<uint64_t> t;                       // fixed-point terms: [field][kTile] lo, then hi
  Vector<uint64_t> rows_a, rows_b, rows_c;  // 0/1 path: each sample's rows of cell words
  explicit Scratch(bool weighted)
      : c(kTile + W),
        y(kTile + W),
        w(weighted ? kTile + W : 0),
        x(kTile + W),
        bin(kTile + W),
        t(2 * calib::kNumFields * (kTile + W)),
        rows_a(kRowA * (kTile + W)),
        rows_b(kRowB * (kTile + W)),
        rows_c(kRowC * (kTile + W)) {}
  uint64_t* lo(int f) { return t.data() + (2 * f) * (kTile + W); }
  uint64_t* hi(int f) { return t.data() + (2 * f + 1) * (kTile + W); }
};

// The other source of the 0/1 path's (confidence, correctness) vectors, beside InputSource: what
// load_tile left in the scratch. Vector v, and sample i for the rare exact re-binning.
struct ScratchSource {
  const Scratch& s;
  LOGCAL_HD void load(int64_t v, VD& c, VD& y, VI&) const {
    c = simd::load(s.c.data() + v * W);
    y = simd::load(s.y.data() + v * W);
  }
  double conf(int64_t i) const { return s.c[size_t(i)]; }
  bool correct(int64_t i) const { return s.y[size_t(i)] != 0.0; }
};

struct Job {
  const CalibrationArgs& a;
  bool uniform;       // exact uniform bins (no edges)
  bool near_uniform;  // explicit edges, each within 1e-9 / edges_scale of (j + 1) / edges_scale
  VD nd, nm1, eps, one_minus_eps;

  explicit Job(const CalibrationArgs& args)
      : a(args), uniform(args.edges == nullptr), near_uniform(false) {
    nd = simd::broadcast(double(args.n_bins));
    nm1 = simd::broadcast(double(args.n_bins - 1));
    eps = simd::broadcast(args.eps);
    one_minus_eps = simd::broadcast(1.0 - args.eps);
    if (!uniform && args.edges_scale > 0.0 && args.edges_scale < 1e6) {
      near_uniform = true;
      for (int64_t j = 0; j < args.n_edges; ++j)
        near_uniform &= std::fabs(args.edges[j] * args.edges_scale - double(j + 1)) <= 1e-9;
    }
  }

  // Uniform bins of a vector of confidences, floor(c * n) of the rounded product; `rounded_onto`
  // collects the lanes where that product is an integer k > 0 (then the real c * n may be just
  // below k: see calib::uniform_bin; the caller decides those exactly).
  static VD uniform_bins(VD c, VD nd, VI& rounded_onto) {
    const VD p = c * nd;
    const VD r = floor_nonneg(p);
    rounded_onto |= (r == p) & (p > 0.0);
    return r;
  }

  // Bin of one sample among explicit edges: from the scale hint when there is one, else by a
  // branch-free binary search (search_edges runs several of them side by side).
  int64_t edge_bin(double c) const {
    const double* e = a.edges;
    const int64_t m = a.n_edges;
    if (a.edges_scale > 0.0) {
      int64_t k = static_cast<int64_t>(c * a.edges_scale);
      k = k < m ? k : m;
      if (a.right_closed) {
        while (k > 0 && !(e[k - 1] < c)) --k;
        while (k < m && e[k] < c) ++k;
      } else {
        while (k > 0 && !(e[k - 1] <= c)) --k;
        while (k < m && e[k] <= c) ++k;
      }
      return k;
    }
    // Branch-free lower / upper bound: the comparisons are unpredictable.
    const double* base = e;
    int64_t len = m;
    if (len == 0) return 0;
    while (len > 1) {
      const int64_t half = len >> 1;
      const bool below = a.right_closed ? base[half - 1] < c : base[half - 1] <= c;
      base = below ? base + half : base;
      len -= half;
    }
    const bool below = a.right_closed ? base[0] < c : base[0] <= c;
    return (base - e) + (below ? 1 : 0);
  }

  // Bins of c[0..len) among the explicit edges (no scale hint), into bin[]: the branch-free
  // search of edge_bin, kLanes samples in lockstep. One search is a chain of dependent loads
  // (11 for the accumulator's 1857 fine edges); stepping several at once lets them overlap.
  template <bool kRightClosed>
  void search_edges(const double* c, int64_t* bin, int64_t len) const {
    constexpr int kLanes = 8;
    const double* e = a.edges;
    const int64_t m = a.n_edges;
    auto below = [](double edge, double v) { return kRightClosed ? edge < v : edge <= v; };
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
      int64_t at[kLanes] = {};
      int64_t n = m;
      while (n > 1) {
        const int64_t half = n >> 1;
        for (int l = 0; l < kLanes; ++l) at[l] += below(e[at[l] + half - 1], c[i + l]) ? half : 0;
        n -= half;
      }
      for (int l = 0; l < kLanes; ++l)
        bin[i + l] = m == 0 ? 0 : at[l] + (below(e[at[l]], c[i + l]) ? 1 : 0);
    }
    for (; i < len; ++i) bin[i] = edge_bin(c[i]);
  }

  void bins_of_tile(Scratch& s, int64_t len) const {
    const int64_t n_vec = (len + W - 1) / W;
    if (uniform) {
      VI rounded_onto = {};
      for (int64_t v = 0; v < n_vec; ++v) {
        VD r = uniform_bins(simd::load(s.c.data() + v * W), nd, rounded_onto);
        r = r > nm1 ? nm1 : r;
        const VU idx = to_index(r);
        std::memcpy(s.bin.data() + v * W, &idx, sizeof idx);
      }
      if (simd::any(rounded_onto)) {  // rare: redo those samples with the exact scalar rule
        for (int64_t i = 0; i < len; ++i)
          s.bin[size_t(i)] = calib::uniform_bin(s.c[size_t(i)], a.n_bins);
      }
    } else if (near_uniform) {
      // floor(c * scale) is the bin unless c * scale is within 1e-7 of an integer: no edge
      // (within 1e-9 of its integer) can then lie between. The others are compared exactly.
      const VD scale = simd::broadcast(a.edges_scale);
      const VD m = simd::broadcast(double(a.n_edges));
      VI near_edge = {};
      for (int64_t v = 0; v < n_vec; ++v) {
        const VD p = simd::load(s.c.data() + v * W) * scale;
        VD r = floor_nonneg(p);
        near_edge |= ((p - r) < 1e-7) | ((r + 1.0 - p) < 1e-7);
        r = r > m ? m : r;
        const VU idx = to_index(r);
        std::memcpy(s.bin.data() + v * W, &idx, sizeof idx);
      }
      if (simd::any(near_edge)) {
        for (int64_t i = 0; i < len; ++i) {
          const double p = s.c[size_t(i)] * a.edges_scale;
          const double r = std::floor(p);
          if (p - r < 1e-7 || r + 1.0 - p < 1e-7) s.bin[size_t(i)] = edge_bin(s.c[size_t(i)]);
        }
      }
    } else {
      if (a.right_closed)
        search_edges<true>(s.c.data(), s.bin.data(), len);
      else
        search_edges<false>(s.c.data(), s.bin.data(), len);
    }
  }

  // Step 2 for 0/1 correctness: the rows of a BinaryCell per sample (s.rows_a, s.rows_b), from
  // the very operations of terms_soft, so that both paths give the same bits, and the cell index
  // 2 * bin + y in s.bin. `src` gives the tile's (c, y) vectors: from the scratch after load_tile,
  // or straight from contiguous inputs (checking them into `bad`). With kBins the uniform bins
  // are computed here; otherwise s.bin holds them already. kLight: c only (words 0 and 3).
  template <bool kLight, bool kBins, class Source>
  void terms_binary(Scratch& s, int64_t len, const Source& source, VI& bad) const {
    // Local copies of the pointers and constants: stores through the scratch pointers could
    // alias members, which would then be reloaded for every vector.
    const Source src = source;
    int64_t* const cell_out = s.bin.data();
    uint64_t* const rows_a = s.rows_a.data();
    uint64_t* const rows_b = s.rows_b.data();
    uint64_t* const rows_c = s.rows_c.data();
    double* const x_out = s.x.data();
    const VD n = nd, last_bin = nm1, lo = eps, hi = one_minus_eps;
    const int64_t n_vec = (len + W - 1) / W;
    VI rounded_onto = {};
    for (int64_t v = 0; v < n_vec; ++v) {  // the cell index, rows a, the NLL's probability
      const int64_t at = v * W;
      VD c, y;
      src.load(v, c, y, bad);
      VI bin;
      if constexpr (kBins) {
        const VD r = uniform_bins(c, n, rounded_onto);
        bin = VI(to_index(r > last_bin ? last_bin : r));
      } else {
        std::memcpy(&bin, cell_out + at, sizeof bin);
      }
      bin = bin + bin - VI(y != 0.0);  // true is -1
      std::memcpy(cell_out + at, &bin, sizeof bin);
      VU c_hi, c_lo;
      split_fixed<kLoConf>(c, c_hi, c_lo);
      if constexpr (kLight) {
        store_rows_2(rows_b + kRowB * at, c_hi, c_lo + (uint64_t(1) << 32));
      } else {
        VU sq_hi, sq_lo;
        split_fixed<kLoConf>((c - y) * (c - y), sq_hi, sq_lo);
        store_rows_a(rows_a + kRowA * at, c_hi, sq_hi, c_lo + (sq_lo << 32));
        VU var_hi, var_lo;
        split_fixed<kLoConf>(calib::spiegelhalter_var(c), var_hi, var_lo);
        store_rows_2(rows_c + kRowC * at, var_hi, var_lo);
        simd::store(x_out + at, clip(y != 0.0 ? c : 1.0 - c, lo, hi));
      }
    }
    // Rare: redo the cells with the exact scalar rule -- unless an input is invalid, which
    // discards the tile (and uniform_bin must not see a NaN or an infinity).
    if (kBins && simd::any(rounded_onto) && !simd::any(bad)) {
      for (int64_t i = 0; i < len; ++i)
        cell_out[i] = 2 * calib::uniform_bin(src.conf(i), a.n_bins) + (src.correct(i) ? 1 : 0);
    }
    if constexpr (!kLight) {
      int64_t v = 0;
      for (; v + kLogGroup <= n_vec; v += kLogGroup) nll_rows<kLogGroup>(x_out, rows_b, v);
      for (; v < n_vec; ++v) nll_rows<1>(x_out, rows_b, v);
    }
  }

  // Rows b (the NLL and the count) of U vectors from v on: a pass of its own, U vectors at a
  // time, so that the long chain of the logarithm overlaps with itself.
  template <int U>
  static LOGCAL_HD void nll_rows(const double* x_in, uint64_t* rows_b, int64_t v) {
    VD x[U], lg[U];
    for (int u = 0; u < U; ++u) x[u] = simd::load(x_in + (v + u) * W);
    simd::log_det_n<U>(x, lg);
    for (int u = 0; u < U; ++u) {
      VU hi, lo;
      split_fixed<kLoNll>(-lg[u], hi, lo);
      store_rows_2(rows_b + kRowB * (v + u) * W, hi, lo + (uint64_t(1) << 40));
    }
  }

  // Step 2 for soft labels and/or weights: all the fields, w * value in double first
  // (kLight: not sq_error, nll and spiegelhalter_var, which stay zero).
  template <bool kWeighted, bool kLight>
  void terms_soft(Scratch& s, int64_t len) const {
    const int64_t n_vec = (len + W - 1) / W;
    for (int64_t v = 0; v < n_vec; ++v) {
      const VD c = simd::load(s.c.data() + v * W);
      const VD y = simd::load(s.y.data() + v * W);
      VD nll = {}, sq = {}, var = {};
      if constexpr (!kLight) {
        const VD p[2] = {clip(c, eps, one_minus_eps), clip(1.0 - c, eps, one_minus_eps)};
        VD lg[2];
        simd::log_det_n<2>(p, lg);
        nll = -(y * lg[0] + (1.0 - y) * lg[1]);
        sq = (c - y) * (c - y);
        var = calib::spiegelhalter_var(c);
      }
      VD val[calib::kNumFields] = {VD{} + 1.0, c, y, sq, c * y, y * y, nll, var};
      if constexpr (kWeighted) {
        const VD wt = simd::load(s.w.data() + v * W);
        val[0] = wt;
        for (int f = 1; f < calib::kNumFields; ++f) val[f] = wt * val[f];
      }
      for (int f = kWeighted ? 0 : 1; f < calib::kNumFields; ++f) {
        VU lo, hi;
        to_fixed(val[f], lo, hi);
        store_lanes(s.lo(f) + v * W, lo);
        store_lanes(s.hi(f) + v * W, hi);
      }
    }
  }
};

inline u128 join(const uint64_t* lo, const uint64_t* hi, int64_t i) {
  return (static_cast<u128>(hi[i]) << 64) | lo[i];
}

// --- a range of samples ------------------------------------------------------------------------

template <class CT, class YT>
struct RangeRunner {
  const CalibrationArgs& a;
  const Job& job;
  const bool binary_input;  // integer correctness: always 0/1
  const bool weighted;
  const int64_t n_bins;
  const bool many_bins;  // see kFewBins
  const int copies;      // of the cells, used in turn
  Scratch s;
  Vector<BinaryCell> bcells;  // [copies][2 * n_bins]
  Vector<SoftCell> scells;    // [copies][n_bins], made on the first soft tile
  Vector<int64_t> touched;    // many bins: binary cells touched since the last fold
  Vector<BinState> block;     // the current bootstrap unit's part of this range
  Vector<int64_t> nonempty;   // the bootstrap unit's non-empty bins
  struct UnitPart {           // what a non-empty bin adds to a replicate, per unit of weight
    int64_t offset;           // of the bin's fields in a replicate
    uint64_t weight_hi, correct_hi;
    U128 conf;
  };
  Vector<UnitPart> parts;
  BinState* fold_to = nullptr;  // where the binary cells go when they fill
  bool used_binary = false, used_soft = false;
  int64_t since_fold = 0;  // samples in the binary cells since they were last folded

  RangeRunner(const CalibrationArgs& args, const Job& j)
      : a(args),
        job(j),
        binary_input(!std::is_floating_point_v<YT>),
        weighted(args.weights != nullptr),
        n_bins(args.n_bins),
        many_bins(args.n_bins > kFewBins),
        copies(many_bins ? 1 : kCopies),
        s(args.weights != nullptr),
        bcells(weighted ? 0 : size_t(copies * 2 * args.n_bins)),
        block(args.n_bootstrap > 0 ? size_t(args.n_bins) : 0) {
    if (!bcells.empty())
      std::memset(static_cast<void*>(bcells.data()), 0, bcells.size() * sizeof(BinaryCell));
    if (many_bins && !weighted) touched.reserve(size_t(2 * n_bins));
    if (args.n_bootstrap > 0) {
      nonempty.reserve(size_t(n_bins));
      parts.reserve(size_t(n_bins));
    }
  }

  bool tile_is_binary(int64_t len) const {
    if (weighted) return false;
    if (binary_input) return true;
    bool all01 = true;
    for (int64_t i = 0; i < len; ++i) {
      const double y = s.y[size_t(i)];
      all01 &= (y == 0.0) | (y == 1.0);
    }
    return all01;
  }

  template <bool kLight>
  static uint64_t cell_count(const BinaryCell& cell) {
    return kLight ? cell.b[kLightLoCN] >> 32 : cell.b[kLoNllN] >> 40;
  }

  template <bool kLight, bool kManyBins>
  void scatter_binary(int64_t len) {
    used_binary = true;
    since_fold += len;
    const uint64_t* row_a = s.rows_a.data();
    const uint64_t* row_b = s.rows_b.data();
    const uint64_t* row_c = s.rows_c.data();
    const int64_t* cell_of = s.bin.data();
    const int64_t stride = 2 * n_bins;
    BinaryCell* cells = bcells.data();
    auto add = [&](BinaryCell& cell, int64_t j) {
      RowBVec rb;
      std::memcpy(&rb, row_b + kRowB * j, sizeof rb);
      cell.b += rb;
      if constexpr (!kLight) {
        RowAVec ra;
        std::memcpy(&ra, row_a + kRowA * j, sizeof ra);
        cell.a += ra;
        RowCVec rc;
        std::memcpy(&rc, row_c + kRowC * j, sizeof rc);
        cell.c += rc;
      }
      if constexpr (kManyBins) {
        const uint64_t count = cell_count<kLight>(cell);
        if (count == 1) touched.push_back(&cell - cells);
        if (count == uint64_t(kFoldEvery)) fold_binary_cell(&cell - cells, fold_to);
      }
    };
    int64_t i = 0;
    if constexpr (!kManyBins) {
      for (; i + kCopies <= len; i += kCopies)
        for (int copy = 0; copy < kCopies; ++copy)
          add(cells[copy * stride + cell_of[i + copy]], i + copy);
    }
    for (; i < len; ++i) add(cells[cell_of[i]], i);
  }

  // Steps 2 and 3 of a 0/1 tile; returns false if `src` found an invalid sample.
  template <bool kLight, class Source>
  bool binary_tile(int64_t len, const Source& src) {
    VI bad = {};
    if (job.uniform)
      job.template terms_binary<kLight, true>(s, len, src, bad);
    else
      job.template terms_binary<kLight, false>(s, len, src, bad);
    if (simd::any(bad)) return false;
    if (many_bins)
      scatter_binary<kLight, true>(len);
    else
      scatter_binary<kLight, false>(len);
    return true;
  }
  template <class Source>
  bool binary_tile(int64_t len, const Source& src) {
    return a.light ? binary_tile<true>(len, src) : binary_tile<false>(len, src);
  }

  void soft_tile(int64_t len) {
    if (weighted) {
      if (a.light)
        job.template terms_soft<true, true>(s, len);
      else
        job.template terms_soft<true, false>(s, len);
    } else {
      if (a.light)
        job.template terms_soft<false, true>(s, len);
      else
        job.template terms_soft<false, false>(s, len);
    }
    scatter_soft(len);
  }

  void scatter_soft(int64_t len) {
    used_soft = true;
    if (scells.empty()) scells.assign(size_t(copies * n_bins), SoftCell{});
    SoftCell* cells = scells.data();
    const int first = weighted ? 0 : 1;
    for (int64_t i = 0; i < len; ++i) {
      SoftCell& cell = cells[(i % copies) * n_bins + s.bin[size_t(i)]];
      cell.count += 1;
      for (int f = first; f < calib::kNumFields; ++f) {
        if (a.light && (f == calib::kSqError || f == calib::kNll || f == calib::kSpiegelhalterVar))
          continue;
        cell.s[f] += join(s.lo(f), s.hi(f), i);
      }
    }
  }

  // Moves binary cell `index` (of bcells) into `out` and clears it.
  void fold_binary_cell(int64_t index, BinState* out) {
    BinaryCell& cell = bcells[size_t(index)];
    const uint64_t count = a.light ? cell_count<true>(cell) : cell_count<false>(cell);
    if (count == 0) return;
    const uint64_t low32 = (uint64_t(1) << 32) - 1, low40 = (uint64_t(1) << 40) - 1;
    const int64_t b = (index % (2 * n_bins)) / 2;
    BinState& st = out[b];
    st.count += int64_t(count);
    const U128 cnt{0, count};  // count * 2^64: the weight, and y = 1 per sample
    const U128 conf = a.light ? from_split(cell.b[kLightHiC], kLoConf, cell.b[kLightLoCN] & low32)
                              : from_split(cell.a[kHiC], kLoConf, cell.a[kLoCSq] & low32);
    calib::add_to(st.sum[calib::kWeight], cnt);
    calib::add_to(st.sum[calib::kConf], conf);
    if (!a.light) {
      calib::add_to(st.sum[calib::kSqError],
                    from_split(cell.a[kHiSq], kLoConf, cell.a[kLoCSq] >> 32));
      calib::add_to(st.sum[calib::kNll],
                    from_split(cell.b[kHiNll], kLoNll, cell.b[kLoNllN] & low40));
      calib::add_to(st.sum[calib::kSpiegelhalterVar],
                    from_split(cell.c[kHiVar], kLoConf, cell.c[kLoVar]));
    }
    if (index % 2 == 1) {  // y = 1
      calib::add_to(st.sum[calib::kCorrect], cnt);
      calib::add_to(st.sum[calib::kCorrectSq], cnt);
      calib::add_to(st.sum[calib::kConfCorrect], conf);
    }
    std::memset(static_cast<void*>(&cell), 0, sizeof cell);
  }

  // Moves the cells into `out` (per-bin states) and clears them.
  void fold(BinState* out) {
    if (used_binary) {
      if (many_bins) {
        for (const int64_t index : touched) fold_binary_cell(index, out);
        touched.clear();
      } else {
        for (int64_t index = 0; index < int64_t(bcells.size()); ++index)
          fold_binary_cell(index, out);
      }
      used_binary = false;
      since_fold = 0;
    }
    if (used_soft) {
      for (int copy = 0; copy < copies; ++copy) {
        for (int64_t b = 0; b < n_bins; ++b) {
          SoftCell& cell = scells[size_t(copy * n_bins + b)];
          if (cell.count == 0) continue;
          BinState& st = out[b];
          st.count += int64_t(cell.count);
          if (!weighted) calib::add_to(st.sum[calib::kWeight], U128{0, cell.count});
          for (int f = weighted ? 0 : 1; f < calib::kNumFields; ++f)
            calib::add_to(st.sum[f], to_u128(cell.s[f]));
          std::memset(static_cast<void*>(&cell), 0, sizeof cell);
        }
      }
      used_soft = false;
    }
  }

  // Adds unit `unit`'s part (this->block) times each replicate's Poisson weight.
  void flush_bootstrap(int64_t unit, U128* boot_bins, U128* boot_totals) {
    using namespace calib;
    U128 totals[kNumBootTotalFields] = {};
    nonempty.clear();
    for (int64_t b = 0; b < n_bins; ++b) {
      if (block[size_t(b)].count == 0) continue;
      add_to(totals[kBootSqError], block[size_t(b)].sum[kSqError]);
      add_to(totals[kBootNll], block[size_t(b)].sum[kNll]);
      nonempty.push_back(b);
    }
    if (nonempty.empty()) return;
    // Unweighted 0/1 data (the common case): the bins' weights and label sums are whole numbers
    // (their low words are 0), so a replicate adds w * count to the high word alone. The
    // unit's parts are gathered into a compact list first.
    bool whole = true;
    parts.clear();
    for (const int64_t b : nonempty) {
      const BinState& st = block[size_t(b)];
      whole &= (st.sum[kWeight].lo | st.sum[kCorrect].lo) == 0;
      parts.push_back(
          {b * kNumBootBinFields, st.sum[kWeight].hi, st.sum[kCorrect].hi, st.sum[kConf]});
    }
    const uint64_t key = bootstrap_unit_key(a.seed, uint64_t(unit));
    for (int64_t r = 0; r < a.n_bootstrap; ++r) {
      const uint32_t w = bootstrap_weight(key, uint64_t(r));
      if (w == 0) continue;
      U128* rb = boot_bins + r * n_bins * kNumBootBinFields;
      if (whole) {
        for (const UnitPart& part : parts) {
          U128* dst = rb + part.offset;
          dst[kBootWeight].hi += part.weight_hi * w;  // = add_mul_to with a zero low word
          add_mul_to(dst[kBootConf], part.conf, w);
          dst[kBootCorrect].hi += part.correct_hi * w;
        }
      } else {
        for (const int64_t b : nonempty) {
          const BinState& st = block[size_t(b)];
          U128* dst = rb + b * kNumBootBinFields;
          add_mul_to(dst[kBootWeight], st.sum[kWeight], w);
          add_mul_to(dst[kBootConf], st.sum[kConf], w);
          add_mul_to(dst[kBootCorrect], st.sum[kCorrect], w);
        }
      }
      U128* rt = boot_totals + r * kNumBootTotalFields;
      for (int f = 0; f < kNumBootTotalFields; ++f) add_mul_to(rt[f], totals[f], w);
    }
  }

  // Processes samples [begin, end); returns the position of the first invalid sample or -1.
  int64_t run(int64_t begin, int64_t end, BinState* bins, U128* boot_bins, U128* boot_totals) {
    const bool boot = a.n_bootstrap > 0;
    fold_to = boot ? block.data() : bins;
    const bool direct =
        binary_input && !weighted && job.uniform && a.conf_stride == 1 && a.correct_stride == 1;
    int64_t pos = begin;
    while (pos < end) {
      int64_t seg_end = std::min(end, pos + kTile);
      int64_t unit = 0, unit_end = end;
      if (boot) {
        unit = (a.offset + pos) / a.block;
        unit_end = std::min(end, (unit + 1) * a.block - a.offset);
        seg_end = std::min(seg_end, unit_end);
      }
      const int64_t len = seg_end - pos;
      if (direct) {  // the common case: one pass from the inputs to the cell words
        const InputSource<CT, YT> src{static_cast<const CT*>(a.confidence) + pos,
                                      static_cast<const YT*>(a.correct) + pos, len};
        if (!binary_tile(len, src)) return pos + first_bad<CT, YT>(a, pos, len);
        if (!many_bins && since_fold >= kFoldEvery) fold(fold_to);
      } else {
        const int64_t bad =
            load_tile<CT, YT>(a, pos, len, s.c.data(), s.y.data(), weighted ? s.w.data() : nullptr);
        if (bad >= 0) return pos + bad;
        const bool binary = tile_is_binary(len);
        if (!binary || !job.uniform) job.bins_of_tile(s, len);  // else computed with the terms
        if (binary) {
          binary_tile(len, ScratchSource{s});
          if (!many_bins && since_fold >= kFoldEvery) fold(fold_to);
        } else {
          soft_tile(len);
        }
      }
      pos = seg_end;
      if (boot && pos == unit_end) {
        fold(block.data());
        flush_bootstrap(unit, boot_bins, boot_totals);  // lists the non-empty bins
        for (const int64_t b : nonempty) {
          bins[b].merge(block[size_t(b)]);
          std::memset(static_cast<void*>(&block[size_t(b)]), 0, sizeof(BinState));
        }
      }
    }
    if (!boot) fold(bins);
    return -1;
  }
};

template <class CT, class YT>
int64_t run_typed(const CalibrationArgs& a, int64_t begin, int64_t end, BinState* bins,
                  U128* boot_bins, U128* boot_totals) {
  const Job job(a);
  RangeRunner<CT, YT> runner(a, job);
  return runner.run(begin, end, bins, boot_bins, boot_totals);
}

template <class CT>
int64_t run_conf(const CalibrationArgs& a, int64_t begin, int64_t end, BinState* bins,
                 U128* boot_bins, U128* boot_totals) {
  switch (a.correct_type) {
    case CorrectType::kUInt8:
      return run_typed<CT, uint8_t>(a, begin, end, bins, boot_bins, boot_totals);
    case CorrectType::kInt32:
      return run_typed<CT, int32_t>(a, begin, end, bins, boot_bins, boot_totals);
    case CorrectType::kInt64:
      return run_typed<CT, int64_t>(a, begin, end, bins, boot_bins, boot_totals);
    case CorrectType::kFloat32:
      return run_typed<CT, float>(a, begin, end, bins, boot_bins, boot_totals);
    case CorrectType::kFloat64:
      return run_typed<CT, double>(a, begin, end, bins, boot_bins, boot_totals);
  }
  return -2;
}

}  // namespace

// One contiguous range of samples into per-bin states and replicate sums (zero-initialised by
// the caller); returns the first invalid position, -1 if none, -2 for unsupported types.
int64_t calibration_range(const CalibrationArgs& a, int64_t begin, int64_t end, BinState* bins,
                          U128* boot_bins, U128* boot_totals) {
  if (a.conf_type == ConfType::kFloat32)
    return run_conf<float>(a, begin, end, bins, boot_bins, boot_totals);
  return run_conf<double>(a, begin, end, bins, boot_bins, boot_totals);
}

}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
