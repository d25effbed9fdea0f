// The CPU calibration kernel: one pass over (confidence, correctness[, weight]) samples into
// exact per-bin fixed-point sums, and the Poisson bootstrap replicates in the same pass.
//
// Compiled once per instruction-set level by calibration_kernels_{baseline,avx2,avx512}.cpp,
// each defining LOGCAL_ISA_NAMESPACE first, and always with -ffp-contract=off: the per-sample
// terms must be the same bits at every level (see calibration.h).
//
// A range of samples is processed in tiles that stay in L1:
//   1. load: convert the tile's inputs to double, check validity (stop at the first bad one);
//   2. compute (vectorised): bin index, c^2, the NLL term, and each term's fixed-point value;
//   3. scatter (scalar): add the terms into per-bin cells. Four copies of the cells, used in
//      turn, break the store-to-load dependency between neighbours that fall in the same bin.
// With 0/1 correctness the cells are (bin, correct) pairs holding count, sum c, sum (c-y)^2 and
// sum nll: sum y, sum c*y and sum y^2 follow from the cell a sample is in, so each sample costs
// four additions. Soft labels or weights use per-bin cells with all seven sums.
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including calibration_kernels_impl.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "isa_local.h"
#include "logcal/calibration.h"
#include "logcal/cpu_calibration.h"
#include "simd.h"

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

// int64 -> double for |k| < 2^51 (the exponent of log), exactly, on every level.
LOGCAL_HD VD from_small_int(VI k) {
  const VD magic = simd::broadcast(6755399441055744.0);  // 1.5 * 2^52
  VU u = bits_of(magic) + VU(k);
  return from_bits(u) - magic;
}

