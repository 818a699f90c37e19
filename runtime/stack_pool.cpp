// stack_pool.cpp: slab-carved fiber stacks (see stack_pool.hpp).

#include "runtime/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <new>
#include <system_error>

#include "runtime/context.hpp"

#if WEFT_TSAN
#include <sanitizer/tsan_interface.h>
// A stack passes from a finished fiber to the next through caches that are
// plain per-processor lists: tell TSan that the new owner's accesses come
// after the old owner's (which they do: the handover is ordered by the
// switch and the processor's ownership).
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
  page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  usable_ = usable;
  // Two mappings per guarded stack; leave three quarters of the budget to
  // the application and the rest of the runtime.
  guard_budget_ = read_max_map_count() / 8;
}

void stack_pool::grow_locked() {
  const bool guarded = guard_budget_ >= guarded_slab_stacks;
  const std::size_t n = guarded ? guarded_slab_stacks : canary_slab_stacks;
  const std::size_t span = page_ + usable_;  // guard or canary page + stack
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
    slots[i].lo = slot_base + page_;
    slots[i].size = usable_;
    slots[i].guarded = guarded;
    slots[i].resident = false;
  }
  // Link in reverse so the lowest addresses are handed out first.
  for (std::size_t i = n; i-- > 0;) {
    slots[i].next = free_;
    free_ = &slots[i];
  }
  if (guarded) guard_budget_ -= n;
  slabs_.push_back(slab{base, bytes, slots});
  free_count_.fetch_add(n, std::memory_order_relaxed);
  total_ += n;
}

stack_slot* stack_pool::acquire(stack_cache& c) {
  if (c.head == nullptr) {
    std::lock_guard<std::mutex> lk(mu_);
    if (free_ == nullptr) grow_locked();
    for (unsigned i = 0; i < batch && free_ != nullptr; ++i) {
      stack_slot* s = free_;
      free_ = s->next;
      free_count_.fetch_sub(1, std::memory_order_relaxed);
      s->next = c.head;
      c.head = s;
      ++c.count;
    }
  }
  stack_slot* s = c.head;
  c.head = s->next;
  --c.count;
  s->next = nullptr;
  WEFT_TSAN_ACQUIRE(s->lo);
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
  std::lock_guard<std::mutex> lk(mu_);
  tail->next = free_;
  free_ = rest;
  free_count_.fetch_add(n, std::memory_order_relaxed);
}

std::size_t stack_pool::trim(std::size_t keep) noexcept {
  if (free_count_.load(std::memory_order_relaxed) <= keep) return 0;
  // Detach the stacks beyond the first `keep` (the LIFO keeps the hottest
  // first), release their pages outside the lock, and put them back.
  stack_slot* cold = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stack_slot* s = free_;
    for (std::size_t i = 1; s != nullptr && i < keep; ++i) s = s->next;
    if (s == nullptr || s->next == nullptr) return 0;
    cold = s->next;
    s->next = nullptr;
  }
  std::size_t released = 0, n = 0;
  stack_slot* tail = cold;
  for (stack_slot* s = cold; s != nullptr; s = s->next) {
    if (s->resident) {
      ::madvise(s->lo, s->size, MADV_DONTNEED);
      s->resident = false;
      ++released;
    }
    tail = s;
    ++n;
  }
  std::lock_guard<std::mutex> lk(mu_);
  tail->next = free_;
  free_ = cold;
  (void)n;
  return released;
}

void stack_pool::flush(stack_cache& c) noexcept {
  if (c.head == nullptr) return;
  stack_slot* tail = c.head;
  while (tail->next != nullptr) tail = tail->next;
  std::lock_guard<std::mutex> lk(mu_);
  tail->next = free_;
  free_ = c.head;
  free_count_.fetch_add(c.count, std::memory_order_relaxed);
  c.head = nullptr;
  c.count = 0;
}

std::uint64_t stack_pool::stacks_out() const noexcept {
  auto* self = const_cast<stack_pool*>(this);
  std::lock_guard<std::mutex> lk(self->mu_);
  return total_ - free_count_.load(std::memory_order_relaxed);
}

void stack_pool::destroy() noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  for (slab& s : slabs_) {
    ::munmap(s.base, s.bytes);
    delete[] s.slots;
  }
  slabs_.clear();
  slabs_.shrink_to_fit();
  free_ = nullptr;
  free_count_.store(0, std::memory_order_relaxed);
  total_ = 0;
}

}  // namespace weft::detail
