// The token kernels built for the baseline instruction-set level (flags set in CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE baseline
#include "token_kernels_impl.h"
