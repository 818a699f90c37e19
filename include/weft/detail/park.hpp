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

#include "weft/detail/check.hpp"
#include "weft/detail/cxx20.hpp"
#include "weft/detail/spinlock.hpp"

namespace weft::detail {

struct fiber;

// wait_reason: what a parked fiber waits for, for dumps and diagnostics.
// Keep in step: reason_name() and describe() in runtime/debug.cpp (a case
// per enumerator) and REASON_TEXT in tools/weft-gdb.py (the display text by
// enumerator name; the script reads the values from debug information, so
// the order is free, and the gdb_extension test fails when a name is missing).
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
  // Checks only (WEFT_DEBUG_CHECKS): the lock a fiber parked under, set by
  // park(w, spinlock&, ...); unpark() checks chan_core.hpp C5 against it.
  const spinlock* lock_ = nullptr;

  // prepare: bind this waiter to the calling party. Call before publishing.
  void prepare() noexcept;
};

// park: block the calling party (see the protocol above). `release(arg)`
// runs exactly once: after the fiber's context is saved, or for an OS
// thread before it sleeps. `why`, `obj` and `note` describe the wait for
// dumps and the deadlock detector (see wait_reason).
void park(waiter& w, void (*release)(void*), void* arg, wait_reason why, const void* obj,
          std::int64_t note = 0);

// park(w, lk, ...): the common form, with a spinlock as the release. The
// caller holds lk and no longer does once this returns or throws; the
// unlock happens on the next context, which the thread-safety analysis
// cannot follow (thread_safety.hpp), hence no analysis of this body.
inline void unlock_spinlock(void* l) noexcept WEFT_NO_THREAD_SAFETY_ANALYSIS {
  static_cast<spinlock*>(l)->unlock();
}
inline void park(waiter& w, spinlock& lk, wait_reason why, const void* obj, std::int64_t note = 0)
    WEFT_RELEASE(lk) WEFT_NO_THREAD_SAFETY_ANALYSIS {
#if WEFT_DEBUG_CHECKS
  w.lock_ = &lk;
#endif
  park(w, unlock_spinlock, &lk, why, obj, note);
}

// unpark: make a party blocked in park() runnable again. Call exactly once
// per park, from any thread or fiber.
void unpark(waiter& w) noexcept;

// on_runtime_thread: true on a thread the runtime runs fibers on (chan.cpp).
// Decides when a waker unparks relative to releasing its lock
// (chan_core.hpp C5).
bool on_runtime_thread() noexcept;

// Entry checks. A plain thread (one the runtime did not start) that calls
// into weft is a possible party to a deadlock from then on (runtime/
// deadlock.cpp), even when its call neither blocks nor wakes anyone (a
// buffered send, a close, a ready select), so every entry point checks for
// one; on a fiber the check must cost next to nothing. The thread-local
// flag weft_tls_plain_thread (runtime/switch.cpp) is 1 on every thread but
// the runtime's machines. Its value is the same on every thread a fiber can
// run on, so where the compiler places the read does not matter; what must
// not happen is a read through an address computed on another thread (a
// thread_local read inlined into the caller may keep its address across a
// switch, and that thread may have exited since). The checks below read it
// %fs-relative in an asm statement, which computes no such address.
// note_foreign_call (runtime/deadlock.cpp) registers the caller; repeated
// calls in one run cost a thread-local comparison.
void note_foreign_call() noexcept;
bool plain_thread() noexcept;  // the flag, through a call

#if defined(__x86_64__) && !defined(__ILP32__) && (defined(__GNUC__) || defined(__clang__))
#define WEFT_TLS_ASM 1
// plain_flag_offset: the flag's offset from the thread pointer, the same on
// every thread, so the compiler may keep it anywhere (a pure asm).
inline std::uintptr_t plain_flag_offset() noexcept {
  std::uintptr_t off;
  asm("movq weft_tls_plain_thread@gottpoff(%%rip), %0" : "=r"(off));
  return off;
}
#endif

// on_plain_thread: the flag (one compare on x86-64).
inline bool on_plain_thread() noexcept {
#ifdef WEFT_TLS_ASM
  bool plain;
  asm volatile("cmpl $0, %%fs:(%[off])" : "=@ccnz"(plain) : [off] "r"(plain_flag_offset()));
  return plain;
#else
  return plain_thread();
#endif
}

// note_entry: the entry check of an operation that is not a preemption
// point.
inline void note_entry() noexcept {
  if (on_plain_thread()) note_foreign_call();
}

// preempt_point: cooperative preemption, at the entry of operations that
// may park anyway (channel operations, select, mutex::lock), and their
// entry check. When sysmon has flagged the calling fiber's processor as
// hogged (it ran half of options::hog_handoff without parking or
// yielding), the fiber yields here, so a loop that keeps sending into a
// buffer or receiving from a busy channel shares its worker like any other
// (Go preempts it with a signal). A plain thread takes preempt_slow every
// time, to register. One relaxed load of a global OR'd with the
// thread-local flag when nothing is flagged.
extern std::atomic<std::uint32_t> g_preempt_requests;
void preempt_slow() noexcept;
inline void preempt_point() noexcept {
  std::uint32_t v = g_preempt_requests.load(std::memory_order_relaxed);
#ifdef WEFT_TLS_ASM
  bool flagged;
  asm volatile("orl %%fs:(%[off]), %[v]"
               : "=@ccnz"(flagged), [v] "+r"(v)
               : [off] "r"(plain_flag_offset()));
  if (flagged) preempt_slow();
#else
  if (v != 0 || plain_thread()) preempt_slow();
#endif
}

}  // namespace weft::detail
