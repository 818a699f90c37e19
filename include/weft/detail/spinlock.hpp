#pragma once
// detail::spinlock: the short lock that guards channel, mutex and timer
// state, and that a parking fiber hands to the scheduler to release after its
// context is saved (the park protocol; see runtime/switch.cpp).
//
// Why not std::mutex: the lock is released on the far side of a context
// switch, by the scheduler code that runs on the next fiber's stack. That is
// the same OS thread, but ThreadSanitizer models fibers as threads and would
// report an unlock from the wrong thread; an atomic flag carries the
// happens-before edge TSan needs. Critical sections are a few dozen
// instructions, so spinning beats sleeping; a holder preempted by the OS is
// covered by falling back to sched_yield.

#include <sched.h>

#include <atomic>

namespace weft::detail {

// cpu_relax: tell the core this is a spin-wait loop.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class spinlock {
 public:
  void lock() noexcept {
    // acquire pairs with the release in unlock().
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  // try_lock_once: one exchange, without try_lock's read first (which costs
  // a second cache-line transfer when the line is on another core); for
  // callers that run their own contended path (channels, chan_core.hpp).
  bool try_lock_once() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  void lock_slow() noexcept {
    for (unsigned spins = 0;; ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 128) {
          cpu_relax();
        } else {
          ::sched_yield();
          spins = 0;
        }
      }
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
    }
  }
  std::atomic<bool> locked_{false};
};

}  // namespace weft::detail
