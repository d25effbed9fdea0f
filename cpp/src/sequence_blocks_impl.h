// The block kernels of sequence_stats (see sequence_blocks.h), for the instruction-set level of
// the including file, which defines LOGCAL_ISA_NAMESPACE first. Everything here lives in that
// namespace, so the copies built for different levels never meet at link time.
//
// A block is summed in 8 double lanes (token i into lane i % 8), its minimum kept in 8 lanes of
// the input type; a masked-out token enters the sum as +0.0 and the minimum as +inf. NaN is
// found through the sum (a counted NaN makes it NaN); a NaN sum, rare, sends the block to a scan
// that tells a NaN from inf + (-inf). The tail and the combination of the lanes are scalar and
// shared by every level.
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including sequence_blocks_impl.h"
#endif

#include <cstring>
#include <limits>

#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "logcal/half.h"
#include "sequence_blocks.h"

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace {

constexpr int kL = kSeqLanes;
static_assert(kL == 8, "the vector loops hold 8 lanes");

template <class T>
inline T load_vec(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Tail tokens into their lanes, then the fixed combination. m may be null (no mask).
template <class C>
SeqPartial finish(double* acc, C* mn, int64_t count, const C* x, const uint8_t* m, int64_t i,
                  int64_t n) {
  for (int j = 0; i + j < n; ++j) {
    const C v = x[i + j];
    const bool keep = !m || m[i + j] != 0;
    acc[j] += keep ? double(v) : 0.0;
    mn[j] = (keep && v < mn[j]) ? v : mn[j];
    count += keep;
  }
  SeqPartial p;
  p.sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  double lo = std::numeric_limits<double>::infinity();
  for (int j = 0; j < kL; ++j) lo = double(mn[j]) < lo ? double(mn[j]) : lo;
  p.min = lo;
  p.nan = false;
  if (p.sum != p.sum)
    for (int64_t k = 0; k < n; ++k) p.nan = p.nan || ((!m || m[k] != 0) && x[k] != x[k]);
  p.count = count;
  return p;
}

#if defined(__AVX512F__)
// One 8-lane vector of each kind.
typedef float V8f __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));
typedef double V8d __attribute__((vector_size(64)));
typedef int64_t V8l __attribute__((vector_size(64)));

inline V8i keep32(const uint8_t* m) {
  return V8i(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)))) != 0;
}
inline V8l keep64(const uint8_t* m) {
  // The zero-masking form: the plain one trips -Wmaybe-uninitialized inside GCC 12's header.
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
  return V8l(_mm512_maskz_cvtepu8_epi64(__mmask8(0xFF), b)) != 0;
}

template <bool kMasked>
SeqPartial block_f32(const float* x, const uint8_t* m, int64_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  const V8f inf8 = {inf, inf, inf, inf, inf, inf, inf, inf};
  V8d a = {};
  V8f mn = inf8;
  V8i cnt = {};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    V8f v = load_vec<V8f>(x + i);
    if (kMasked) {
      const V8i k = keep32(m + i);
      a += __builtin_convertvector(V8f(V8i(v) & k), V8d);
      v = V8f((V8i(v) & k) | (V8i(inf8) & ~k));
      cnt -= k;
    } else {
      a += __builtin_convertvector(v, V8d);
    }
    mn = v < mn ? v : mn;
  }
  double acc[kL];
  float lo[kL];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kL; ++j) {
    acc[j] = a[j];
    lo[j] = mn[j];
    if (kMasked) count += cnt[j];
  }
  return finish(acc, lo, count, x, kMasked ? m : nullptr, i, n);
}

template <bool kMasked>
SeqPartial block_f64(const double* x, const uint8_t* m, int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  const V8d inf8 = {inf, inf, inf, inf, inf, inf, inf, inf};
  V8d a = {};
  V8d mn = inf8;
  V8l cnt = {};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    V8d v = load_vec<V8d>(x + i);
    if (kMasked) {
      const V8l k = keep64(m + i);
      a += V8d(V8l(v) & k);
      v = V8d((V8l(v) & k) | (V8l(inf8) & ~k));
      cnt -= k;
    } else {
      a += v;
    }
    mn = v < mn ? v : mn;
  }
  double acc[kL];
  double lo[kL];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kL; ++j) {
    acc[j] = a[j];
    lo[j] = mn[j];
    if (kMasked) count += cnt[j];
  }
  return finish(acc, lo, count, x, kMasked ? m : nullptr, i, n);
}

