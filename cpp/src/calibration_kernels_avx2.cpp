// The calibration kernels built for the avx2 instruction-set level (flags set in CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE avx2
#include "calibration_kernels_impl.h"
