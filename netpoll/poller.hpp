#pragma once
// poller.hpp: the poller thread. It sleeps in epoll_pwait2 with the earliest
// timer's deadline as its timeout, fires due timers and wakes fibers parked
// on descriptors, and injects every fiber it readied in one batch.
//
// Design
//   One timer heap, guarded by one spinlock (the "timers lock"), serviced by
//   this thread. A fiber that sleeps queues its timer under the lock and
//   parks with the lock as its release (park protocol), so the timer cannot
//   fire before the fiber is parked. Timer callbacks run under the lock on
//   this thread, so cancelling under the lock is final: after it, the
//   callback has either run or never will.
//   Adding a timer earlier than the poller's current deadline wakes it via
//   an eventfd; wake_pending_ keeps that to one write per sleep.
//   Workers also fire due timers themselves at scheduling points (every
//   61st decision, with the global-queue check; fire_due), so a starved
//   poller thread (every core busy) does not make timers late: whoever gets
//   the lock first fires them.
//   Rejected for now: per-processor heaps (Go 1.14+). One heap serviced by
//   one thread is simpler and cannot strand timers on a busy processor;
//   measure under a timeout-heavy select load before changing.
//   Descriptors (netpoll.cpp, "Who polls"): while any worker runs, the
//   thread rests on the eventfd alone (ppoll, ns timeout) and the workers
//   poll the epoll set themselves; it waits on the epoll set only when
//   every processor is idle (the last worker to idle wakes it), and polls
//   it once per netpoll_rest_tick if the workers stopped polling. Events
//   tagged 0 are the eventfd; any other tag is a descriptor record's.
//
// Invariants
//   T1  A timer is in the heap iff index != npos; both change under lock_.
//   T2  sleep_until_ is written under lock_ and is never later than the
//       deadline the poller actually sleeps to.
//
// Lock order: poller::lock_ < global_queue::mu (callbacks ready fibers).

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "runtime/timer_heap.hpp"
#include "weft/detail/spinlock.hpp"

namespace weft::detail {

class poller {
 public:
  // start: create the epoll set and the eventfd and start the thread.
  void start();
  // stop: stop and join the thread. Timers stay queued (shutdown unwinding
  // cancels the ones that live on fiber stacks); call destroy() after.
  void stop();
  // destroy: dispose of queued runtime-owned timers (returns how many),
  // close descriptors.
  std::size_t destroy() noexcept;

  spinlock& timers_lock() noexcept { return lock_; }
  // add_timer_locked / cancel_timer_locked: the caller holds timers_lock().
  // cancel returns false when the timer already fired (or was never added).
  void add_timer_locked(timer* t);
  bool cancel_timer_locked(timer* t) noexcept;
  std::size_t timers_pending() noexcept;

  // wake: make the thread re-evaluate its deadline now.
  void wake() noexcept;

  // fire_due: fire the timers due at `now` on the calling thread (a worker
  // at a scheduling point), unless another thread holds the timers lock.
  // Workers do this every few dozen scheduling decisions (Go's checkTimers)
  // so timers stay punctual when the poller thread is starved of CPU.
  // earliest(): the next deadline, a lock-free hint.
  std::int64_t earliest() const noexcept { return earliest_.load(std::memory_order_relaxed); }
  void fire_due(std::int64_t now) noexcept;

  int epoll_fd() const noexcept { return epfd_; }
  // thread_tid: the poller thread's OS id (0 until it has started).
  long thread_tid() const noexcept { return tid_.load(std::memory_order_relaxed); }

 private:
  static constexpr int max_events = 128;
  void loop() noexcept;
  int wait_all(std::int64_t now, std::int64_t deadline, epoll_event* events) noexcept;
  int rest(std::int64_t now, std::int64_t deadline, epoll_event* events) noexcept;
  void drain_eventfd() noexcept;
  std::int64_t fire_due_locked(std::int64_t now) noexcept;  // returns the next deadline

  int epfd_ = -1;
  int evfd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<long> tid_{0};
  std::atomic<bool> wake_pending_{false};  // see Design; exchange/store by wakers and the thread
  spinlock lock_;
  timer_heap heap_;                       // guarded by lock_ (T1)
  std::int64_t sleep_until_ = INT64_MAX;  // guarded by lock_ (T2)
  // The heap's earliest deadline; written under lock_ whenever the top may
  // change, read without it as a hint (relaxed).
  std::atomic<std::int64_t> earliest_{INT64_MAX};
  bool have_pwait2_ = true;  // the thread only
};

// now_ns: CLOCK_MONOTONIC in nanoseconds (the epoch of std::chrono::steady_clock).
std::int64_t now_ns() noexcept;

}  // namespace weft::detail