#elif defined(__AVX2__)
// Two 4-lane vectors of each kind: lanes 0-3 and 4-7.
typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));
typedef double V4d __attribute__((vector_size(32)));
typedef int64_t V4l __attribute__((vector_size(32)));

inline V4i keep32(const uint8_t* m) {
  int32_t bytes;
  std::memcpy(&bytes, m, 4);
  return V4i(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(bytes))) != 0;
}
inline V4l keep64(const uint8_t* m) {
  int32_t bytes;
  std::memcpy(&bytes, m, 4);
  return V4l(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(bytes))) != 0;
}

template <bool kMasked>
SeqPartial block_f32(const float* x, const uint8_t* m, int64_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  const V4f inf4 = {inf, inf, inf, inf};
  V4d a[2] = {};
  V4f mn[2] = {inf4, inf4};
  V4i cnt[2] = {};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    for (int h = 0; h < 2; ++h) {
      V4f v = load_vec<V4f>(x + i + 4 * h);
      if (kMasked) {
        const V4i k = keep32(m + i + 4 * h);
        a[h] += __builtin_convertvector(V4f(V4i(v) & k), V4d);
        v = V4f((V4i(v) & k) | (V4i(inf4) & ~k));
        cnt[h] -= k;
      } else {
        a[h] += __builtin_convertvector(v, V4d);
      }
      mn[h] = v < mn[h] ? v : mn[h];
    }
  }
  double acc[kL];
  float lo[kL];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kL; ++j) {
    acc[j] = a[j / 4][j % 4];
    lo[j] = mn[j / 4][j % 4];
    if (kMasked) count += cnt[j / 4][j % 4];
  }
  return finish(acc, lo, count, x, kMasked ? m : nullptr, i, n);
}

template <bool kMasked>
SeqPartial block_f64(const double* x, const uint8_t* m, int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  const V4d inf4 = {inf, inf, inf, inf};
  V4d a[2] = {};
  V4d mn[2] = {inf4, inf4};
  V4l cnt[2] = {};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    for (int h = 0; h < 2; ++h) {
      V4d v = load_vec<V4d>(x + i + 4 * h);
      if (kMasked) {
        const V4l k = keep64(m + i + 4 * h);
        a[h] += V4d(V4l(v) & k);
        v = V4d((V4l(v) & k) | (V4l(inf4) & ~k));
        cnt[h] -= k;
      } else {
        a[h] += v;
      }
      mn[h] = v < mn[h] ? v : mn[h];
    }
  }
  double acc[kL];
  double lo[kL];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kL; ++j) {
    acc[j] = a[j / 4][j % 4];
    lo[j] = mn[j / 4][j % 4];
    if (kMasked) count += cnt[j / 4][j % 4];
  }
  return finish(acc, lo, count, x, kMasked ? m : nullptr, i, n);
}

#else
// 16-byte vectors (baseline x86-64 is SSE2): float lanes 0-3 and 4-7, double lanes in pairs.
typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));
typedef double V2d __attribute__((vector_size(16)));
typedef int64_t V2l __attribute__((vector_size(16)));

// float32 lanes 0-1 and 2-3 of v as doubles. GCC scalarises __builtin_convertvector of half
// vectors, so on x86 this is spelled with the SSE2 intrinsics.
inline void widen(V4f v, V2d& lo, V2d& hi) {
#if defined(__SSE2__)
  const __m128 f = __m128(v);
  lo = V2d(_mm_cvtps_pd(f));
  hi = V2d(_mm_cvtps_pd(_mm_movehl_ps(f, f)));
#else
  lo = V2d{double(v[0]), double(v[1])};
  hi = V2d{double(v[2]), double(v[3])};
#endif
}

