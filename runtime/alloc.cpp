// alloc.cpp: heap storage for fiber closures that do not fit in the record.
//
// A closure is allocated by the thread that calls go() and freed by the
// worker that ran the fiber, usually another thread. oneTBB's scalable
// allocator keeps per-thread pools and returns a block freed elsewhere to
// its owner's pool without a global lock, which is exactly this pattern
// (glibc malloc serialises cross-thread frees on the owning arena's lock).
// Under the sanitizers we use operator new instead, so ASan and LSan see
// these blocks.

#include <new>

#include "runtime/context.hpp"
#include "runtime/scheduler.hpp"

#if !WEFT_ASAN && !WEFT_TSAN
#include <tbb/scalable_allocator.h>
#endif

namespace weft::detail {

namespace {
constexpr std::size_t closure_align = 64;  // covers every alignment go() accepts
}

void* closure_alloc(std::size_t size, std::size_t align) {
  if (align > closure_align) throw std::bad_alloc();
#if !WEFT_ASAN && !WEFT_TSAN
  void* p = scalable_aligned_malloc(size, closure_align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
#else
  return ::operator new (size, std::align_val_t{closure_align});
#endif
}

void closure_free(void* p) noexcept {
#if !WEFT_ASAN && !WEFT_TSAN
  scalable_aligned_free(p);
#else
  ::operator delete (p, std::align_val_t{closure_align});
#endif
}

}  // namespace weft::detail
