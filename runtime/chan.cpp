// chan.cpp: the non-template parts of channels (weft/chan.hpp,
// weft/detail/chan_core.hpp).

#include "weft/chan.hpp"

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>

#include "runtime/scheduler.hpp"

#if !WEFT_ASAN && !WEFT_TSAN
#include <tbb/scalable_allocator.h>
#endif

namespace weft::detail {

// oneTBB's scalable allocator (as for closures, alloc.cpp): per-thread pools,
// cross-thread frees without a global lock, cheap aligned blocks (glibc's
// aligned allocation is a slow path). Under the sanitizers operator new, so
// ASan and LSan see the blocks.
void* chan_alloc(std::size_t size, std::size_t align) {
#if !WEFT_ASAN && !WEFT_TSAN
  void* p = scalable_aligned_malloc(size, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
#else
  return ::operator new (size, std::align_val_t{align});
#endif
}

void chan_free(void* p, std::size_t align) noexcept {
#if !WEFT_ASAN && !WEFT_TSAN
  (void)align;
  scalable_aligned_free(p);
#else
  ::operator delete (p, std::align_val_t{align});
#endif
}

void throw_closed_channel(const char* what) { throw closed_channel(what); }

void throw_capacity_too_large() { throw std::length_error("weft::chan: capacity too large"); }

void park_forever(wait_reason why) {
  waiter w;
  w.prepare();
  // Nobody ever unparks w: a fiber resumes only to be unwound (park
  // throws), an OS thread sleeps for good.
  park(
      w, [](void*) {}, nullptr, why, nullptr);
  std::fputs("weft: internal error: a party blocked forever was woken\n", stderr);
  std::abort();
}

void lock_contended(spinlock& lk) noexcept {
  // About 40 ns (a pause is ~9 ns here), doubling to about 40 us: a holder
  // that is merely busy is waited for briefly (hand-offs between two cores
  // stay fast), a core that keeps winning the lock is left to run its burst.
  // A holder preempted by the OS is covered by yielding once the backoff is
  // long.
  unsigned backoff = 4;
  for (;;) {
    for (unsigned i = 0; i < backoff; ++i) cpu_relax();
    if (lk.try_lock()) return;
    if (backoff < 4096) {
      backoff *= 2;
    } else {
      ::sched_yield();
    }
  }
}

bool on_runtime_thread() noexcept { return current_m() != nullptr; }

std::uint64_t chan_rand() noexcept {
  // xorshift64*, one state per thread; read and written only here, and no
  // switch happens inside, so a migrating fiber cannot carry a stale
  // thread-local address across (DESIGN.md section 7).
  static thread_local std::uint64_t state = 0;
  std::uint64_t x = state;
  if (x == 0) {
    x = static_cast<std::uint64_t>(now_ns()) ^ reinterpret_cast<std::uintptr_t>(&state) ^
        0x9E3779B97F4A7C15ull;
    if (x == 0) x = 1;
  }
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

}  // namespace weft::detail
