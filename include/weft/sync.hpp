#pragma once
// weft/sync.hpp: mutex, condition_variable and wait_group for fibers.
//
// Blocking parks the calling fiber, never its worker thread; the same
// objects also work from plain OS threads (which then sleep). Destroying one
// while fibers wait on it is undefined, as with std.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "weft/detail/duration.hpp"
#include "weft/detail/park.hpp"
#include "weft/detail/spinlock.hpp"
#include "weft/detail/thread_safety.hpp"
#include "weft/runtime.hpp"

namespace weft {

namespace detail {
// A queued waiter of a mutex, condition_variable or wait_group; lives on
// the waiting party's stack.
struct sync_node {
  waiter w;
  sync_node* next = nullptr;
  // condition_variable: 0 waiting, 1 notified, 2 timed out; decided by CAS.
  std::atomic<std::uint32_t> outcome{0};
  bool queued = false;  // in the object's list; guarded by the object's lock
};

// An intrusive FIFO of sync_nodes, guarded by its owner's spinlock.
struct node_queue {
  sync_node* head = nullptr;
  sync_node* tail = nullptr;
  void push(sync_node* n) noexcept;
  sync_node* pop() noexcept;
  void remove(sync_node* n) noexcept;  // n must be queued
  sync_node* take_all() noexcept;      // detach the whole list (linked by next)
  bool empty() const noexcept { return head == nullptr; }
};

// unlock_and_unpark: release `lk` and unpark every node of `list` (linked
// by next; claimed under `lk`), in the order chan_core.hpp C5 prescribes.
// The nodes may be gone once this returns.
void unlock_and_unpark(spinlock& lk, sync_node* list) noexcept WEFT_RELEASE(lk);
std::int64_t steady_ns(std::chrono::steady_clock::time_point t) noexcept;
// For the lock-cycle detector (runtime/deadlock.cpp): the id of the fiber
// holding a weft::mutex (0: a plain thread, or unlocked), and the number of
// fibers waiting for one.
std::uint64_t mutex_owner(const void* m) noexcept;
extern std::atomic<std::int64_t> g_mutex_waiters;
}  // namespace detail

// mutex: a fiber-parking mutual-exclusion lock, FIFO and starvation-free:
// an unlock with waiters hands the lock straight to the longest waiter.
// Usable with std::lock_guard, std::unique_lock and std::scoped_lock.
class mutex {
 public:
  mutex() = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  // lock: from a fiber or a plain thread. Not recursive: relocking from the
  // owner deadlocks, as with std::mutex.
  void lock() {
    detail::preempt_point();
    std::uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, locked, std::memory_order_acquire)) {
      owner_.store(this_fiber_id(), std::memory_order_relaxed);
      return;
    }
    lock_slow();
  }
  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    if (!state_.compare_exchange_strong(expected, locked, std::memory_order_acquire)) return false;
    owner_.store(this_fiber_id(), std::memory_order_relaxed);
    return true;
  }
  // unlock: must be called by the owner; unlocking an unlocked mutex aborts.
  void unlock() {
    owner_.store(0, std::memory_order_relaxed);
    std::uint32_t expected = locked;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release)) return;
    unlock_slow();
  }

 private:
  static constexpr std::uint32_t locked = 1;
  static constexpr std::uint32_t has_waiters = 2;
  void lock_slow();
  void unlock_slow();
  // locked | has_waiters. has_waiters changes only under lk_; with waiters
  // queued, unlock keeps `locked` set and hands ownership to the first.
  std::atomic<std::uint32_t> state_{0};
  // The holder's fiber id, for diagnostics only (lock cycles): written by
  // the holder (or by unlock when it hands the lock over), read by sysmon;
  // relaxed, since a detector that needs a wait of a second tolerates a
  // value nanoseconds stale.
  std::atomic<std::uint64_t> owner_{0};
  detail::spinlock lk_;
  detail::node_queue waiters_ WEFT_GUARDED_BY(lk_);
  friend std::uint64_t detail::mutex_owner(const void* m) noexcept;
};

// condition_variable: waits take std::unique_lock<weft::mutex>&. No
// spurious wakeups, but use the predicate forms anyway, as in Go and std.
class condition_variable {
 public:
  condition_variable() = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;

  void notify_one() noexcept;
  void notify_all() noexcept;

  void wait(std::unique_lock<mutex>& lk) { wait_impl(lk, INT64_MAX); }
  template <class Pred>
  void wait(std::unique_lock<mutex>& lk, Pred pred) {
    while (!pred()) wait(lk);
  }

  // wait_until / wait_for: as std's, for any clock and duration type,
  // floating-point ones included (weft/time.hpp says how durations are
  // read): a NaN throws std::invalid_argument, a time already past or a
  // non-positive duration (-infinity included) times out at once without
  // releasing `lk`, and a very long wait (+infinity) in effect never times
  // out.
  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lk,
                            const std::chrono::time_point<Clock, Duration>& t) {
    return wait_impl(lk, detail::deadline_ns(t, "weft::condition_variable::wait_until"))
               ? std::cv_status::no_timeout
               : std::cv_status::timeout;
  }
  template <class Clock, class Duration, class Pred>
  bool wait_until(std::unique_lock<mutex>& lk, const std::chrono::time_point<Clock, Duration>& t,
                  Pred pred) {
    const std::int64_t d = detail::deadline_ns(t, "weft::condition_variable::wait_until");
    while (!pred()) {
      if (!wait_impl(lk, d)) return pred();
    }
    return true;
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lk,
                          const std::chrono::duration<Rep, Period>& d) {
    return wait_until(lk, after_now(d));
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<mutex>& lk, const std::chrono::duration<Rep, Period>& d,
                Pred pred) {
    return wait_until(lk, after_now(d), std::move(pred));
  }

 private:
  template <class Rep, class Period>
  static std::chrono::steady_clock::time_point after_now(
      const std::chrono::duration<Rep, Period>& d) {
    const std::int64_t ns = detail::timeout_ns(d, "weft::condition_variable::wait_for");
    return std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  }
  // Returns false on timeout. `deadline` in steady_clock ns; INT64_MAX = none.
  bool wait_impl(std::unique_lock<mutex>& lk, std::int64_t deadline);

  detail::spinlock lk_;
  detail::node_queue waiters_ WEFT_GUARDED_BY(lk_);
};

// wait_group: wait for a collection of fibers to finish (Go's
// sync.WaitGroup). add(n) before starting work, done() when each finishes,
// wait() until the counter is zero. A negative counter throws
// std::logic_error and leaves the counter unchanged.
//
// A wait_group has a cache line to itself (alignas(64)): done() is called
// from fibers on every worker, and a wait_group declared on the stack of
// the fiber that starts the work would otherwise share its line with that
// fiber's busiest stack slots, so that each done() missed (perf/RESULTS.md,
// "Small thefts").
class alignas(64) wait_group {
 public:
  wait_group() = default;
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  void add(int n);
  void done() { add(-1); }
  void wait();

 private:
  // counter in the high 32 bits, number of waiters in the low 32. The
  // waiter count changes only under lk_; counter by fetch_add anywhere.
  std::atomic<std::uint64_t> state_{0};
  detail::spinlock lk_;
  detail::node_queue waiters_ WEFT_GUARDED_BY(lk_);
};

}  // namespace weft
