// The arrays the bindings receive: an ArrayView of python/logcal/_arrays.py (pointer, logical
// dtype, shape, strides in elements, device, stream, read-only), read here for both back ends.
// The bindings check what the kernels rely on -- element types, shapes, output sizes and
// layouts, devices -- so that no call, public or private, can make a kernel read or write
// outside an array. User-facing checks with friendlier messages run before, in Python.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "logcal/common.h"
#include "logcal/core/indices.h"

namespace logcal_bindings {

namespace py = pybind11;

struct Array {
  std::string name;
  uintptr_t ptr = 0;
  std::string dtype;
  std::vector<int64_t> shape, strides;
  int device = -1;  // -1: host memory
  uint64_t stream = 0;
  bool readonly = false;

  int ndim() const { return int(shape.size()); }
  int64_t size() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  bool dense() const {  // C-contiguous (an empty array is, whatever its strides say)
    if (size() == 0) return true;
    int64_t expect = 1;
    for (int d = ndim() - 1; d >= 0; --d) {
      if (shape[size_t(d)] != 1 && strides[size_t(d)] != expect) return false;
      expect *= shape[size_t(d)];
    }
    return true;
  }
  template <class T>
  T* data() const {
    return reinterpret_cast<T*>(ptr);
  }
};

inline Array array_arg(const py::handle& v, const char* name) {
  if (v.is_none()) throw py::type_error(std::string(name) + ": an array is required");
  Array a;
  a.name = name;
  a.ptr = uintptr_t(v.attr("ptr").cast<uint64_t>());
  a.dtype = v.attr("dtype").cast<std::string>();
  a.shape = v.attr("shape").cast<std::vector<int64_t>>();
  a.strides = v.attr("strides").cast<std::vector<int64_t>>();
  a.device = v.attr("device").cast<int>();
  a.stream = v.attr("stream").cast<uint64_t>();
  a.readonly = v.attr("readonly").cast<bool>();
  if (a.shape.size() != a.strides.size())
    throw std::invalid_argument(std::string(name) + ": shape and strides differ in length");
  for (int64_t s : a.shape)
    if (s < 0) throw std::invalid_argument(std::string(name) + ": negative extent");
  if (a.ptr == 0 && a.size() > 0)
    throw std::invalid_argument(std::string(name) + ": null data pointer");
  return a;
}

// The DType of a float array (logits, log-probabilities), or a TypeError naming it.
inline logcal::DType float_type(const Array& a) {
  if (a.dtype == "float16") return logcal::DType::kFloat16;
  if (a.dtype == "bfloat16") return logcal::DType::kBFloat16;
  if (a.dtype == "float32") return logcal::DType::kFloat32;
  if (a.dtype == "float64") return logcal::DType::kFloat64;
  throw py::type_error(a.name +
                       " must be a floating-point array (float16, bfloat16, float32 or "
                       "float64), got " +
                       a.dtype);
}

// The compute type of a float input: float64 stays, everything else computes in float32.
inline const char* compute_dtype(logcal::DType t) {
  return t == logcal::DType::kFloat64 ? "float64" : "float32";
}

// An integer array of any shape and strides, for the index checks (logcal/core/indices.h).
inline logcal::IntArray int_array(const Array& a) {
  using logcal::IntType;
  static const std::pair<const char*, IntType> kTypes[] = {
      {"int8", IntType::kInt8},     {"int16", IntType::kInt16},  {"int32", IntType::kInt32},
      {"int64", IntType::kInt64},   {"uint8", IntType::kUInt8},  {"uint16", IntType::kUInt16},
      {"uint32", IntType::kUInt32}, {"uint64", IntType::kUInt64}};
  logcal::IntArray r;
  bool found = false;
  for (const auto& [n, t] : kTypes)
    if (a.dtype == n) {
      r.type = t;
      found = true;
    }
  if (!found) throw py::type_error(a.name + " must be an array of integers, got dtype " + a.dtype);
  if (a.ndim() > logcal::kMaxIntDims) throw std::invalid_argument(a.name + ": too many dimensions");
  r.data = a.data<const void>();
  r.ndim = a.ndim();
  r.size = a.size();
  for (int d = 0; d < a.ndim(); ++d) {
    r.shape[d] = a.shape[size_t(d)];
    r.stride[d] = a.strides[size_t(d)];
  }
  return r;
}

// Checks that an output the kernels write densely is exactly that: writable, on `device`, of
// `dtype` and `shape`, C-contiguous.
inline void check_output(const Array& o, const std::vector<int64_t>& shape, const char* dtype,
                         int device) {
  if (o.readonly) throw std::invalid_argument(o.name + ": output is read-only");
  if (o.device != device) throw std::invalid_argument(o.name + ": output on the wrong device");
  if (o.dtype != dtype)
    throw py::type_error(o.name + ": output must have dtype " + dtype + ", got " + o.dtype);
  if (o.shape != shape || !o.dense())
    throw std::invalid_argument(o.name + ": output array of the wrong shape or layout");
}

// The element position `flat` of an array of `shape`, as "[i, j]" (C order).
inline std::string format_index(const std::vector<int64_t>& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::string s = "[";
  for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + "]";
}

// The value an index check read, as Python would print it.
inline std::string format_value(const logcal::IndexError& e) {
  return e.big ? std::to_string(uint64_t(e.value)) : std::to_string(e.value);
}

// The ValueError of a bad target (targets of token_stats and update_from_logits).
[[noreturn]] inline void raise_bad_target(const Array& targets, const logcal::IndexError& e,
                                          int64_t vocab, int64_t ignore_index) {
  throw std::invalid_argument("targets" + format_index(targets.shape, e.position) + " = " +
                              format_value(e) + " is outside [0, " + std::to_string(vocab) +
                              ") and is not ignore_index (" + std::to_string(ignore_index) + ")");
}

// The ValueError of bad CSR offsets, by the rule that failed.
[[noreturn]] inline void raise_bad_offsets(const logcal::IndexError& e, int64_t n_tokens) {
  using logcal::OffsetRule;
  const std::string at = "offsets[" + std::to_string(e.position) + "] = " + format_value(e);
  const std::string tokens = std::to_string(n_tokens);
  switch (e.rule) {
    case OffsetRule::kOutside:
      throw std::invalid_argument(at + " is outside [0, " + tokens + "]: token_logprobs has " +
                                  tokens + " tokens");
    case OffsetRule::kStart:
      throw std::invalid_argument(at +
                                  " must be 0: sequence s is token_logprobs[offsets[s]:"
                                  "offsets[s+1]], and every token belongs to a sequence");
    case OffsetRule::kDecreasing:
      throw std::invalid_argument("offsets must be non-decreasing: " + at +
                                  " is less than offsets[" + std::to_string(e.position - 1) +
                                  "] = " + std::to_string(e.previous));
    default:
      throw std::invalid_argument(at + " must equal the number of tokens (" + tokens +
                                  "): the last offset ends the last sequence");
  }
}

}  // namespace logcal_bindings
