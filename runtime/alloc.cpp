// alloc.cpp: heap blocks for fiber closures that do not fit in the record
// (closure_alloc, sched_ops.hpp) and for channel states (chan_alloc,
// weft/chan.hpp).
//
// Both are allocated by one thread and often freed by another: a closure by
// the worker that ran the fiber, a channel by whoever drops the last handle.
// oneTBB's scalable allocator keeps per-thread pools and returns a block
// freed elsewhere to its owner's pool without a global lock, which is
// exactly this pattern (glibc malloc serialises cross-thread frees on the
// owning arena's lock), and its aligned blocks are cheap (glibc's aligned
// allocation is a slow path). Under the sanitizers we use operator new
// instead, so ASan and LSan see these blocks.

#include <cstddef>
#include <new>

#include "runtime/sanitizers.hpp"
#include "runtime/sched_ops.hpp"
#include "weft/chan.hpp"

#if !WEFT_ASAN && !WEFT_TSAN
#include <tbb/scalable_allocator.h>
#endif

namespace weft::detail {

namespace {

constexpr std::size_t closure_align = 64;  // covers every alignment go() accepts

void* block_alloc(std::size_t size, std::size_t align) {
#if !WEFT_ASAN && !WEFT_TSAN
  void* p = scalable_aligned_malloc(size, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
#else
  return ::operator new (size, std::align_val_t{align});
#endif
}

void block_free(void* p, std::size_t align) noexcept {
#if !WEFT_ASAN && !WEFT_TSAN
  (void)align;
  scalable_aligned_free(p);
#else
  ::operator delete (p, std::align_val_t{align});
#endif
}

}  // namespace

void* closure_alloc(std::size_t size, std::size_t align) {
  if (align > closure_align) throw std::bad_alloc();
  return block_alloc(size, closure_align);
}

void closure_free(void* p) noexcept { block_free(p, closure_align); }

void* chan_alloc(std::size_t size, std::size_t align) { return block_alloc(size, align); }

void chan_free(void* p, std::size_t align) noexcept { block_free(p, align); }

}  // namespace weft::detail
