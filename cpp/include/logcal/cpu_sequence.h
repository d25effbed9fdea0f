// The CPU back end of the sequence-level, multiple-choice, consistency and selective metrics.
// Arguments and per-element maths: logcal/sequence.h. Every entry point returns a status and
// never throws; validation with user-facing messages happens in Python.
#pragma once

#include "logcal/sequence.h"

namespace logcal {
namespace cpu {

// Bitwise reproducible: a sequence's sum does not depend on the thread count (it is cut into
// fixed blocks whose partial sums are combined in order).
Status sequence_stats(const SequenceStatsArgs& args);
Status choice_confidence(const ChoiceArgs& args);
Status sample_consistency(const ConsistencyArgs& args);
Status selective(const SelectiveArgs& args);

}  // namespace cpu
}  // namespace logcal
