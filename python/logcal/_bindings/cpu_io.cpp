// The readers' token columns (python/logcal/io/_batch.py) filled from decoded records in one
// compiled loop. The records were validated by their msgspec schemas before they get here, so
// the values have the types the schemas say; a value of another type is a bug in the caller,
// reported as a TypeError, and a call that fails leaves the columns as they were.
//
// The columns are bytearrays (the Python side packs them with np.frombuffer): one sequence's
// tokens are counted first, then every column grows once and is written through a pointer.
// Fields of the schema Structs are read from their slots at offsets found once per type, not
// by attribute look-ups (a dozen per token).
#include <Python.h>
#include <pybind11/pybind11.h>
#include <structmember.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

// The columns, in the order of the tuple the Python side passes.
enum Column {
  kLogprob,     // float64: each token's log-probability
  kCode,        // int32: the token's text, a code of the `strings` interner
  kId,          // int64: the token id, -1 where not given
  kBytesCode,   // int32: the token's bytes, a code of the `token_bytes` interner
  kPrompt,      // uint8: 1 for a prompt token
  kWidth,       // int64: the length of the token's top list
  kTopLogprob,  // float64: the top lists' entries, one list after the other
  kTopCode,     // int32
  kTopId,       // int64
  kSeqLength,   // int64: per sequence, its number of tokens
  kSeqRecord,   // int64: the record it comes from
  kSeqChoice,   // int64: its choice or candidate index (-1: a vLLM prompt)
  kColumns
};

// The offsets of a Struct type's fields in its instances (msgspec stores fields in slots).
struct Slots {
  PyTypeObject* type = nullptr;  // a strong reference, so that the offsets stay its own
  std::vector<Py_ssize_t> offsets;
};

const Slots& slots_of(PyTypeObject* type, const std::vector<const char*>& fields) {
  // One entry per schema type met (two: the chat entry and the top entry), kept for the life
  // of the process (a deque: the references handed out stay valid as it grows); the GIL is
  // held throughout.
  static std::deque<Slots> known;
  for (const Slots& s : known)
    if (s.type == type) return s;
  Slots found;
  for (const char* field : fields) {
    // the class attribute of a slot is its member descriptor
    py::object descr = py::reinterpret_steal<py::object>(
        PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), field));
    if (!descr) throw py::error_already_set();
    if (Py_TYPE(descr.ptr()) != &PyMemberDescr_Type ||
        reinterpret_cast<PyMemberDescrObject*>(descr.ptr())->d_member->type != T_OBJECT_EX)
      throw py::type_error(std::string("io_add_tokens: ") + type->tp_name +
                           " has no slot for the field '" + field + "'");
    found.offsets.push_back(reinterpret_cast<PyMemberDescrObject*>(descr.ptr())->d_member->offset);
  }
  Py_INCREF(type);
  found.type = type;
  known.push_back(std::move(found));
  return known.back();
}

// Field `i` of a Struct of the type of `slots` (borrowed).
PyObject* field(PyObject* obj, const Slots& slots, size_t i, const char* name) {
  if (Py_TYPE(obj) != slots.type)
    throw py::type_error(std::string("io_add_tokens: expected ") + slots.type->tp_name + ", got " +
                         Py_TYPE(obj)->tp_name);
  PyObject* value = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + slots.offsets[i]);
  if (value == nullptr)
    throw py::type_error(std::string("io_add_tokens: the field '") + name + "' is not set");
  return value;
}

