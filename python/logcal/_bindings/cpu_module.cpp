// The CPU extension module: run-time settings here; each area of the library binds its kernels
// in its own file (cpu_<area>.cpp) through a bind_<area>(module) function.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "logcal/cpu.h"

namespace py = pybind11;

void bind_token(py::module_& m);
void bind_sequence(py::module_& m);
void bind_calibration(py::module_& m);
void bind_calibration_logits(py::module_& m);
void bind_recalibration(py::module_& m);
void bind_io(py::module_& m);

namespace {

logcal::cpu::Isa isa_from_name(const std::string& name) {
  using logcal::cpu::Isa;
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512})
    if (name == logcal::cpu::isa_name(isa)) return isa;
  throw std::invalid_argument("unknown instruction-set level '" + name +
                              "' (expected baseline, avx2 or avx512)");
}

}  // namespace

PYBIND11_MODULE(_core_cpu, m) {
  m.doc() = "logcal CPU kernels (internal: use the functions of the logcal package)";
  bind_token(m);
  bind_sequence(m);
  bind_calibration(m);
  bind_calibration_logits(m);
  bind_recalibration(m);
  bind_io(m);
  m.def("set_num_threads", &logcal::cpu::set_num_threads, py::arg("n"),
        "Threads of the CPU kernels (n <= 0: the CPUs this process may run on).");
  m.def("get_num_threads", &logcal::cpu::get_num_threads, "Threads of the CPU kernels.");
  m.def(
      "isa", [] { return std::string(logcal::cpu::isa_name(logcal::cpu::active_isa())); },
      "The instruction-set level in use: baseline, avx2 or avx512.");
  m.def(
      "best_isa", [] { return std::string(logcal::cpu::isa_name(logcal::cpu::best_isa())); },
      "The best level compiled in and supported by this CPU.");
  m.def(
      "set_isa",
      [](const std::string& name) {
        if (!logcal::cpu::set_isa(isa_from_name(name)))
          throw std::invalid_argument("instruction-set level '" + name +
                                      "' is not supported by this CPU or build");
      },
      py::arg("name"), "Forces a lower level (for tests and benchmarks).");
}
