#pragma once
// detail/park.hpp: the blocking primitive under every channel, select and
// sync object. A blocked party is a fiber (it parks and its worker runs
// other fibers) or a plain OS thread (it sleeps on a futex); the code that
// blocks and the code that wakes it do not need to know which.
//
// Protocol (Go's gopark with an unlock function):
//   1. the blocking party takes the object's lock, publishes a `waiter` in
//      the object's queue and calls park(w, release, arg, ...);
//   2. park saves the fiber's context and only then calls release(arg) on
//      the next context, so no waker can find the waiter and resume a fiber
//      that is still running;
//   3. a waker takes the object's lock, dequeues the waiter and calls
//      unpark(w) exactly once (select's "done" word decides who).
// park may throw (the runtime is shutting down and unwinds the fiber): the
// caller then owns no lock and must remove its waiter from the object under
// the object's lock before the exception leaves its frame.
// A release function may run after a waker has already resumed the parked
// party elsewhere: once it has released the first lock that a waker could
// take, it must not read the parked party's memory (its stack) again.

#include <atomic>
#include <cstdint>

#include "weft/detail/spinlock.hpp"

namespace weft::detail {

struct fiber;

// wait_reason: what a parked fiber waits for, for dumps and diagnostics.
enum class wait_reason : std::uint8_t {
  none,
  chan_send,       // obj: the channel
  chan_recv,       // obj: the channel
  select,          // obj: the select; note: number of cases
  select_forever,  // select with no cases (or only nil channels)
  mutex,           // obj: the mutex
  cond,            // obj: the condition_variable; note: deadline ns or 0
  wait_group,      // obj: the wait_group
  sleep,           // note: deadline (steady_clock ns)
  netpoll_read,    // note: the descriptor
  netpoll_write,   // note: the descriptor
  netpoll_accept,  // note: the descriptor
  blocking_call,   // not parked: running inside weft::blocking (for dumps)
};

// waiter: one blocked party. Lives on the blocked party's stack for the
// whole wait.
struct waiter {
  // The parked fiber, or null for an OS thread (or a fiber inside
  // weft::blocking, which blocks its thread like any OS thread). Written by
  // prepare() before the waiter is published; read by unpark() under the
  // object's lock.
  fiber* fiber_ = nullptr;
  // Futex word for an OS-thread waiter: 0 waiting, 1 woken. Stored with
  // release by unpark(), loaded with acquire by park().
  std::atomic<std::uint32_t> woken_{0};

  // prepare: bind this waiter to the calling party. Call before publishing.
  void prepare() noexcept;
};

// park: block the calling party (see the protocol above). `release(arg)`
// runs exactly once: after the fiber's context is saved, or for an OS
// thread before it sleeps. `why`, `obj` and `note` describe the wait for
// dumps and the deadlock detector (see wait_reason).
void park(waiter& w, void (*release)(void*), void* arg, wait_reason why, const void* obj,
          std::int64_t note = 0);

inline void park(waiter& w, spinlock& lk, wait_reason why, const void* obj, std::int64_t note = 0) {
  park(
      w, [](void* l) { static_cast<spinlock*>(l)->unlock(); }, &lk, why, obj, note);
}

// unpark: make a party blocked in park() runnable again. Call exactly once
// per park, from any thread or fiber.
void unpark(waiter& w) noexcept;

// preempt_point: cooperative preemption, at the entry of operations that
// may park anyway (channel operations, select, mutex::lock). When sysmon
// has flagged the calling fiber's processor as hogged (it ran half of
// options::hog_handoff without parking or yielding), the fiber yields here,
// so a loop that keeps sending into a buffer or receiving from a busy
// channel shares its worker like any other (Go preempts it with a signal).
// One relaxed load of a global when nothing is flagged.
extern std::atomic<std::uint32_t> g_preempt_requests;
void preempt_slow() noexcept;
inline void preempt_point() noexcept {
  if (g_preempt_requests.load(std::memory_order_relaxed) != 0) preempt_slow();
}

}  // namespace weft::detail
