// Portable SIMD for the CPU kernels: GCC/Clang vector extensions, as wide as the instruction set
// of the translation unit that includes this file (see token_kernels_*.cpp): 64 bytes with
// AVX-512, 32 with AVX2, 16 otherwise. Wider-than-native generic vectors are not split well by
// compilers (measured: 15x slower on AVX2), so the width follows the target.
//
// Everything here lives in the per-ISA namespace of the including file, so the copies built for
// different instruction sets never meet at link time.
#pragma once
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including simd.h"
#endif

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "logcal/core/host_device.h"

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace simd {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

template <class T>
struct Vec;

template <>
struct Vec<float> {
  static constexpr int kLanes = kVectorBytes / 4;
  typedef float V __attribute__((vector_size(kVectorBytes)));
  typedef int32_t Mask __attribute__((vector_size(kVectorBytes)));  // comparisons: 0 or -1
  typedef uint32_t Bits __attribute__((vector_size(kVectorBytes)));
};

template <>
struct Vec<double> {
  static constexpr int kLanes = kVectorBytes / 8;
  typedef double V __attribute__((vector_size(kVectorBytes)));
  typedef int64_t Mask __attribute__((vector_size(kVectorBytes)));
  typedef uint64_t Bits __attribute__((vector_size(kVectorBytes)));
};

template <class T>
using V = typename Vec<T>::V;

template <class T>
LOGCAL_HD V<T> load(const T* p) {
  V<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
LOGCAL_HD void store(T* p, V<T> v) {
  std::memcpy(p, &v, sizeof v);
}

// Store that bypasses the caches (a non-temporal store), for outputs too large to stay cached:
// it skips the read-for-ownership of the destination line, so writing N bytes costs N bytes of
// memory traffic instead of 2N. `p` must be aligned to the vector size; call fence() after the
// last one. Falls back to an ordinary store where the instruction set has none.
LOGCAL_HD void stream(float* p, V<float> v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, reinterpret_cast<__m512&>(v));
#elif defined(__AVX__)
  _mm256_stream_ps(p, reinterpret_cast<__m256&>(v));
#elif defined(__SSE2__)
  _mm_stream_ps(p, reinterpret_cast<__m128&>(v));
#else
  store(p, v);
#endif
}

LOGCAL_HD void stream(double* p, V<double> v) {
#if defined(__AVX512F__)
  _mm512_stream_pd(p, reinterpret_cast<__m512d&>(v));
#elif defined(__AVX__)
  _mm256_stream_pd(p, reinterpret_cast<__m256d&>(v));
#elif defined(__SSE2__)
  _mm_stream_pd(p, reinterpret_cast<__m128d&>(v));
#else
  store(p, v);
#endif
}

// Orders earlier non-temporal stores before anything that follows (they are weakly ordered).
LOGCAL_HD void fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

template <class T>
LOGCAL_HD V<T> broadcast(T x) {
  return V<T>{} + x;
}

template <class T>
LOGCAL_HD V<T> max(V<T> a, V<T> b) {
  return a > b ? a : b;
}

template <class T>
LOGCAL_HD V<T> min(V<T> a, V<T> b) {
  return a < b ? a : b;
}

template <class T>
LOGCAL_HD T reduce_max(V<T> v) {
  T m = v[0];
  for (int i = 1; i < Vec<T>::kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

template <class T>
LOGCAL_HD double reduce_sum(V<T> v) {
  // Pairwise, in double: the per-lane partial sums are the last place rounding can creep in.
  double lanes[Vec<T>::kLanes];
  for (int i = 0; i < Vec<T>::kLanes; ++i) lanes[i] = double(v[i]);
  for (int width = Vec<T>::kLanes / 2; width > 0; width /= 2)
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  return lanes[0];
}

// acc_lo / acc_hi += v, widened to double (both halves of a float vector; for a double vector,
// all of it into acc_lo): running sums that float lanes hand over before their rounding grows.
LOGCAL_HD void add_widened(V<double>& acc_lo, V<double>& acc_hi, V<float> v) {
  typedef float Half __attribute__((vector_size(kVectorBytes / 2)));
  Half lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  acc_lo += __builtin_convertvector(lo, V<double>);
  acc_hi += __builtin_convertvector(hi, V<double>);
}

LOGCAL_HD void add_widened(V<double>& acc_lo, V<double>&, V<double> v) { acc_lo += v; }

// Vec<double>::kLanes consecutive values as doubles: float32 ones by a half-width load widened
// exactly, double ones by a plain load. On x86 the widening is spelled with intrinsics: GCC
// builds __builtin_convertvector from float to double out of half-width (or one-lane) steps.
LOGCAL_HD V<double> load_as_double(const double* p) { return load(p); }

LOGCAL_HD V<double> load_as_double(const float* p) {
#if defined(__AVX512F__)
  // The zero-masking form: the plain one trips -Wmaybe-uninitialized inside GCC 12's header.
  return V<double>(_mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_loadu_ps(p)));
#elif defined(__AVX__)
  return V<double>(_mm256_cvtps_pd(_mm_loadu_ps(p)));
#elif defined(__SSE2__)
  return V<double>(
      _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))));
#else
  typedef float Half __attribute__((vector_size(kVectorBytes / 2)));
  Half h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, V<double>);
#endif
}

// The 8 mask bytes m[0, 8) as lane masks of 8 / Vec<double>::kLanes double vectors: all ones
// where the byte is nonzero. Spelled with intrinsics where GCC would widen bytes to 64-bit lanes
// one lane at a time.
constexpr int kMaskVectors8 = 8 / Vec<double>::kLanes;

