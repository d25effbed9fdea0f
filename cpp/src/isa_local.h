// Building blocks for code compiled once per instruction-set level (files *_impl.h, included by
// *_{baseline,avx2,avx512}.cpp after defining LOGCAL_ISA_NAMESPACE).
//
// Such code must not share template instantiations with the copies built for other levels: the
// linker keeps one copy of an inline function for all callers, perhaps one with instructions
// this CPU lacks. Everything here is private to the level's namespace, and so is every
// instantiation that involves it (tests/test_isa_isolation.py checks the objects).
#pragma once
#ifndef LOGCAL_ISA_NAMESPACE
#error "define LOGCAL_ISA_NAMESPACE before including isa_local.h"
#endif

#include <memory>
#include <vector>

namespace logcal {
namespace cpu {
namespace LOGCAL_ISA_NAMESPACE {
namespace {

// std::allocator under a type of this namespace: std::vector<T, LocalAllocator<T>> and the
// algorithms over its iterators are instantiated anew in each level.
template <class T>
struct LocalAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = LocalAllocator<U>;
  };
  LocalAllocator() = default;
  template <class U>
  LocalAllocator(const LocalAllocator<U>&) {}
};

template <class T>
using Vector = std::vector<T, LocalAllocator<T>>;

}  // namespace
}  // namespace LOGCAL_ISA_NAMESPACE
}  // namespace cpu
}  // namespace logcal