// Lane masks of the mask bytes m[0, 8): all ones where counted; lanes 0-3 and 4-7.
inline void keep32(const uint8_t* m, V4i& lo, V4i& hi) {
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

template <bool kMasked>
SeqPartial block_f32(const float* x, const uint8_t* m, int64_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  const V4f inf4 = {inf, inf, inf, inf};
  V2d a[4] = {};
  V4f mn[2] = {inf4, inf4};
  V4i cnt[2] = {};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    V4i k[2];
    if (kMasked) keep32(m + i, k[0], k[1]);
    for (int h = 0; h < 2; ++h) {
      V4f v = load_vec<V4f>(x + i + 4 * h);
      if (kMasked) {
        const V4f kept = V4f(V4i(v) & k[h]);
        v = V4f((V4i(v) & k[h]) | (V4i(inf4) & ~k[h]));
        cnt[h] -= k[h];
        V2d w0, w1;
        widen(kept, w0, w1);
        a[2 * h] += w0;
        a[2 * h + 1] += w1;
      } else {
        V2d w0, w1;
        widen(v, w0, w1);
        a[2 * h] += w0;
        a[2 * h + 1] += w1;
      }
      mn[h] = v < mn[h] ? v : mn[h];
    }
  }
  double acc[kL];
  float lo[kL];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kL; ++j) {
    acc[j] = a[j / 2][j % 2];
    lo[j] = mn[j / 4][j % 4];
    if (kMasked) count += cnt[j / 4][j % 4];
  }
  return finish(acc, lo, count, x, kMasked ? m : nullptr, i, n);
}

template <bool kMasked>
SeqPartial block_f64(const double* x, const uint8_t* m, int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  const V2d inf2 = {inf, inf};
  V2d a[4] = {};
  V2d mn[4] = {inf2, inf2, inf2, inf2};
  V4i cnt[2] = {};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    V2l k[4];
    if (kMasked) {
      V4i k0, k1;
      keep32(m + i, k0, k1);
      cnt[0] -= k0;
      cnt[1] -= k1;
      widen_mask(k0, k[0], k[1]);
      widen_mask(k1, k[2], k[3]);
    }
    for (int v = 0; v < 4; ++v) {
      V2d xv = load_vec<V2d>(x + i + 2 * v);
      if (kMasked) {
        a[v] += V2d(V2l(xv) & k[v]);
        xv = V2d((V2l(xv) & k[v]) | (V2l(inf2) & ~k[v]));
      } else {
        a[v] += xv;
      }
      mn[v] = xv < mn[v] ? xv : mn[v];
    }
  }
  double acc[kL];
  double lo[kL];
  int64_t count = kMasked ? 0 : i;
  for (int j = 0; j < kL; ++j) {
    acc[j] = a[j / 2][j % 2];
    lo[j] = mn[j / 2][j % 2];
    if (kMasked) count += cnt[j / 4][j % 4];
  }
  return finish(acc, lo, count, x, kMasked ? m : nullptr, i, n);
}
#endif

SeqPartial f32(const float* x, int64_t n) { return block_f32<false>(x, nullptr, n); }
SeqPartial f64(const double* x, int64_t n) { return block_f64<false>(x, nullptr, n); }
SeqPartial f32_masked(const float* x, const uint8_t* m, int64_t n) {
  return block_f32<true>(x, m, n);
}
SeqPartial f64_masked(const double* x, const uint8_t* m, int64_t n) {
  return block_f64<true>(x, m, n);
}

// 16-bit floats widened to float32, exactly (the conversions are branch-free: these loops
// vectorise at the level's width; with F16C GCC uses vcvtph2ps).
void widen_f16(const Float16* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_float(x[i].bits);
}
void widen_bf16(const BFloat16* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(x[i].bits);
}

}  // namespace

extern const SequenceBlocks kSequenceBlocks;
const SequenceBlocks kSequenceBlocks = {&f32,        &f64,       &f32_masked,
                                        &f64_masked, &widen_f16, &widen_bf16};

}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
