#pragma once
// timers.hpp: the runtime's timer service and clock. One heap of timers
// (timer_heap.hpp), its lock (the "timers lock"), and the operations every
// timed wait uses: sleep (time.cpp), condition_variable timeouts (sync.cpp),
// after/ticker and with them select timeouts (timer_chan.cpp), context
// deadlines (context_tree.cpp) and net deadlines (netpoll.cpp).
//
// Design
//   One heap, guarded by one spinlock, is fired by whoever reaches it: the
//   netpoller thread sleeps until the earliest deadline and fires what is
//   due (poller.cpp), and workers fire due timers themselves at
//   scheduling points (every 61st decision, with the global-queue check;
//   fire_due), so a starved netpoller thread (every core busy) does not make
//   timers late: whoever gets the lock first fires them.
//   A fiber that waits for a timer queues it under the lock and parks with
//   the lock as its release (park protocol, park_until), so the timer cannot
//   fire before the fiber is parked. Timer callbacks run under the lock, so
//   cancelling under the lock is final: after it, the callback has either
//   run or never will.
//   Adding a timer earlier than the deadline the netpoller sleeps to wakes
//   it (netpoll_wake, runtime/netpoll_contract.hpp).
//   The service is one object per process; a run empties it when it ends
//   (clear) and begins with it empty (begin_run).
//   Rejected for now: per-processor heaps (Go 1.14+). One heap serviced by
//   one thread is simpler and cannot strand timers on a busy processor;
//   measure under a timeout-heavy select load before changing.
//
// Invariants
//   T1  A timer is in the heap iff index != npos; both change under lock_.
//   T2  sleep_until_ is written under lock_ and is never later than the
//       deadline the netpoller thread actually sleeps to.
//   T3  A fiber that a timer fired on the netpoller thread readied sits in
//       that thread's batch, in no queue, until the batch is injected; it is
//       counted in undelivered_ from the release of lock_ after the firing
//       until the injection is done, so pending() (under lock_) sees it as
//       either a timer or an undelivered wakeup, never as nothing. (The
//       deadlock detector reads live(): a netpoller descheduled between the
//       firing and the injection would otherwise leave every fiber parked,
//       the heap empty and the counters still.)
//
// Lock order: condition_variable::lk_ (sync.cpp), a descriptor's direction
// lock and poll_cold::lk (netpoll.cpp, poll_desc.cpp) < timers lock < what
// the callbacks take: a context node's lock (context_tree.cpp), channel
// locks (timer_chan.cpp), global_queue::mu (they ready fibers).

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/timer_heap.hpp"
#include "weft/detail/park.hpp"
#include "weft/detail/spinlock.hpp"

namespace weft::detail {

// now_ns: CLOCK_MONOTONIC in nanoseconds (the epoch of std::chrono::steady_clock).
std::int64_t now_ns() noexcept;

class timer_service {
 public:
  // locked: holds the timers lock for its lifetime, for a timer change that
  // must be atomic with other state (a record's closing flag, N6; a context
  // node's run epoch, X4).
  class WEFT_SCOPED_CAPABILITY locked {
   public:
    explicit locked(timer_service& s) noexcept WEFT_ACQUIRE(s.lock_) : s_(s) { s_.lock_.lock(); }
    ~locked() WEFT_RELEASE() { s_.lock_.unlock(); }
    locked(const locked&) = delete;
    locked& operator=(const locked&) = delete;
    // add, cancel: the lock is held by construction; the analysis cannot
    // see that through s_ (thread_safety.hpp), so s_.lock_ is asserted.
    void add(timer* t) {
      s_.lock_.assert_held();
      s_.add_locked(t);
    }
    // cancel: false when the timer already fired (or was never added).
    bool cancel(timer* t) noexcept {
      s_.lock_.assert_held();
      return s_.cancel_locked(t);
    }

   private:
    timer_service& s_;
  };

  // add / cancel: each takes the lock once. (Re-arming a queued timer is
  // a cancel and an add under one `locked`, as netpoll.cpp's arm does.)
  void add(timer* t) {
    locked l(*this);
    add_locked(t);
  }
  bool cancel(timer* t) noexcept {
    locked l(*this);
    return cancel_locked(t);
  }

