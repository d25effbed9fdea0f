// Choosing among the copies of a kernel built for each instruction-set level.
//
// A kernel family is compiled once per level (baseline x86-64, AVX2, AVX-512; only baseline off
// x86) into namespaces of those names. LOGCAL_IN_EACH_LEVEL declares an entity in every compiled
// level's namespace; LOGCAL_ACTIVE_LEVEL(name) is that entity of the level in use (set at start
// from the CPU, or capped by LOGCAL_CPU_ISA / cpu::set_isa).
#pragma once

#include "logcal/cpu.h"

#if defined(LOGCAL_X86_DISPATCH)
#define LOGCAL_IN_EACH_LEVEL(...) \
  namespace baseline {            \
  __VA_ARGS__;                    \
  }                               \
  namespace avx2 {                \
  __VA_ARGS__;                    \
  }                               \
  namespace avx512 {              \
  __VA_ARGS__;                    \
  }
#define LOGCAL_ACTIVE_LEVEL(name) \
  (::logcal::cpu::select_level(&baseline::name, &avx2::name, &avx512::name))
#else
#define LOGCAL_IN_EACH_LEVEL(...) \
  namespace baseline {            \
  __VA_ARGS__;                    \
  }
#define LOGCAL_ACTIVE_LEVEL(name) (&baseline::name)
#endif

namespace logcal {
namespace cpu {

template <class T>
T* select_level(T* baseline_level, T* avx2_level, T* avx512_level) {
  switch (active_isa()) {
    case Isa::kAvx512:
      return avx512_level;
    case Isa::kAvx2:
      return avx2_level;
    default:
      return baseline_level;
  }
}

}  // namespace cpu
}  // namespace logcal
