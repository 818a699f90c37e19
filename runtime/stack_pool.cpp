// stack_pool.cpp: slab-carved fiber stacks (see stack_pool.hpp).

#include "runtime/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <new>
#include <system_error>

#include "runtime/context.hpp"
#include "runtime/sanitizers.hpp"
#include "weft/detail/check.hpp"

#if WEFT_TSAN
#include <sanitizer/tsan_interface.h>
// A stack passes from a finished fiber to the next through caches that are
// plain per-processor lists: tell TSan that the new owner's accesses come
// after the old owner's. The chain, for fiber A's stack reused by fiber N:
// A's last switch (switch_final, __tsan_switch_to_fiber with sync) orders
// A before the context that runs recycle_action, which releases here after
// A's context is destroyed; whoever binds N (bind_stack, on g0 or inside a
// parking fiber's park_current) acquires here, whatever path the slot took
// (a cache, the global list), then creates N's TSan fiber and switches to
// it with sync. So a report of two fibers racing on one slot, one after the
// other, names an access to A's frame that is not ordered before A ended:
// another party still touching a node on A's stack after A was woken (a
// real bug in that waker), not a gap here.
#define WEFT_TSAN_RELEASE(p) __tsan_release(p)
#define WEFT_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define WEFT_TSAN_RELEASE(p) ((void)0)
#define WEFT_TSAN_ACQUIRE(p) ((void)0)
#endif

namespace weft::detail {
namespace {

constexpr std::size_t guarded_slab_stacks = 64;
constexpr std::size_t canary_slab_stacks = 1024;

std::size_t read_max_map_count() {
  std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r");
  unsigned long v = 65530;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu", &v) != 1) v = 65530;
    std::fclose(f);
  }
  return v;
}

}  // namespace

void stack_pool::init(std::size_t usable) {
  // Two mappings per guarded stack; leave three quarters of the budget to
  // the application and the rest of the runtime.
  init(usable, read_max_map_count() / 8);
}

void stack_pool::init(std::size_t usable, std::size_t guard_budget) {
  page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  usable_ = usable;
  guard_budget_ = guard_budget;
}

void stack_pool::grow_locked() {
  const bool guarded = guard_budget_ >= guarded_slab_stacks;
  const std::size_t n = guarded ? guarded_slab_stacks : canary_slab_stacks;
  // Guarded: guard page + stack. Canary slabs: the stacks back to back, each
  // canary_bytes short of its span so the slot above has its canary there.
  const std::size_t span = guarded ? page_ + usable_ : usable_;
  // Unguarded slabs get one extra PROT_NONE page at the bottom.
  const std::size_t bytes = n * span + (guarded ? 0 : page_);
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    throw std::system_error(errno, std::generic_category(), "weft: mmap of a stack slab");
  auto* slots = new (std::nothrow) stack_slot[n];
  if (slots == nullptr) {
    ::munmap(base, bytes);
    throw std::bad_alloc();
  }
  char* first = static_cast<char*>(base) + (guarded ? 0 : page_);
  if (!guarded && ::mprotect(base, page_, PROT_NONE) != 0) {
    int e = errno;
    ::munmap(base, bytes);
    delete[] slots;
    throw std::system_error(e, std::generic_category(), "weft: mprotect of a stack guard");
  }
  for (std::size_t i = 0; i < n; ++i) {
    char* slot_base = first + i * span;
    if (guarded && ::mprotect(slot_base, page_, PROT_NONE) != 0) {
      int e = errno;
      ::munmap(base, bytes);
      delete[] slots;
      throw std::system_error(e, std::generic_category(), "weft: mprotect of a stack guard");
    }
    slots[i].lo = guarded ? slot_base + page_ : slot_base;
    slots[i].size = guarded ? usable_ : usable_ - canary_bytes;
    slots[i].guarded = guarded || i == 0;  // the slab's guard page is under slot 0
    slots[i].resident = false;
    slots[i].canary_above = !guarded && i + 1 < n;
  }
  // Fresh stacks are not resident: they join the cold list (empty when a
  // slab is added), linked in reverse so the lowest addresses go first.
  for (std::size_t i = n; i-- > 0;) {
    slots[i].next = cold_;
    cold_ = &slots[i];
  }
  if (guarded) guard_budget_ -= n;
  slabs_.push_back(slab{base, bytes, slots});
  cold_count_.fetch_add(n, std::memory_order_relaxed);
  total_ += n;
}

void stack_pool::refill_locked(stack_cache& c) {
  if (free_ == nullptr && cold_ == nullptr) grow_locked();
  // Warm stacks only while there are any: a batch mixing in cold ones
  // would hand those out first (the cache is LIFO).
  const bool warm = free_ != nullptr;
  stack_slot*& from = warm ? free_ : cold_;
  // The batch keeps the list's order (lowest address first on a fresh
  // slab), as the canary design assumes (stack_pool.hpp): the check of a
  // stack reads the top of the slot below, which is then a stack already
  // in use, its page resident. Reversed, the read reached an untouched
  // page whenever a stack was handed out before the one below it.
  stack_slot* first = from;
  stack_slot* last = from;
  unsigned k = 1;
  while (k < batch && last->next != nullptr) {
    last = last->next;
    ++k;
  }
  from = last->next;
  last->next = c.head;
  c.head = first;
  c.count += k;
  if (warm) {
    const std::size_t left = free_count_.load(std::memory_order_relaxed) - k;
    free_count_.store(left, std::memory_order_relaxed);
    if (left < low_) low_ = left;
  } else {
    cold_count_.fetch_sub(k, std::memory_order_relaxed);
  }
}