  // park_until: queue t (its `when`, `fire` and `arg` set; its fire
  // unparks w) and park the calling fiber on w until t fires or someone
  // else unparks w. The timers lock is held from the add until the fiber is
  // parked, then released, then `also` (a lock the caller took before,
  // lock order above) if given. Returns with t queued still if someone else
  // woke w: the caller cancels it. If it throws (no memory for the heap,
  // or the fiber is unwound at shutdown), t is not queued and neither lock
  // is held.
  void park_until(waiter& w, timer* t, wait_reason why, const void* obj) {
    park_until_impl(w, t, why, obj, nullptr);
  }
  // The caller holds `also`, and does not once this returns or throws (not
  // analysed: the release happens on the next context, thread_safety.hpp).
  void park_until(waiter& w, timer* t, wait_reason why, const void* obj, spinlock& also)
      WEFT_RELEASE(also) WEFT_NO_THREAD_SAFETY_ANALYSIS {
    park_until_impl(w, t, why, obj, &also);
  }

  // earliest: the next deadline, a lock-free hint (relaxed).
  std::int64_t earliest() const noexcept { return earliest_.load(std::memory_order_relaxed); }
  // fire_due: fire the timers due at `now` on the calling thread (a worker
  // at a scheduling point, Go's checkTimers), unless another thread holds
  // the timers lock.
  void fire_due(std::int64_t now) noexcept {
    if (earliest() > now || !lock_.try_lock()) return;
    fire_due_locked(now);
    lock_.unlock();
  }

  // The netpoller thread's side (T2, T3). fire_for_sleep: fire what is due
  // at `now` and return the next deadline, which the caller sleeps to at
  // the latest; `*batch_n` (the caller's ready_batch count, filled by the
  // callbacks) is read under the lock afterwards and counted undelivered.
  // delivered: the caller injected its batch.
  std::int64_t fire_for_sleep(std::int64_t now, const std::size_t* batch_n) noexcept;
  void delivered() noexcept;

  // pending: timers queued, plus wakeups fired and not yet delivered to a
  // run queue (T3). live: queued timers that can still reach someone (not
  // timer_idle), counted up to `limit`, plus, if asked, those undelivered
  // wakeups.
  std::size_t pending() noexcept;
  std::size_t live(std::size_t limit, bool with_undelivered) noexcept;

  // begin_run / clear: a run starts with the service empty; at its end,
  // clear disposes of the runtime-owned timers still queued (returns how
  // many) and drops the others.
  void begin_run() noexcept;
  std::size_t clear() noexcept;

 private:
  void park_until_impl(waiter& w, timer* t, wait_reason why, const void* obj, spinlock* also);
  void add_locked(timer* t) WEFT_REQUIRES(lock_);
  bool cancel_locked(timer* t) noexcept WEFT_REQUIRES(lock_);
  // fire_due_locked: returns the next deadline.
  std::int64_t fire_due_locked(std::int64_t now) noexcept WEFT_REQUIRES(lock_);

  spinlock lock_;
  timer_heap heap_ WEFT_GUARDED_BY(lock_);                       // T1
  std::int64_t sleep_until_ WEFT_GUARDED_BY(lock_) = INT64_MAX;  // T2
  std::size_t undelivered_ WEFT_GUARDED_BY(lock_) = 0;           // T3
  // The heap's earliest deadline; written under lock_ whenever the top may
  // change, read without it as a hint (relaxed).
  std::atomic<std::int64_t> earliest_{INT64_MAX};
};

// The service. Touched only while a runtime exists and the caller is one
// of its threads or holds a runtime_pin (runtime.cpp L1), except by run()
// itself (begin_run, clear).
extern timer_service g_timers;

// timer_idle: t is a batch of after()s none of whose channels is left
// (timer_chan.cpp): firing it would reach nobody. Caller holds the timers
// lock.
bool timer_idle(const timer* t) noexcept;

}  // namespace weft::detail
