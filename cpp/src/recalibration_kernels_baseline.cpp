// The recalibration kernels built for the baseline instruction-set level (flags set in
// CMakeLists.txt).
#define LOGCAL_ISA_NAMESPACE baseline
#include "recalibration_kernels_impl.h"