double as_double(PyObject* value) {
  if (PyFloat_CheckExact(value)) return PyFloat_AS_DOUBLE(value);
  const double x = PyFloat_AsDouble(value);
  if (x == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return x;
}

// A token id: None is -1.
int64_t as_id(PyObject* value) {
  if (value == Py_None) return -1;
  if (!PyLong_Check(value))
    throw py::type_error(std::string("io_add_tokens: a token id must be an int or None, got ") +
                         Py_TYPE(value)->tp_name);
  const long long id = PyLong_AsLongLong(value);
  if (id == -1 && PyErr_Occurred()) throw py::error_already_set();
  return id;
}

// The code of `key` in an interner: a dict whose __missing__ adds a new value (so only a
// value not seen before costs a Python call). None, no value, is -1 and never a key: a dict of
// str keys only is looked up the fast way (no rich comparisons).
int32_t code(PyObject* interner, PyObject* key) {
  if (key == Py_None) return -1;
  PyObject* found = PyDict_GetItemWithError(interner, key);  // borrowed
  PyObject* made = nullptr;
  if (found == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    found = made = PyObject_GetItem(interner, key);  // calls __missing__
    if (made == nullptr) throw py::error_already_set();
  }
  const long value = PyLong_AsLong(found);
  Py_XDECREF(made);
  if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (value < -1 || value > INT32_MAX)
    throw py::type_error("io_add_tokens: an interner's code is out of the int32 range");
  return static_cast<int32_t>(value);
}

// The codes of token texts, looked up in a table kept beside the interner (its bytearray
// `table`) before the interner itself: the interner is a dict, whose look-up of a str just
// decoded hashes it with SipHash and compares it through memcmp -- a third of this file's
// time. The table hashes the text's bytes with a cheap mix and compares the text with
// `values[code]` in place. It only caches the dict (which stays the one that gives codes,
// through __missing__ for a new text), so a text it does not find is looked up there; after
// 32 probes too, which bounds the work a file of colliding texts can make.
class TextCodes {
 public:
  explicit TextCodes(PyObject* interner) : interner_(interner) {
    table_ = PyObject_GetAttrString(interner, "table");
    values_ = PyObject_GetAttrString(interner, "values");
    if (table_ == nullptr || values_ == nullptr) {
      release();
      throw py::error_already_set();
    }
    if (!PyByteArray_CheckExact(table_) || !PyList_CheckExact(values_)) {
      release();
      throw py::type_error(
          "io_add_tokens: an interner's table must be a bytearray and its "
          "values a list");
    }
  }
  ~TextCodes() { release(); }
  TextCodes(const TextCodes&) = delete;
  TextCodes& operator=(const TextCodes&) = delete;

  int32_t operator()(PyObject* text) {
    if (text == Py_None) return -1;
    if (!PyUnicode_CheckExact(text)) return code(interner_, text);
    const uint64_t h = hash(text);
    uint64_t* slot = slots();
    const size_t mask = capacity() - 1;
    if (slot != nullptr) {
      for (size_t i = h & mask, probes = 0; slot[i] != 0 && probes < kMaxProbes;
           i = (i + 1) & mask, ++probes) {
        if ((slot[i] >> 32) != (h >> 32)) continue;
        const int32_t c = static_cast<int32_t>(slot[i] & 0xffffffffu) - 1;
        if (c < PyList_GET_SIZE(values_) && same_text(PyList_GET_ITEM(values_, c), text)) return c;
      }
    }
    const int32_t c = code(interner_, text);  // (a new text: the interner adds it)
    add(h, c);
    return c;
  }

 private:
  static constexpr size_t kMaxProbes = 32;

  size_t capacity() const {
    return static_cast<size_t>(PyByteArray_GET_SIZE(table_)) / sizeof(uint64_t);
  }
  uint64_t* slots() const {
    return capacity() ? reinterpret_cast<uint64_t*>(PyByteArray_AS_STRING(table_)) : nullptr;
  }

  static uint64_t hash(PyObject* text) {
    const auto* p = static_cast<const unsigned char*>(PyUnicode_DATA(text));
    size_t n = static_cast<size_t>(PyUnicode_GET_LENGTH(text)) * PyUnicode_KIND(text);
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull) ^ PyUnicode_KIND(text);
    for (; n >= 8; n -= 8, p += 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
      h ^= h >> 31;
    }
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
  }

  static bool same_text(PyObject* a, PyObject* b) {
    if (!PyUnicode_CheckExact(a)) return false;
    const Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return n == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           std::memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), n * PyUnicode_KIND(a)) == 0;
  }

  // Code c of a text of hash h into the table; at half full, the table is made again, twice
  // as big, of every value the interner holds.
  void add(uint64_t h, int32_t c) {
    const size_t n_values = static_cast<size_t>(PyList_GET_SIZE(values_));
    if (c < 0 || static_cast<size_t>(c) >= n_values) return;  // not one of the values
    if (2 * n_values > capacity()) {
      size_t cap = 64;
      while (cap < 4 * n_values) cap *= 2;
      if (PyByteArray_Resize(table_, static_cast<Py_ssize_t>(cap * sizeof(uint64_t))) != 0)
        throw py::error_already_set();
      std::memset(PyByteArray_AS_STRING(table_), 0, cap * sizeof(uint64_t));
      for (size_t v = 0; v < n_values; ++v) {
        PyObject* value = PyList_GET_ITEM(values_, v);
        if (PyUnicode_CheckExact(value)) put(hash(value), static_cast<int32_t>(v));
      }
      return;
    }
    put(h, c);
  }

  void put(uint64_t h, int32_t c) {
    uint64_t* slot = slots();
    const size_t mask = capacity() - 1;
    size_t i = h & mask;
    for (size_t probes = 0; slot[i] != 0; i = (i + 1) & mask)
      if (++probes >= kMaxProbes) return;  // (found through the interner, as before)
    slot[i] = (h & 0xffffffff00000000ull) | static_cast<uint32_t>(c + 1);
  }

  void release() {
    Py_XDECREF(table_);
    Py_XDECREF(values_);
  }

  PyObject* interner_;
  PyObject* table_;
  PyObject* values_;
};

