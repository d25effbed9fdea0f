// Run-time choice of the instruction-set level for the CPU kernels.
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "isa.h"
#include "logcal/cpu.h"

namespace logcal {
namespace cpu {

LOGCAL_IN_EACH_LEVEL(Status token_stats(const TokenStatsArgs& args);
                     Status log_softmax(const LogSoftmaxArgs& args))

namespace {

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::kBaseline:
      return true;
#if defined(LOGCAL_X86_DISPATCH)
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("bmi2");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             cpu_supports(Isa::kAvx2);
#endif
    default:
      return false;
  }
}

Isa initial_isa() {
  // LOGCAL_CPU_ISA=baseline|avx2|avx512 caps the level (for testing the other code paths).
  Isa isa = best_isa();
  if (const char* want = std::getenv("LOGCAL_CPU_ISA")) {
    for (Isa cand : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512})
      if (std::strcmp(want, isa_name(cand)) == 0 && cpu_supports(cand) && cand < isa) isa = cand;
  }
  return isa;
}

Isa& active() {
  static Isa isa = initial_isa();
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kBaseline:
      return "baseline";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Isa best_isa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2})
    if (cpu_supports(isa)) return isa;
  return Isa::kBaseline;
}

Isa active_isa() { return active(); }

bool set_isa(Isa isa) {
  if (!cpu_supports(isa)) return false;
  active() = isa;
  return true;
}

Status token_stats(const TokenStatsArgs& args) { return LOGCAL_ACTIVE_LEVEL(token_stats)(args); }

Status log_softmax(const LogSoftmaxArgs& args) { return LOGCAL_ACTIVE_LEVEL(log_softmax)(args); }

}  // namespace cpu
}  // namespace logcal
