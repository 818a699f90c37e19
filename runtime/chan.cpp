// chan.cpp: the non-template parts of channels (weft/chan.hpp,
// weft/detail/chan_core.hpp).

#include "weft/chan.hpp"

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "runtime/machine.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/timers.hpp"

namespace weft::detail {

// chan_alloc and chan_free are alloc.cpp's, beside the closure allocator.

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

void spinlock::lock_slow() noexcept {
  bool yielded = false;
  for (unsigned spins = 0;; ++spins) {
    while (locked_.load(std::memory_order_relaxed)) {
      if (++spins < 128) {
        cpu_relax();
      } else {
        if (!yielded) runtime_own_work(yielded = true);
        ::sched_yield();
        spins = 0;
      }
    }
    if (!locked_.exchange(true, std::memory_order_acquire)) break;
  }
  if (yielded) runtime_own_work(false);
}

void lock_contended(spinlock& lk) noexcept {
  // About 40 ns (a pause is ~9 ns here), doubling to about 40 us: a holder
  // that is merely busy is waited for briefly (hand-offs between two cores
  // stay fast), a core that keeps winning the lock is left to run its burst.
  // A holder preempted by the OS is covered by yielding once the backoff is
  // long.
  unsigned backoff = 4;
  bool yielded = false;
  for (;;) {
    for (unsigned i = 0; i < backoff; ++i) cpu_relax();
    if (lk.try_lock()) break;
    if (backoff < 4096) {
      backoff *= 2;
    } else {
      if (!yielded) runtime_own_work(yielded = true);
      ::sched_yield();
    }
  }
  if (yielded) runtime_own_work(false);
}

void chan_base::release_held(std::size_t r) noexcept {
  for (;;) {
    if (r == timer_hold + 1) {
      // The last handle, and the timer still holds the channel: destroy
      // takes the timer back with our reference still counted. acquire:
      // pairs with the other handles' releasing decrements.
      std::atomic_thread_fence(std::memory_order_acquire);
      destroy(this);
      return;
    }
    if (r < timer_hold) {  // the timer let go meanwhile
      if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(this);
      return;
    }
    // acq_rel: as release()'s decrement. A CAS, not a decrement: two last
    // handles going at once must not both miss the timer_hold + 1 step.
    if (refs.compare_exchange_weak(r, r - 1, std::memory_order_acq_rel,
                                   std::memory_order_relaxed)) {
      return;
    }
  }
}

bool on_runtime_thread() noexcept { return current_m() != nullptr; }

std::uint64_t chan_rand() noexcept {
  // xorshift64*, one state per thread; read and written only here, and no
  // switch happens inside, so a migrating fiber cannot carry a stale
  // thread-local address across (README.md, "Fibers and threads").
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