// A list or tuple: its items (borrowed) and length.
PyObject** items(PyObject* seq, Py_ssize_t* n, const char* what) {
  if (PyList_Check(seq)) {
    *n = PyList_GET_SIZE(seq);
    return reinterpret_cast<PyListObject*>(seq)->ob_item;
  }
  if (PyTuple_Check(seq)) {
    *n = PyTuple_GET_SIZE(seq);
    return reinterpret_cast<PyTupleObject*>(seq)->ob_item;
  }
  throw py::type_error(std::string("io_add_tokens: ") + what + " must be a list or tuple, got " +
                       Py_TYPE(seq)->tp_name);
}

PyObject* item(PyObject* tuple, Py_ssize_t i, Py_ssize_t size, const char* what) {
  if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != size)
    throw py::type_error(std::string("io_add_tokens: ") + what + " must be a tuple of " +
                         std::to_string(size));
  return PyTuple_GET_ITEM(tuple, i);
}

class Columns {
 public:
  Columns(const py::tuple& columns, PyObject* strings, PyObject* token_bytes)
      : text_(strings), bytes_(token_bytes) {
    if (columns.size() != kColumns)
      throw py::type_error("io_add_tokens: columns must be a tuple of " + std::to_string(kColumns) +
                           " bytearrays");
    for (int c = 0; c < kColumns; ++c) {
      col_[c] = columns[c].ptr();
      if (!PyByteArray_CheckExact(col_[c]))
        throw py::type_error("io_add_tokens: columns must be bytearrays");
      start_[c] = PyByteArray_GET_SIZE(col_[c]);
    }
    if (!PyDict_Check(strings) || !PyDict_Check(token_bytes))
      throw py::type_error("io_add_tokens: the interners must be dicts");
  }

  // On failure: every column back to its length before the call.
  void roll_back() {
    for (int c = 0; c < kColumns; ++c)
      if (PyByteArray_GET_SIZE(col_[c]) != start_[c]) PyByteArray_Resize(col_[c], start_[c]);
  }

  // Room for n more values of type T at the end of column c. A bytearray grows by an eighth
  // when it must move (every move a copy of it): where it must, it is first made twice as
  // big, then cut to the size wanted, which keeps the room (a cut to half or more of the
  // allocation only sets the size), so that a column is copied O(1) times, not O(8).
  template <class T>
  T* grow(int c, Py_ssize_t n) {
    PyObject* col = col_[c];
    const Py_ssize_t size = PyByteArray_GET_SIZE(col);
    const Py_ssize_t want = size + n * static_cast<Py_ssize_t>(sizeof(T));
    if (want >= reinterpret_cast<PyByteArrayObject*>(col)->ob_alloc &&
        PyByteArray_Resize(col, std::max(want, 2 * size)) != 0)
      throw py::error_already_set();
    if (PyByteArray_Resize(col, want) != 0) throw py::error_already_set();
    return reinterpret_cast<T*>(PyByteArray_AS_STRING(col) + size);
  }

  void sequence(int64_t record, PyObject* seq) {
    const Py_ssize_t n_parts = 3;
    PyObject* choice = item(seq, 0, n_parts, "a sequence");
    PyObject* tokens = item(seq, 1, n_parts, "a sequence");
    PyObject* ids = item(seq, 2, n_parts, "a sequence");
    Py_ssize_t n = 0;
    PyObject** token = items(tokens, &n, "a sequence's tokens");
    *grow<int64_t>(kSeqLength, 1) = n;
    *grow<int64_t>(kSeqRecord, 1) = record;
    *grow<int64_t>(kSeqChoice, 1) = as_id(choice);
    if (n == 0) return;
    if (PyTuple_Check(token[0]))
      tuples(token, n);
    else
      entries(token, n, ids);
  }

  Py_ssize_t waiting() const {
    return PyByteArray_GET_SIZE(col_[kLogprob]) / static_cast<Py_ssize_t>(sizeof(double));
  }

