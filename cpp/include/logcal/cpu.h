// The CPU back end: entry points and run-time settings.
#pragma once

#include "logcal/token_args.h"

namespace logcal {
namespace cpu {

Status token_stats(const TokenStatsArgs& args);
Status log_softmax(const LogSoftmaxArgs& args);

// Threads used by every CPU kernel (default: the CPUs this process may run on).
void set_num_threads(int n);
int get_num_threads();

// Instruction-set level of the vectorised loops: chosen at run time from what the CPU supports
// (the best by default). Forcing a lower level is for tests and benchmarks.
enum class Isa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
Isa best_isa();         // the best level both compiled in and supported by this CPU
Isa active_isa();       // the level in use
bool set_isa(Isa isa);  // false if `isa` is not available here
const char* isa_name(Isa isa);

}  // namespace cpu
}  // namespace logcal
