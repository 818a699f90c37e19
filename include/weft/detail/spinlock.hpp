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
// covered by falling back to sched_yield (in lock_slow, runtime/chan.cpp:
// out of line, so this public header needs no system header).

#include <atomic>

#include "weft/detail/check.hpp"
#include "weft/detail/thread_safety.hpp"

namespace weft::detail {

// runtime_own_work: a worker's fiber starts (true) or stops (false) doing
// the runtime's work rather than its own: waiting out a lock holder that
// the OS preempted, or waking a long list of waiters (wake_count). That
// time is the runtime's: sysmon does not count it towards a CPU hog
// (processor.hpp, rtwork). Called in pairs, on slow paths only; no-op off a
// worker.
void runtime_own_work(bool begin) noexcept;

// wake_count: counts the wakes of one loop that unparks a list (a
// notify_all, a close, a wait_group reaching zero). Past the first
// long_wakes the loop is the runtime's own work (runtime_own_work): a
// notify_all of a million waiters ran for seconds on a loaded machine, and
// sysmon reported its caller as a CPU hog.
class wake_count {
 public:
  static constexpr unsigned long_wakes = 256;
  wake_count() = default;
  wake_count(const wake_count&) = delete;
  wake_count& operator=(const wake_count&) = delete;
  ~wake_count() {
    if (n_ >= long_wakes) runtime_own_work(false);
  }
  void woke() noexcept {
    if (++n_ == long_wakes) runtime_own_work(true);
  }

 private:
  unsigned long n_ = 0;
};

// cpu_relax: tell the core this is a spin-wait loop.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class WEFT_CAPABILITY("spinlock") spinlock {
 public:
  void lock() noexcept WEFT_ACQUIRE() {
    // acquire pairs with the release in unlock().
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  bool try_lock() noexcept WEFT_TRY_ACQUIRE(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  // try_lock_once: one exchange, without try_lock's read first (which costs
  // a second cache-line transfer when the line is on another core); for
  // callers that run their own contended path (channels, chan_core.hpp).
  bool try_lock_once() noexcept WEFT_TRY_ACQUIRE(true) {
    return !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept WEFT_RELEASE() { locked_.store(false, std::memory_order_release); }
  // is_locked: a snapshot, for checks only (relaxed: orders nothing).
  bool is_locked() const noexcept { return locked_.load(std::memory_order_relaxed); }
  // assert_held: tells the thread-safety analysis that the caller holds
  // the lock where it cannot see it (a lock handed across a function
  // boundary); the checked builds check that someone holds it.
  void assert_held() const noexcept WEFT_ASSERT_HELD(this) {
    WEFT_DCHECK(is_locked(), "a lock the caller should hold is free");
  }

 private:
  void lock_slow() noexcept;  // spins, then yields the thread (runtime/chan.cpp)
  std::atomic<bool> locked_{false};
};

}  // namespace weft::detail
