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
//   canary: the top canary_bytes of the slot below each such stack are never
//   written by a correct fiber (that slot's stack ends under them), so they
//   must read zero. They share a page with the top of the stack below, which
//   is resident while that stack is in use (slots go out lowest first), so
//   the check costs no memory. The slab's lowest stack has the slab's guard
//   page right under it and counts as guarded. The scheduler checks the
//   canary and the saved stack pointer every time such a fiber switches out.
//   Rejected: one mmap per stack (stops near 30,000 fibers at the default
//   vm.max_map_count); canary words inside the usable stack (they would
//   touch the stack's lowest page and double a parked fiber's memory); a
//   canary page of its own under each stack (reading an untouched page maps
//   the shared zero page on most kernels, but where the kernel has no zero
//   page, e.g. VMs booted with pvm_no_zero_page, each read commits a page:
//   8,100 B per parked fiber instead of 4,100).
//
//   Freed stacks go to the freeing worker's cache (LIFO, so the next fiber
//   gets a stack whose pages are already resident: a first touch costs
//   1.6-55 us on this VM); caches exchange batches with one global list of
//   warm free stacks, itself LIFO.
//   The scavenger (Go's background scavenger, for stacks) gives back the
//   pages of free stacks nobody needed for a while: sysmon calls scavenge()
//   once per scavenge tick (1 s). The warm list's low-water mark since the
//   previous tick is the number of stacks at its bottom that no acquire
//   reached during that tick; the minimum of the last `scavenge_ticks` marks
//   is the number that stayed unused for that long (the hysteresis: a burst
//   that comes back within a few seconds finds its stacks warm). Half of
//   that cold excess over `scavenge_floor` (at least 256, at most 4,096) leaves
//   the warm list per tick, has its pages released (MADV_DONTNEED; the
//   addresses stay) and joins the cold list, which acquire draws from only
//   when the warm list is empty, before mapping a new slab.
//   Rejected: trimming as stacks are freed. Every madvise on a process
//   running on several CPUs is a TLB shootdown, an interrupt to each of
//   them; done on the hot path it took half of skynet's time here. Also
//   rejected: a fixed high-water mark of warm stacks (the previous design,
//   16,384): it kept a 5,000-connection burst resident forever and gave a
//   1,000,000-fiber burst back a second after it ended, to be touched again
//   by the next one.
//
// Invariants
//   S1  A stack_slot is in at most one place: a cache, the warm list, the
//       cold list, the scavenger's detached batch, or bound to one fiber.
//       Its `resident` flag is written only by whoever holds it (S1), so
//       the scavenger's madvise never races a fiber using the stack.
//   S2  Slabs are unmapped only by destroy(), with no fiber alive.
//   S3  free_count_ is the warm list's length and low_ <= free_count_,
//       both under mu_. The marks in lows_ are the scavenger's alone
//       (sysmon's thread; scavenge() is never called concurrently).
//   S4  The scavenger releases a canary slot's top page, which holds the
//       canary of the slot above, only when that slot is in the same
//       detached batch: a kept stack (bound, cached or warm) keeps its
//       canary resident and as written, so an overflow in progress is
//       still reported at its next switch and the check faults nothing in.
//       A released stack whose upper neighbour was kept keeps that one
//       page until it is next used. A free stack's own canary reads zero
//       (exit_current checked it; a release only zeroes it), so a stack
//       taken from either list comes armed (checked, WEFT_DCHECK).
//
// Lock order: stack_pool::mu_ is a leaf.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/locks.hpp"

namespace weft::detail {

struct stack_slot {
  char* lo = nullptr;    // lowest usable byte
  std::size_t size = 0;  // usable bytes (canary slabs: a whole number of pages less canary_bytes)
  stack_slot* next = nullptr;  // free-list link, owned by the list holding the slot (S1)
  bool guarded = false;        // a PROT_NONE page lies right below lo
  bool resident = false;       // its pages may be resident (cleared by MADV_DONTNEED)
  // The next slot of the slab (this + 1) has its canary in this slot's top
  // page (S4). Set when the slab is made.
  bool canary_above = false;
  bool in_batch = false;  // in the scavenger's detached batch; the scavenger's alone (S4)

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
  // init: usable bytes per stack (already page-rounded). The second form
  // sets how many guarded stacks may be made (tests: 0 for canary slabs
  // only); the first allows an eighth of vm.max_map_count.
  void init(std::size_t usable);
  void init(std::size_t usable, std::size_t guard_budget);
  // destroy: unmap every slab (S2) and drop all lists.
  void destroy() noexcept;