LOGCAL_HD void byte_masks8(const uint8_t* m, Vec<double>::Mask (&k)[kMaskVectors8]) {
  using Mask = Vec<double>::Mask;
#if defined(__AVX512F__)
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
  // The zero-masking form: the plain one trips -Wmaybe-uninitialized inside GCC 12's header.
  k[0] = Mask(_mm512_maskz_cvtepu8_epi64(__mmask8(0xFF), b)) != 0;
#elif defined(__AVX2__)
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
  k[0] = Mask(_mm256_cvtepu8_epi64(b)) != 0;
  k[1] = Mask(_mm256_cvtepu8_epi64(_mm_srli_si128(b, 4))) != 0;
#elif defined(__SSE2__) && !defined(__AVX__)
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
  const __m128i zero = _mm_cmpeq_epi8(b, _mm_setzero_si128());
  const __m128i keep = _mm_xor_si128(zero, _mm_cmpeq_epi8(zero, zero));
  // Each byte's 0x00 / 0xFF copied out to 16, 32 and 64 bits.
  const __m128i k16 = _mm_unpacklo_epi8(keep, keep);
  const __m128i k32_lo = _mm_unpacklo_epi16(k16, k16), k32_hi = _mm_unpackhi_epi16(k16, k16);
  k[0] = Mask(_mm_unpacklo_epi32(k32_lo, k32_lo));
  k[1] = Mask(_mm_unpackhi_epi32(k32_lo, k32_lo));
  k[2] = Mask(_mm_unpacklo_epi32(k32_hi, k32_hi));
  k[3] = Mask(_mm_unpackhi_epi32(k32_hi, k32_hi));
#else
  for (int j = 0; j < 8; ++j) k[j / Vec<double>::kLanes][j % Vec<double>::kLanes] = m[j] ? -1 : 0;
#endif
}

// a in the lanes where k is all ones, b where it is zero. Bitwise: without SSE4.1, GCC lowers
// a vector ?: on 64-bit lanes to one branch per lane.
template <class T>
LOGCAL_HD V<T> select(typename Vec<T>::Mask k, V<T> a, V<T> b) {
  using Mask = typename Vec<T>::Mask;
  return V<T>((Mask(a) & k) | (Mask(b) & ~k));
}

// True if any lane of a comparison result is set.
template <class M>
LOGCAL_HD bool any(M m) {
  uint64_t words[sizeof(M) / 8];
  std::memcpy(words, &m, sizeof m);
  uint64_t acc = 0;
  for (unsigned i = 0; i < sizeof(M) / 8; ++i) acc |= words[i];
  return acc != 0;
}

// 2^t for t in [kExp2Floor, 0] (logcal/core/softmax_state.h: -125 for float, -1020 for
// double): round to the nearest integer k with the
// magic-number trick, a polynomial for 2^f on f in [-1/2, 1/2], then add k to the exponent bits.
LOGCAL_HD V<float> exp2(V<float> t) {
  using VF = V<float>;
  using Bits = Vec<float>::Bits;
  const VF magic = broadcast(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const VF shifted = t + magic;
  const VF k = shifted - magic;
  const VF f = t - k;
  // Least-squares fit on Chebyshev nodes: max relative error 1.1e-7 on [-1/2, 1/2].
  VF p = broadcast(0.0013400432165545282f);
  p = p * f + 0.009676037097893539f;
  p = p * f + 0.05550327214209304f;
  p = p * f + 0.24022107355830835f;
  p = p * f + 0.6931472067106196f;
  p = p * f + 1.0000000754953493f;
  Bits kbits, sbits, mbits, pbits;
  std::memcpy(&sbits, &shifted, sizeof sbits);
  std::memcpy(&mbits, &magic, sizeof mbits);
  kbits = (sbits - mbits) << 23;
  std::memcpy(&pbits, &p, sizeof pbits);
  pbits += kbits;
  VF r;
  std::memcpy(&r, &pbits, sizeof r);
  return r;
}

LOGCAL_HD V<double> exp2(V<double> t) {
  using VD = V<double>;
  using Bits = Vec<double>::Bits;
  const VD magic = broadcast(6755399441055744.0);  // 1.5 * 2^52
  const VD shifted = t + magic;
  const VD k = shifted - magic;
  const VD f = t - k;
  // Taylor series of 2^f = e^(f ln 2) to degree 13: truncation error < 1e-17 on [-1/2, 1/2].
  constexpr double c[14] = {1.0,
                            0.6931471805599453094,
                            0.2402265069591007123,
                            0.05550410866482157995,
                            0.009618129107628477161,
                            0.001333355814642844343,
                            0.0001540353039338160995,
                            1.525273380405984029e-05,
                            1.321548679014430970e-06,
                            1.017808600923969859e-07,
                            7.054911620801123329e-09,
                            4.445538271870811197e-10,
                            2.567843599348820089e-11,
                            1.369148885390497910e-12};
  VD p = broadcast(c[13]);
  for (int i = 12; i >= 0; --i) p = p * f + c[i];
  Bits sbits, mbits, pbits;
  std::memcpy(&sbits, &shifted, sizeof sbits);
  std::memcpy(&mbits, &magic, sizeof mbits);
  std::memcpy(&pbits, &p, sizeof pbits);
  pbits += (sbits - mbits) << 52;
  VD r;
  std::memcpy(&r, &pbits, sizeof r);
  return r;
}

}  // namespace simd
}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
