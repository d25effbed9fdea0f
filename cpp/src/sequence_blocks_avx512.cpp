// The sequence_stats block kernels built for the avx512 instruction-set level (flags set in
// CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE avx512
#include "sequence_blocks_impl.h"
