// The order of the top-k list and a small sorted list that keeps the k best (value, id) pairs.
//
// The order: larger value first; among equal values, the lower id first. This matches
// numpy/torch argmax ("the first maximal index") and torch.topk in deterministic mode. Values
// are compared as raw logits, never as rounded log-probabilities, so distinct logits are never
// merged into a tie.
#pragma once

#include <cstdint>

#include "logcal/core/host_device.h"

namespace logcal {

template <class T>
LOGCAL_HD bool ranks_before(T value_a, int64_t id_a, T value_b, int64_t id_b) {
  return value_a > value_b || (value_a == value_b && id_a < id_b);
}

// A list of at most `capacity` pairs, sorted best first, in caller-provided storage.
template <class T>
struct TopKList {
  T* values;
  int64_t* ids;
  int64_t capacity;
  int64_t size;

  // The value an element must beat (strictly, since later ids lose ties) once the list is full.
  LOGCAL_HD bool full() const { return size == capacity; }
  LOGCAL_HD T threshold() const { return values[capacity - 1]; }

  // Offer a pair; it is kept if it ranks before the current last entry (or the list has room).
  LOGCAL_HD void offer(T value, int64_t id) {
    int64_t pos = size < capacity ? size : capacity - 1;
    if (size == capacity && !ranks_before(value, id, values[pos], ids[pos])) return;
    // Shift worse entries down one place and insert.
    while (pos > 0 && ranks_before(value, id, values[pos - 1], ids[pos - 1])) {
      values[pos] = values[pos - 1];
      ids[pos] = ids[pos - 1];
      --pos;
    }
    values[pos] = value;
    ids[pos] = id;
    if (size < capacity) ++size;
  }

  // Merge another sorted list into this one (keeping the best `capacity`).
  LOGCAL_HD void merge(const TopKList& other) {
    for (int64_t i = 0; i < other.size; ++i) {
      if (full() && !ranks_before(other.values[i], other.ids[i], threshold(), ids[capacity - 1]))
        break;  // `other` is sorted: nothing after this can enter either
      offer(other.values[i], other.ids[i]);
    }
  }
};

}  // namespace logcal
