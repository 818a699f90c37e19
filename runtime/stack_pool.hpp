#pragma once
// stack_pool.hpp: fiber stacks.
//
// Design
//   Stacks are carved from large mmap'd slabs (MAP_NORESERVE: pages are
//   committed only when touched), so a million stacks cost a few thousand
//   mappings, not a million. Each stack gets a PROT_NONE guard page directly
//   below it while the mapping budget allows (a guard splits the slab's
//   mapping: about two mappings per guarded stack; the budget is a quarter of
//   vm.max_map_count). Beyond the budget stacks come from unguarded slabs
//   with one guard page at the slab's bottom, and an overflow is caught by a
//   canary: the page under each such stack is never written by a correct
//   fiber, so its top words must read zero (reading an untouched page maps
//   the shared zero page and costs no memory). The scheduler checks the
//   canary and the saved stack pointer every time such a fiber switches out.
//   Rejected: one mmap per stack (stops near 30,000 fibers at the default
//   vm.max_map_count); canary words inside the usable stack (they would
//   touch the stack's lowest page and double a parked fiber's memory).
//
//   Freed stacks go to the freeing worker's cache (LIFO, so the next fiber
//   gets a stack whose pages are already resident: a first touch costs ~1.6
//   us on this VM); caches exchange batches with one global free list.
//   sysmon, once a second, gives the pages of free stacks beyond a
//   high-water mark back to the OS (trim: MADV_DONTNEED) and keeps the
//   addresses. Rejected: trimming as stacks are freed. Every madvise on a
//   process running on several CPUs is a TLB shootdown, an interrupt to
//   each of them; done on the hot path it took half of skynet's time here.
//
// Invariants
//   S1  A stack_slot is in at most one place: a cache, the global list, or
//       bound to one fiber.
//   S2  Slabs are unmapped only by destroy(), with no fiber alive.
//
// Lock order: stack_pool::mu_ is a leaf.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace weft::detail {

struct stack_slot {
  char* lo = nullptr;          // lowest usable byte
  std::size_t size = 0;        // usable bytes (a whole number of pages)
  stack_slot* next = nullptr;  // free-list link, owned by the list holding the slot (S1)
  bool guarded = false;        // a PROT_NONE page lies right below lo
  bool resident = false;       // its pages may be resident (cleared by MADV_DONTNEED)

  char* hi() const noexcept { return lo + size; }
};

// stack_cache: a worker's private stack list. Owned by the processor that
// holds it; touched only by the thread holding that processor.
struct stack_cache {
  stack_slot* head = nullptr;
  unsigned count = 0;
};

class stack_pool {
 public:
  // init: usable bytes per stack (already page-rounded).
  void init(std::size_t usable);
  // destroy: unmap every slab (S2) and drop all lists.
  void destroy() noexcept;

  stack_slot* acquire(stack_cache& c);
  void release(stack_cache& c, stack_slot* s) noexcept;
  // flush: give a cache's stacks back to the global list (processor teardown).
  void flush(stack_cache& c) noexcept;
  // trim: give back the pages of free stacks beyond the `keep` most recently
  // freed (sysmon, off the hot path). Returns how many stacks it trimmed.
  std::size_t trim(std::size_t keep) noexcept;

  // canary_intact: false if a fiber on an unguarded stack ran past its
  // bottom. `sp` is its saved stack pointer.
  static bool canary_intact(const stack_slot& s, const void* sp) noexcept {
    if (s.guarded) return true;
    if (static_cast<const char*>(sp) < s.lo + 256) return false;
    auto* w = reinterpret_cast<const volatile std::uint64_t*>(s.lo) - canary_words;
    std::uint64_t any = 0;
    for (unsigned i = 0; i < canary_words; ++i) any |= w[i];
    return any == 0;
  }

  std::size_t usable() const noexcept { return usable_; }
  std::size_t slabs() const noexcept { return slabs_.size(); }
  std::uint64_t stacks_out() const noexcept;

 private:
  static constexpr unsigned canary_words = 8;
  static constexpr unsigned batch = 32;
  static constexpr unsigned cache_max = 64;

 public:
  // Free stacks kept resident (about 4-8 KiB each once used): enough for a
  // burst of hundreds of thousands of short fibers to reuse hot memory.
  static constexpr std::size_t high_water = 16384;

 private:
  void grow_locked();  // requires mu_

  struct slab {
    void* base;
    std::size_t bytes;
    stack_slot* slots;
  };

  std::size_t usable_ = 0;
  std::size_t page_ = 4096;
  std::size_t guard_budget_ = 0;  // guarded stacks still allowed
  std::mutex mu_;
  // All below guarded by mu_.
  std::vector<slab> slabs_;
  stack_slot* free_ = nullptr;
  // Written under mu_; read without it as a trim hint (relaxed).
  std::atomic<std::size_t> free_count_{0};
  std::size_t total_ = 0;
};

}  // namespace weft::detail
