// LOGCAL_HD: a function compiled for the host (g++) and, under nvcc, for the device as well.
//
// cpp/include/logcal/core holds the numerics both back ends share: every function there is
// LOGCAL_HD and every constant constexpr, so the CPU loops in cpp/src and the CUDA kernels in
// cuda/ compute each result from one definition, and their bits agree where the API promises it.
#pragma once

#if defined(__CUDACC__)
#define LOGCAL_HD __host__ __device__ __forceinline__
#else
// always_inline matters beyond speed: these helpers are compiled into translation units built
// for different instruction sets (baseline, AVX2, AVX-512). Inlining them everywhere means no
// caller can ever jump into a copy compiled for an instruction set the machine lacks.
#define LOGCAL_HD inline __attribute__((always_inline))
#endif