stack_slot* stack_pool::acquire(stack_cache& c) {
  if (c.head == nullptr) {
    os_lock lk(mu_);
    refill_locked(c);
  }
  stack_slot* s = c.head;
  c.head = s->next;
  --c.count;
  s->next = nullptr;
  WEFT_TSAN_ACQUIRE(s->lo);
  WEFT_DCHECK(canary_intact(*s, s->hi()), "a free stack's canary is not zero (S4)");
  return s;
}

void stack_pool::release(stack_cache& c, stack_slot* s) noexcept {
  WEFT_TSAN_RELEASE(s->lo);
  s->resident = true;
  s->next = c.head;
  c.head = s;
  if (++c.count <= cache_max) return;
  // Give the older half (the tail of the LIFO) back to the global list.
  stack_slot* keep = c.head;
  for (unsigned i = 1; i < cache_max / 2; ++i) keep = keep->next;
  stack_slot* rest = keep->next;
  keep->next = nullptr;
  c.count = cache_max / 2;
  stack_slot* tail = rest;
  std::size_t n = 1;
  while (tail->next != nullptr) {
    tail = tail->next;
    ++n;
  }
  os_lock lk(mu_);
  tail->next = free_;
  free_ = rest;
  free_count_.fetch_add(n, std::memory_order_relaxed);
}

std::size_t stack_pool::scavenge() noexcept {
  stack_slot* victims = nullptr;
  std::size_t n = 0;
  {
    os_lock lk(mu_);
    lows_[lows_seen_ % scavenge_ticks] = low_;
    ++lows_seen_;
    const std::size_t count = free_count_.load(std::memory_order_relaxed);
    low_ = count;
    if (lows_seen_ < scavenge_ticks) return 0;
    std::size_t unused = count;
    for (std::size_t l : lows_) unused = std::min(unused, l);
    if (unused <= scavenge_floor) return 0;
    // The bottom `unused` stacks of the warm list stayed there for the
    // last scavenge_ticks ticks (LIFO, S3); release the bottom n of them.
    const std::size_t excess = unused - scavenge_floor;
    n = std::min({excess, std::max(excess - excess / 2, scavenge_min_batch), scavenge_max_batch});
    stack_slot** link = &free_;
    for (std::size_t i = 0; i < count - n; ++i) link = &(*link)->next;
    victims = *link;
    *link = nullptr;
    free_count_.store(count - n, std::memory_order_relaxed);
    low_ = count - n;
    for (std::size_t& l : lows_) l = l > n ? l - n : 0;
  }
  // Detached (S1): nobody else can reach these stacks while we madvise.
  for (stack_slot* s = victims; s != nullptr; s = s->next) s->in_batch = true;
  std::size_t released = 0;
  stack_slot* tail = victims;
  for (stack_slot* s = victims; s != nullptr; s = s->next) {
    if (s->resident) {
      // The span up to the next slot; its top page holds the canary of the
      // slot above (canary slabs), released only with that slot (S4).
      std::size_t bytes = (s->size + page_ - 1) & ~(page_ - 1);
      if (s->canary_above && !(s + 1)->in_batch) bytes -= page_;
      if (bytes > 0) ::madvise(s->lo, bytes, MADV_DONTNEED);
      s->resident = false;
      ++released;
    }
    tail = s;
  }
  for (stack_slot* s = victims; s != nullptr; s = s->next) s->in_batch = false;
  os_lock lk(mu_);
  tail->next = cold_;
  cold_ = victims;
  cold_count_.fetch_add(n, std::memory_order_relaxed);
  return released;
}

void stack_pool::flush(stack_cache& c) noexcept {
  if (c.head == nullptr) return;
  stack_slot* tail = c.head;
  while (tail->next != nullptr) tail = tail->next;
  os_lock lk(mu_);
  tail->next = free_;
  free_ = c.head;
  free_count_.fetch_add(c.count, std::memory_order_relaxed);
  c.head = nullptr;
  c.count = 0;
}

std::uint64_t stack_pool::stacks_out() const noexcept {
  os_lock lk(mu_);
  return total_ - free_count_.load(std::memory_order_relaxed) -
         cold_count_.load(std::memory_order_relaxed);
}

void stack_pool::destroy() noexcept {
  os_lock lk(mu_);
  for (slab& s : slabs_) {
    ::munmap(s.base, s.bytes);
    delete[] s.slots;
  }
  slabs_.clear();
  slabs_.shrink_to_fit();
  free_ = nullptr;
  cold_ = nullptr;
  free_count_.store(0, std::memory_order_relaxed);
  cold_count_.store(0, std::memory_order_relaxed);
  total_ = 0;
  low_ = 0;
  lows_seen_ = 0;
}

}  // namespace weft::detail
