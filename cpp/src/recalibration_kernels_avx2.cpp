// The recalibration kernels built for the avx2 instruction-set level (flags set in
// CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE avx2
#include "recalibration_kernels_impl.h"
