// cuda/probe.cu reaches the online softmax state by this path.
#pragma once

#include "logcal/core/softmax_state.h"
