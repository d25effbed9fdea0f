// Integer arrays whose values index memory (targets, offsets, labels).
//
// Such values are never trusted where they are read: a caller's thread may change them while a
// kernel runs. So each is read exactly once, by a copy into memory private to the call, and
// checked as it is copied (copy_indices below on the host, cuda::CopyIndices on a GPU); the
// kernels then read only that private copy. Whatever happens to the caller's array meanwhile, no
// read or write leaves the arrays' bounds, and a bad value is reported with its position and the
// value that was read.
#pragma once

#include <cstdint>

#include "logcal/common.h"

namespace logcal {

enum class IntType : int { kInt8, kInt16, kInt32, kInt64, kUInt8, kUInt16, kUInt32, kUInt64 };

constexpr int kMaxIntDims = 33;

// An integer array of any shape and strides (in elements), read in C order.
struct IntArray {
  const void* data = nullptr;
  IntType type = IntType::kInt64;
  int ndim = 0;
  int64_t size = 0;
  int64_t shape[kMaxIntDims] = {};
  int64_t stride[kMaxIntDims] = {};

  // Element offset of flat (C-order) position i.
  LOGCAL_HD int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      off += (i % shape[d]) * stride[d];
      i /= shape[d];
    }
    return off;
  }

  // The value at flat position i as an int64. A uint64 above INT64_MAX sets *big and returns
  // its bits: such a value is outside every range the kernels accept.
  LOGCAL_HD int64_t load(int64_t i, bool* big) const {
    const int64_t o = offset(i);
    *big = false;
    switch (type) {
      case IntType::kInt8:
        return static_cast<const int8_t*>(data)[o];
      case IntType::kInt16:
        return static_cast<const int16_t*>(data)[o];
      case IntType::kInt32:
        return static_cast<const int32_t*>(data)[o];
      case IntType::kInt64:
        return static_cast<const int64_t*>(data)[o];
      case IntType::kUInt8:
        return static_cast<const uint8_t*>(data)[o];
      case IntType::kUInt16:
        return static_cast<const uint16_t*>(data)[o];
      case IntType::kUInt32:
        return static_cast<const uint32_t*>(data)[o];
      case IntType::kUInt64: {
        const uint64_t v = static_cast<const uint64_t*>(data)[o];
        *big = v > uint64_t(INT64_MAX);
        return static_cast<int64_t>(v);
      }
    }
    return 0;
  }
};

// Index values: each must lie in [0, bound), or equal `allowed` when `has_allowed` (the
// ignore_index of targets).
struct IndexRule {
  int64_t bound = 0;
  bool has_allowed = false;
  int64_t allowed = 0;

  LOGCAL_HD bool ok(int64_t v, bool big) const {
    return !big && ((v >= 0 && v < bound) || (has_allowed && v == allowed));
  }
};

// Which rule of CSR offsets [S+1] failed first, in the order the checks are reported.
enum class OffsetRule : int {
  kOk = 0,
  kOutside = 1,     // a value outside [0, n_tokens]
  kStart = 2,       // offsets[0] != 0
  kDecreasing = 3,  // offsets[i] < offsets[i - 1]
  kEnd = 4,         // offsets[S] != n_tokens
};

// What a check found first. `position` is the flat C-order position (-1: every value is good);
// `value` the value read there (its uint64 bits when `big`); for kDecreasing, `previous` is
// the value at position - 1.
struct IndexError {
  int64_t position = -1;
  int64_t value = 0;
  bool big = false;
  OffsetRule rule = OffsetRule::kOk;
  int64_t previous = 0;
};

// Copies `values` into dst[values.size] as int64 (C order), each checked against `rule` as it
// is read. On the first bad value: kBadIndex, with *error saying where and what was read.
inline Status copy_indices(const IntArray& values, const IndexRule& rule, int64_t* dst,
                           IndexError* error) {
  for (int64_t i = 0; i < values.size; ++i) {
    bool big;
    const int64_t v = values.load(i, &big);
    if (!rule.ok(v, big)) {
      *error = IndexError{i, v, big, OffsetRule::kOk, 0};
      return Status::kBadIndex;
    }
    dst[i] = v;
  }
  return Status::kOk;
}

// Copies CSR offsets [S+1] into dst, checked as they are read: inside [0, n_tokens], starting at
// 0, non-decreasing, ending at n_tokens. On failure: kBadIndex, *error says which rule failed
// first in that order (the order the messages are documented in).
inline Status copy_offsets(const IntArray& offsets, int64_t n_tokens, int64_t* dst,
                           IndexError* error) {
  const int64_t n = offsets.size;
  if (n < 1) return Status::kInvalidArgument;
  IndexError outside;
  for (int64_t i = 0; i < n; ++i) {
    bool big;
    const int64_t v = offsets.load(i, &big);
    if (outside.position < 0 && (big || v < 0 || v > n_tokens))
      outside = IndexError{i, v, big, OffsetRule::kOutside, 0};
    dst[i] = v;
  }
  if (outside.position >= 0) {
    *error = outside;
    return Status::kBadIndex;
  }
  // The rest are judged on the private copy, which nothing else can change.
  if (dst[0] != 0) {
    *error = IndexError{0, dst[0], false, OffsetRule::kStart, 0};
    return Status::kBadIndex;
  }
  for (int64_t i = 1; i < n; ++i)
    if (dst[i] < dst[i - 1]) {
      *error = IndexError{i, dst[i], false, OffsetRule::kDecreasing, dst[i - 1]};
      return Status::kBadIndex;
    }
  if (dst[n - 1] != n_tokens) {
    *error = IndexError{n - 1, dst[n - 1], false, OffsetRule::kEnd, 0};
    return Status::kBadIndex;
  }
  return Status::kOk;
}

}  // namespace logcal