  stack_slot* acquire(stack_cache& c);
  void release(stack_cache& c, stack_slot* s) noexcept;
  // flush: give a cache's stacks back to the global list (processor teardown).
  void flush(stack_cache& c) noexcept;
  // scavenge: one scavenger tick (sysmon's thread only, S3): give back the
  // pages of free stacks that stayed unused for the last `scavenge_ticks`
  // ticks. Returns how many stacks it released.
  std::size_t scavenge() noexcept;
  // scavenge_pending: warm free stacks above the floor exist, so a later
  // tick may release some (a relaxed hint: sysmon keeps ticking while true).
  bool scavenge_pending() const noexcept {
    return free_count_.load(std::memory_order_relaxed) > scavenge_floor;
  }

  // canary_intact: false if a fiber on an unguarded stack ran past its
  // bottom. `sp` is its saved stack pointer.
  static bool canary_intact(const stack_slot& s, const void* sp) noexcept {
    if (s.guarded) return true;
    if (static_cast<const char*>(sp) < s.lo + 256) return false;
    auto* w = reinterpret_cast<const volatile std::uint64_t*>(s.lo) - canary_words;  // slot below
    std::uint64_t any = 0;
    for (unsigned i = 0; i < canary_words; ++i) any |= w[i];
    return any == 0;
  }

  std::size_t usable() const noexcept { return usable_; }
  std::uint64_t stacks_out() const noexcept;
  // warm_free, cold_free: lengths of the two global lists (statistics).
  std::uint64_t warm_free() const noexcept { return free_count_.load(std::memory_order_relaxed); }
  std::uint64_t cold_free() const noexcept { return cold_count_.load(std::memory_order_relaxed); }

 private:
  static constexpr unsigned canary_words = 8;
  static constexpr std::size_t canary_bytes = canary_words * sizeof(std::uint64_t);
  static constexpr unsigned batch = 32;
  static constexpr unsigned cache_max = 64;

 public:
  // Ticks a free stack must stay unused before the scavenger releases it.
  static constexpr unsigned scavenge_ticks = 5;
  // Warm free stacks the scavenger never releases (besides the caches).
  static constexpr std::size_t scavenge_floor = 64;
  // The least it releases in one tick, when there is that much.
  static constexpr std::size_t scavenge_min_batch = 256;
  // ... and the most: one madvise each, on sysmon's thread (a few ms).
  static constexpr std::size_t scavenge_max_batch = 4096;

 private:
  void grow_locked() WEFT_REQUIRES(mu_);
  void refill_locked(stack_cache& c) WEFT_REQUIRES(mu_);

  struct slab {
    void* base;
    std::size_t bytes;
    stack_slot* slots;
  };

  std::size_t usable_ = 0;
  std::size_t page_ = 4096;
  std::size_t guard_budget_ = 0;  // guarded stacks still allowed
  mutable os_mutex mu_;           // mutable: stacks_out() is const
  std::vector<slab> slabs_ WEFT_GUARDED_BY(mu_);
  stack_slot* free_ WEFT_GUARDED_BY(mu_) = nullptr;  // warm list, LIFO
  stack_slot* cold_ WEFT_GUARDED_BY(mu_) = nullptr;  // pages released by the scavenger
  // Written under mu_; read without it as statistics and as the scavenger's
  // hint (relaxed).
  std::atomic<std::size_t> free_count_{0};
  std::atomic<std::size_t> cold_count_{0};
  std::size_t total_ WEFT_GUARDED_BY(mu_) = 0;
  std::size_t low_ WEFT_GUARDED_BY(mu_) = 0;  // the warm list's low-water mark this tick (S3)
  // The scavenger's (S3): low-water marks of the last scavenge_ticks ticks,
  // a ring; lows_seen_ counts the ticks so far.
  std::size_t lows_[scavenge_ticks] WEFT_GUARDED_BY(mu_) = {};
  std::uint64_t lows_seen_ WEFT_GUARDED_BY(mu_) = 0;
};

}  // namespace weft::detail
