// The sequence_stats block kernels built for the baseline instruction-set level (flags set in
// CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE baseline
#include "sequence_blocks_impl.h"
