// The calibration kernels built for the avx512 instruction-set level (flags set in CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE avx512
#include "calibration_kernels_impl.h"