 private:
  // OpenAI chat entries (msgspec Structs with token, logprob, bytes, top_logprobs), and the
  // token ids vLLM gives per choice (a list as long, or None).
  void entries(PyObject** entry, Py_ssize_t n, PyObject* ids) {
    const Slots& chat = slots_of(Py_TYPE(entry[0]), {"token", "logprob", "bytes", "top_logprobs"});
    Py_ssize_t n_ids = 0;
    PyObject** id = ids == Py_None ? nullptr : items(ids, &n_ids, "the token ids");
    if (id != nullptr && n_ids != n)
      throw py::type_error("io_add_tokens: the token ids and the entries differ in length");
    Py_ssize_t n_top = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* top = field(entry[i], chat, 3, "top_logprobs");
      if (top != Py_None) {
        Py_ssize_t width = 0;
        items(top, &width, "top_logprobs");
        n_top += width;
      }
    }
    double* lp = grow<double>(kLogprob, n);
    int32_t* text = grow<int32_t>(kCode, n);
    int64_t* tid = grow<int64_t>(kId, n);
    int32_t* bytes = grow<int32_t>(kBytesCode, n);
    std::memset(grow<uint8_t>(kPrompt, n), 0, n);
    int64_t* widths = grow<int64_t>(kWidth, n);
    double* top_lp = grow<double>(kTopLogprob, n_top);
    int32_t* top_text = grow<int32_t>(kTopCode, n_top);
    int64_t* top_id = grow<int64_t>(kTopId, n_top);
    for (Py_ssize_t i = 0; i < n_top; ++i) top_id[i] = -1;
    const Slots* top_slots = nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* e = entry[i];
      text[i] = text_(field(e, chat, 0, "token"));
      lp[i] = as_double(field(e, chat, 1, "logprob"));
      bytes[i] = code(bytes_, field(e, chat, 2, "bytes"));
      tid[i] = id == nullptr ? -1 : as_id(id[i]);
      PyObject* top = field(e, chat, 3, "top_logprobs");
      Py_ssize_t width = 0;
      PyObject** alt = top == Py_None ? nullptr : items(top, &width, "top_logprobs");
      widths[i] = width;
      for (Py_ssize_t j = 0; j < width; ++j) {
        if (top_slots == nullptr) top_slots = &slots_of(Py_TYPE(alt[j]), {"token", "logprob"});
        *top_text++ = text_(field(alt[j], *top_slots, 0, "token"));
        *top_lp++ = as_double(field(alt[j], *top_slots, 1, "logprob"));
      }
    }
  }

  // Tuples (logprob, text, id, bytes, is_prompt, tops), tops a list of (logprob, text, id).
  void tuples(PyObject** token, Py_ssize_t n) {
    Py_ssize_t n_top = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
      Py_ssize_t width = 0;
      items(item(token[i], 5, 6, "a token"), &width, "a token's top list");
      n_top += width;
    }
    double* lp = grow<double>(kLogprob, n);
    int32_t* text = grow<int32_t>(kCode, n);
    int64_t* tid = grow<int64_t>(kId, n);
    int32_t* bytes = grow<int32_t>(kBytesCode, n);
    uint8_t* prompt = grow<uint8_t>(kPrompt, n);
    int64_t* widths = grow<int64_t>(kWidth, n);
    double* top_lp = grow<double>(kTopLogprob, n_top);
    int32_t* top_text = grow<int32_t>(kTopCode, n_top);
    int64_t* top_id = grow<int64_t>(kTopId, n_top);
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject** t = reinterpret_cast<PyTupleObject*>(token[i])->ob_item;
      lp[i] = as_double(t[0]);
      text[i] = text_(t[1]);
      tid[i] = as_id(t[2]);
      bytes[i] = code(bytes_, t[3]);
      const int is_prompt = PyObject_IsTrue(t[4]);
      if (is_prompt < 0) throw py::error_already_set();
      prompt[i] = static_cast<uint8_t>(is_prompt);
      Py_ssize_t width = 0;
      PyObject** alt = items(t[5], &width, "a token's top list");
      widths[i] = width;
      for (Py_ssize_t j = 0; j < width; ++j) {
        *top_lp++ = as_double(item(alt[j], 0, 3, "a top entry"));
        *top_text++ = text_(PyTuple_GET_ITEM(alt[j], 1));
        *top_id++ = as_id(PyTuple_GET_ITEM(alt[j], 2));
      }
    }
  }

  PyObject* col_[kColumns];
  Py_ssize_t start_[kColumns];
  TextCodes text_;
  PyObject* bytes_;
};

// Appends the sequences [(choice, tokens, ids), ...] of one record to the columns; returns the
// number of tokens the columns hold.
Py_ssize_t add_tokens(const py::tuple& columns, int64_t record, const py::list& sequences,
                      const py::dict& strings, const py::dict& token_bytes) {
  Columns cols(columns, strings.ptr(), token_bytes.ptr());
  try {
    for (const py::handle seq : sequences) cols.sequence(record, seq.ptr());
  } catch (py::error_already_set&) {
    cols.roll_back();  // (the exception is held by the object: no Python error is set)
    throw;
  } catch (...) {
    cols.roll_back();
    throw;
  }
  return cols.waiting();
}

}  // namespace

void bind_io(py::module_& m) {
  m.def("io_add_tokens", &add_tokens, py::arg("columns"), py::arg("record"), py::arg("sequences"),
        py::arg("strings"), py::arg("token_bytes"),
        "Appends the sequences [(choice, tokens, ids), ...] of one record to the readers' "
        "token columns (12 bytearrays); returns the tokens they hold.");
}
