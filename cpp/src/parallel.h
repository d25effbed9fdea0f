// A minimal static-partition parallel loop over std::thread: the CPU kernels split rows (or
// pieces of rows) into contiguous ranges, one per thread. Contiguous static ranges keep every
// result independent of timing, which the determinism rule needs.
#pragma once

#include <cstdint>
#include <functional>

#include "logcal/common.h"

namespace logcal {
namespace cpu {

int get_num_threads();

// Calls fn(begin, end) on disjoint ranges covering [0, n), in parallel; each range holds at
// least `grain` items, so small jobs use fewer threads (or just the caller's). Returns
// kOutOfMemory if a worker ran out of memory, kInternal for any other failure.
Status parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace logcal