// calib::log_det, lane by lane with the same operations: bit-identical to the scalar one.
LOGCAL_HD VD log_det(VD x) {
  using L = calib::LogConstants;
  const VU bits = bits_of(x);
  VU hx = bits >> 32;
  VI k = VI(hx >> 20) - 1023;
  hx &= 0x000fffffu;
  const VU i = (hx + 0x95f64u) & 0x100000u;
  const VD xn = from_bits(((hx | (i ^ 0x3ff00000u)) << 32) | (bits & 0xffffffffu));
  k += VI(i >> 20);
  const VD f = xn - 1.0;
  const VD s = f / (2.0 + f);
  const VD dk = from_small_int(k);
  const VD z = s * s;
  const VD w = z * z;
  const VD t1 = w * (L::lg2 + w * (L::lg4 + w * L::lg6));
  const VD t2 = z * (L::lg1 + w * (L::lg3 + w * (L::lg5 + w * L::lg7)));
  const VD r = t2 + t1;
  const VD hfsq = 0.5 * f * f;
  return dk * L::ln2_hi - ((hfsq - (s * (hfsq + r) + dk * L::ln2_lo)) - f);
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

// The halves a = floor(v 2^32), b = floor(v 2^64) mod 2^32 of T(v), for 0 <= v < 2^19 (so that
// v 2^32 < 2^51): exact (scalings by powers of two and the fraction x - floor(x) are exact), so
// a * 2^32 + b is the same T(v) as to_fixed gives -- in fewer operations.
LOGCAL_HD void to_fixed_halves(VD v, VU& a, VU& b) {
  const VD t = v * 4294967296.0;
  const VD af = floor_nonneg(t);
  a = to_index(af);
  b = to_index(floor_nonneg((t - af) * 4294967296.0));
}

LOGCAL_HD VD clip(VD c, VD eps, VD one_minus_eps) {
  const VD lo = c < eps ? eps : c;
  return lo > one_minus_eps ? one_minus_eps : lo;
}

// --- step 1: load and check ------------------------------------------------------------------

// W confidences at p (contiguous, or with a stride and `count` valid lanes), as doubles.
template <class T>
inline VD load_conf(const T* p) {
  if constexpr (std::is_same_v<T, double>) {
    return simd::load(p);
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
    // Widen straight to the 64-bit lanes of the doubles (one zero/sign extension): going
    // through 32-bit lanes made GCC unpack the bytes one by one (measured: ~10% of the pass).
    typedef T VT __attribute__((vector_size(sizeof(T) * W)));
    VT raw;
    std::memcpy(&raw, v, sizeof raw);
    const VI y = __builtin_convertvector(raw, VI);
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

// Loads [begin, begin + len) as doubles into cbuf / ybuf / wbuf; returns the offset of the first
// invalid sample in the tile, or -1. Positions past len are padded with harmless values.
// Validity is checked on the widened values: an integer converts to 0.0 or 1.0 only from 0 or 1.
template <class CT, class YT>
int64_t load_tile(const CalibrationArgs& a, int64_t begin, int64_t len, double* cbuf, double* ybuf,
                  double* wbuf) {
  const CT* c = static_cast<const CT*>(a.confidence) + begin * a.conf_stride;
  const YT* y = static_cast<const YT*>(a.correct) + begin * a.correct_stride;
  constexpr bool kIntY = !std::is_floating_point_v<YT>;
  VI bad = {};
  const VD zero = {}, one = VD{} + 1.0;
  const int64_t full = len / W * W;
  if (a.conf_stride == 1 && a.correct_stride == 1) {
    for (int64_t i = 0; i < full; i += W) {
      const VD cv = load_conf(c + i);
      bad |= ~((cv >= zero) & (cv <= one));
      simd::store(cbuf + i, cv);
      simd::store(ybuf + i, load_correct(y + i, bad));
    }
  } else {
    for (int64_t i = 0; i < full; i += W) {
      const VD cv = load_conf(c + i * a.conf_stride, a.conf_stride, W);
      bad |= ~((cv >= zero) & (cv <= one));
      simd::store(cbuf + i, cv);
      simd::store(ybuf + i, load_correct(y + i * a.correct_stride, a.correct_stride, W, bad));
    }
  }
  if (full < len) {  // the tail, padded with (0.5, 0)
    const VD cv = load_conf(c + full * a.conf_stride, a.conf_stride, len - full);
    bad |= ~((cv >= zero) & (cv <= one));
    simd::store(cbuf + full, cv);
    simd::store(ybuf + full,
                load_correct(y + full * a.correct_stride, a.correct_stride, len - full, bad));
  }
  if (wbuf != nullptr) {
    const double* w = a.weights + begin * a.weight_stride;
    for (int64_t i = 0; i < len; ++i) wbuf[i] = w[i * a.weight_stride];
    for (int64_t i = len; i < (len + W - 1) / W * W; ++i) wbuf[i] = 0.0;
  }
  if (!simd::any(bad)) return -1;
  for (int64_t i = 0; i < len; ++i) {  // rare: find the first bad sample from the raw inputs
    const double cv = static_cast<double>(c[i * a.conf_stride]);
    const YT yv = y[i * a.correct_stride];
    const bool y_ok = kIntY ? (yv == YT(0) || yv == YT(1)) : (yv >= YT(0) && yv <= YT(1));
    if (!(cv >= 0.0 && cv <= 1.0) || !y_ok) return i;
  }
  return -1;
}

// --- the per-bin cells of a range ------------------------------------------------------------

// 0/1 correctness: cell 2k + y holds the count and, for c, (c-y)^2 and nll, the sums of the two
// 32-bit halves of each fixed-point term (T = a * 2^32 + b): plain 64-bit additions with no carry
// to propagate. A half of one term is below 2^42, so the cells are folded into 128-bit sums at
// least every kFoldEvery samples, long before a 64-bit half-sum could overflow. One cache line.
struct alignas(64) BinaryCell {
  uint64_t count;
  uint64_t a[3];
  uint64_t b[3];
  uint64_t pad;
};
static_assert(sizeof(BinaryCell) == 64, "one cache line");
constexpr int64_t kFoldEvery = int64_t(1) << 20;

inline U128 from_halves(uint64_t a, uint64_t b) {  // a * 2^32 + b
  U128 r{a << 32, a >> 32};
  calib::add_to(r, b, 0);
  return r;
}

// Soft labels or weights: cell k holds count and the seven sums of calib::Field.
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
  Vector<double> c, y, w;
  Vector<int64_t> bin;
  Vector<uint64_t> t;  // fixed-point terms: [field][kTile] lo, then hi
  explicit Scratch(bool weighted)
      : c(kTile + W),
        y(kTile + W),
        w(weighted ? kTile + W : 0),
        bin(kTile + W),
        t(2 * calib::kNumFields * (kTile + W)) {}
  uint64_t* lo(int f) { return t.data() + (2 * f) * (kTile + W); }
  uint64_t* hi(int f) { return t.data() + (2 * f + 1) * (kTile + W); }
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
  VD uniform_bins(VD c, VI& rounded_onto) const {
    const VD p = c * nd;
    const VD r = floor_nonneg(p);
    rounded_onto |= (r == p) & (p > 0.0);
    return r;
  }

  // Bins from explicit edges, one sample at a time (step 3 is scalar anyway).
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

  void bins_of_tile(Scratch& s, int64_t len) const {
    const int64_t n_vec = (len + W - 1) / W;
    if (uniform) {
      VI rounded_onto = {};
      for (int64_t v = 0; v < n_vec; ++v) {
        VD r = uniform_bins(simd::load(s.c.data() + v * W), rounded_onto);
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
      for (int64_t i = 0; i < len; ++i) s.bin[size_t(i)] = edge_bin(s.c[size_t(i)]);
    }
  }

  // Step 2 for 0/1 correctness: fixed-point c, (c-y)^2 and nll (fields 0, 1, 2 of the scratch),
  // with the very operations of terms_soft, so that both paths give the same bits.
  // Also turns s.bin into the cell index 2 * bin + y. kLight: c only (field 0).
  template <bool kLight>
  void terms_binary(Scratch& s, int64_t len) const {
    const int64_t n_vec = (len + W - 1) / W;
    for (int64_t v = 0; v < n_vec; ++v) {
      const VD c = simd::load(s.c.data() + v * W);
      const VD y = simd::load(s.y.data() + v * W);
      VI bin;
      std::memcpy(&bin, s.bin.data() + v * W, sizeof bin);
      bin = bin + bin - VI(y != 0.0);  // true is -1
      std::memcpy(s.bin.data() + v * W, &bin, sizeof bin);
      if constexpr (kLight) {
        VU ha, hb;
        to_fixed_halves(c, ha, hb);
        store_u(s.lo(0) + v * W, ha);
        store_u(s.hi(0) + v * W, hb);
        continue;
      }
      const VD cc = clip(c, eps, one_minus_eps);
      const VD x = y != 0.0 ? cc : 1.0 - cc;
      const VD nll = -log_det(x);
      const VD val[3] = {c, (c - y) * (c - y), nll};
      for (int f = 0; f < 3; ++f) {  // halves a = T >> 32, b = T mod 2^32 (in lo(f), hi(f))
        VU ha, hb;
        to_fixed_halves(val[f], ha, hb);
        store_u(s.lo(f) + v * W, ha);
        store_u(s.hi(f) + v * W, hb);
      }
    }
  }

  // Step 2 for soft labels and/or weights: all seven fields, w * value in double first
  // (kLight: not sq_error and nll, which stay zero).
  template <bool kWeighted, bool kLight>
  void terms_soft(Scratch& s, int64_t len) const {
    const int64_t n_vec = (len + W - 1) / W;
    for (int64_t v = 0; v < n_vec; ++v) {
      const VD c = simd::load(s.c.data() + v * W);
      const VD y = simd::load(s.y.data() + v * W);
      VD nll = {}, sq = {};
      if constexpr (!kLight) {
        const VD cc = clip(c, eps, one_minus_eps);
        nll = -(y * log_det(cc) + (1.0 - y) * log_det(1.0 - cc));
        sq = (c - y) * (c - y);
      }
      VD val[calib::kNumFields] = {VD{} + 1.0, c, y, sq, c * y, y * y, nll};
      if constexpr (kWeighted) {
        const VD wt = simd::load(s.w.data() + v * W);
        val[0] = wt;
        for (int f = 1; f < calib::kNumFields; ++f) val[f] = wt * val[f];
      }
      for (int f = kWeighted ? 0 : 1; f < calib::kNumFields; ++f) {
        VU lo, hi;
        to_fixed(val[f], lo, hi);
        store_u(s.lo(f) + v * W, lo);
        store_u(s.hi(f) + v * W, hi);
      }
    }
  }

  static void store_u(uint64_t* p, VU v) { std::memcpy(p, &v, sizeof v); }
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
  Scratch s;
  Vector<BinaryCell> bcells;  // [kCopies][2 * n_bins]
  Vector<SoftCell> scells;    // [kCopies][n_bins]
  Vector<BinState> block;     // the current bootstrap unit's part of this range
  bool used_binary = false, used_soft = false;
  int64_t since_fold = 0;  // samples in the binary cells since they were last folded

  RangeRunner(const CalibrationArgs& args, const Job& j)
      : a(args),
        job(j),
        binary_input(!std::is_floating_point_v<YT>),
        weighted(args.weights != nullptr),
        n_bins(args.n_bins),
        s(args.weights != nullptr),
        bcells(size_t(kCopies * 2 * args.n_bins)),
        scells(size_t(kCopies * args.n_bins)),
        block(args.n_bootstrap > 0 ? size_t(args.n_bins) : 0) {
    std::memset(static_cast<void*>(bcells.data()), 0, bcells.size() * sizeof(BinaryCell));
    std::memset(static_cast<void*>(scells.data()), 0, scells.size() * sizeof(SoftCell));
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
  void scatter_binary(int64_t len) {
    used_binary = true;
    since_fold += len;
    const uint64_t *a0 = s.lo(0), *b0 = s.hi(0), *a1 = s.lo(1), *b1 = s.hi(1), *a2 = s.lo(2),
                   *b2 = s.hi(2);
    const int64_t* cell_of = s.bin.data();
    const int64_t stride = 2 * n_bins;
    BinaryCell* cells = bcells.data();
    auto add = [&](BinaryCell& cell, int64_t j) {
      cell.count += 1;
      cell.a[0] += a0[j];
      cell.b[0] += b0[j];
      if constexpr (kLight) return;
      cell.a[1] += a1[j];
      cell.b[1] += b1[j];
      cell.a[2] += a2[j];
      cell.b[2] += b2[j];
    };
    int64_t i = 0;
    for (; i + kCopies <= len; i += kCopies)
      for (int copy = 0; copy < kCopies; ++copy)
        add(cells[copy * stride + cell_of[i + copy]], i + copy);
    for (; i < len; ++i) add(cells[cell_of[i]], i);
  }

  void scatter_soft(int64_t len) {
    used_soft = true;
    SoftCell* cells = scells.data();
    const int first = weighted ? 0 : 1;
    for (int64_t i = 0; i < len; ++i) {
      SoftCell& cell = cells[(i % kCopies) * n_bins + s.bin[size_t(i)]];
      cell.count += 1;
      for (int f = first; f < calib::kNumFields; ++f) {
        if (a.light && (f == calib::kSqError || f == calib::kNll)) continue;
        cell.s[f] += join(s.lo(f), s.hi(f), i);
      }
    }
  }

  // Moves the cells into `out` (per-bin states) and clears them.
  void fold(BinState* out) {
    if (used_binary) {
      for (int copy = 0; copy < kCopies; ++copy) {
        for (int64_t b = 0; b < n_bins; ++b) {
          for (int y = 0; y < 2; ++y) {
            BinaryCell& cell = bcells[size_t(copy * 2 * n_bins + 2 * b + y)];
            if (cell.count == 0) continue;
            BinState& st = out[b];
            st.count += int64_t(cell.count);
            const U128 cnt{0, cell.count};  // count * 2^64: the weight, and y = 1 per sample
            const U128 conf = from_halves(cell.a[0], cell.b[0]);
            calib::add_to(st.sum[calib::kWeight], cnt);
            calib::add_to(st.sum[calib::kConf], conf);
            calib::add_to(st.sum[calib::kSqError], from_halves(cell.a[1], cell.b[1]));
            calib::add_to(st.sum[calib::kNll], from_halves(cell.a[2], cell.b[2]));
            if (y == 1) {
              calib::add_to(st.sum[calib::kCorrect], cnt);
              calib::add_to(st.sum[calib::kCorrectSq], cnt);
              calib::add_to(st.sum[calib::kConfCorrect], conf);
            }
            std::memset(static_cast<void*>(&cell), 0, sizeof cell);
          }
        }
      }
      used_binary = false;
      since_fold = 0;
    }
    if (used_soft) {
      for (int copy = 0; copy < kCopies; ++copy) {
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
    int64_t nonempty[64];
    int64_t n_nonempty = 0;
    bool many = false;
    for (int64_t b = 0; b < n_bins; ++b) {
      if (block[size_t(b)].count == 0) continue;
      add_to(totals[kBootSqError], block[size_t(b)].sum[kSqError]);
      add_to(totals[kBootNll], block[size_t(b)].sum[kNll]);
      if (n_nonempty < 64)
        nonempty[n_nonempty++] = b;
      else
        many = true;
    }
    if (n_nonempty == 0) return;
    const uint64_t key = bootstrap_unit_key(a.seed, uint64_t(unit));
    for (int64_t r = 0; r < a.n_bootstrap; ++r) {
      const uint32_t w = bootstrap_weight(key, uint64_t(r));
      if (w == 0) continue;
      U128* rb = boot_bins + r * n_bins * kNumBootBinFields;
      auto add_bin = [&](int64_t b) {
        const BinState& st = block[size_t(b)];
        U128* dst = rb + b * kNumBootBinFields;
        add_mul_to(dst[kBootWeight], st.sum[kWeight], w);
        add_mul_to(dst[kBootConf], st.sum[kConf], w);
        add_mul_to(dst[kBootCorrect], st.sum[kCorrect], w);
      };
      if (!many) {
        for (int64_t j = 0; j < n_nonempty; ++j) add_bin(nonempty[j]);
      } else {
        for (int64_t b = 0; b < n_bins; ++b)
          if (block[size_t(b)].count != 0) add_bin(b);
      }
      U128* rt = boot_totals + r * kNumBootTotalFields;
      for (int f = 0; f < kNumBootTotalFields; ++f) add_mul_to(rt[f], totals[f], w);
    }
  }

  // Processes samples [begin, end); returns the position of the first invalid sample or -1.
  int64_t run(int64_t begin, int64_t end, BinState* bins, U128* boot_bins, U128* boot_totals) {
    const bool boot = a.n_bootstrap > 0;
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
      const int64_t bad =
          load_tile<CT, YT>(a, pos, len, s.c.data(), s.y.data(), weighted ? s.w.data() : nullptr);
      if (bad >= 0) return pos + bad;
      job.bins_of_tile(s, len);
      if (tile_is_binary(len)) {
        if (a.light) {
          job.template terms_binary<true>(s, len);
          scatter_binary<true>(len);
        } else {
          job.template terms_binary<false>(s, len);
          scatter_binary<false>(len);
        }
        if (since_fold >= kFoldEvery) fold(boot ? block.data() : bins);
      } else {
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
      pos = seg_end;
      if (boot && pos == unit_end) {
        fold(block.data());
        flush_bootstrap(unit, boot_bins, boot_totals);
        for (int64_t b = 0; b < n_bins; ++b) {
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
