// The recalibration kernels built for the avx512 instruction-set level (flags set in
// CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE avx512
#include "recalibration_kernels_impl.h"
