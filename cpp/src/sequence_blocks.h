// The innermost loop of sequence_stats: one block of contiguous float32 or float64 tokens
// (optionally masked) reduced to a SeqPartial. Compiled once per instruction-set level
// (sequence_blocks_{baseline,avx2,avx512}.cpp) and picked at run time. Every level adds in the
// order logcal/core/sequence.h fixes, so all levels, and the generic strided loop in
// sequence.cpp, give the same bits.
#pragma once

#include <cstdint>

#include "logcal/core/half.h"
#include "logcal/core/sequence.h"

namespace logcal {
namespace cpu {

struct SequenceBlocks {
  SeqPartial (*f32)(const float* x, int64_t n);
  SeqPartial (*f64)(const double* x, int64_t n);
  SeqPartial (*f32_masked)(const float* x, const uint8_t* mask, int64_t n);
  SeqPartial (*f64_masked)(const double* x, const uint8_t* mask, int64_t n);
  // 16-bit floats to float32 (exact), so that they take the float32 kernels.
  void (*widen_f16)(const Float16* x, float* out, int64_t n);
  void (*widen_bf16)(const BFloat16* x, float* out, int64_t n);
};

// The block kernels of the active instruction-set level.
const SequenceBlocks& sequence_blocks();

}  // namespace cpu
}  // namespace logcal
