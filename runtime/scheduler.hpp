#pragma once
// scheduler.hpp: the runtime's shared scheduling state, for the files that
// implement the scheduler, its lifecycle and its diagnostics. Code built on
// the scheduler (channels, sync, timers, the netpoller) includes the narrow
// sched_ops.hpp instead. The protocols are described at the top of
// scheduler.cpp (spinning) and switch.cpp (parking). The accessor is
// g_sched (L1).

#include <atomic>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "runtime/deadlock.hpp"
#include "runtime/fiber.hpp"
#include "runtime/global_queue.hpp"
#include "runtime/locks.hpp"
#include "runtime/machine.hpp"
#include "runtime/processor.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/sysmon.hpp"
#include "runtime/timers.hpp"

namespace weft::detail {

enum class phase : std::uint32_t {
  running,   // fibers run
  stopping,  // main returned: no new fiber is started; running ones park at their next chance
  final,     // workers are gone; run()'s thread unwinds what is left
  forked,    // a copy in a forked child: nothing may run (runtime.cpp, "Fork")
};

struct scheduler {
  options opts;
  unsigned nprocs = 0;             // options::workers
  unsigned np_total = 0;           // nprocs + spares (sysmon lends spares to cover hogs)
  processor* ps = nullptr;         // [np_total], fixed for the run; spares at the end
  std::vector<unsigned> coprimes;  // strides for the random steal order over np_total
  // Processors not dormant: nprocs plus lent spares. Changed under mu,
  // read lock-free as a hint.
  std::atomic<int> nactive{0};

  // mu guards: pidle, midle/nmidle, machines, every p->idle_link, and the
  // idle <-> running transitions of processors. Lock order:
  // sched::mu < global_queue::mu < pools.
  os_mutex mu;
  processor* pidle WEFT_GUARDED_BY(mu) = nullptr;
  machine* midle WEFT_GUARDED_BY(mu) = nullptr;
  unsigned nmidle WEFT_GUARDED_BY(mu) = 0;
  std::vector<machine*> machines WEFT_GUARDED_BY(mu);
  // Worker threads allowed (Go's limit, 10,000 by default; env
  // WEFT_MAX_THREADS). Far more means fibers are piling up in blocking
  // calls, and the process is better stopped with a clear message than left
  // to exhaust the kernel. Fixed for the run.
  std::size_t max_threads = 10000;
  // npidle, nmspinning: changed under mu or by RMW (seq_cst: they are the
  // two sides of the Dekker handshake between submitters and idling
  // workers, see "Spinning" in scheduler.cpp); read lock-free by wakep().
  std::atomic<int> npidle{0};
  std::atomic<int> nmspinning{0};
  // Machines executing a fiber (not on g0). seq_cst: paired with phase for
  // the shutdown handshake.
  std::atomic<int> nm_running{0};

  global_queue gq;
  stack_pool stacks;
  fiber_pool fibers;
  std::atomic<phase> ph{phase::running};

  // Shutdown: the last machine to go idle in phase::stopping stores 1 and
  // wakes run()'s thread.
  std::atomic<std::uint32_t> all_idle{0};

  sysmon_state sysmon;

  // Counters of events outside any processor (foreign threads, the poller).
  std::atomic<std::uint64_t> shared_started{0};
  std::atomic<std::uint64_t> shared_readies{0};
  std::atomic<std::uint64_t> live_threads{0};  // runtime-created threads alive

  // The main fiber's outcome, written by the main fiber, read by run() after
  // all workers are joined.
  int main_result = 0;
  std::exception_ptr main_exception;

  // The deadlock detector's per-run state (deadlock.hpp).
  deadlock_state dl;

  // Plain threads inside ready() (U4, runtime.cpp): incremented before
  // they read the phase, decremented (release) when done; run() waits for
  // 0 after storing phase::final.
  std::atomic<int> foreign_readies{0};

  // phase::final only: fibers readied while unwinding, resumed by run()'s
  // thread. Guarded by final_mu (a foreign thread may ready one).
  os_mutex final_mu;
  fiber* final_first WEFT_GUARDED_BY(final_mu) = nullptr;
  fiber* final_last WEFT_GUARDED_BY(final_mu) = nullptr;
  // Readies in phase final that found the fiber finished: its waker read
  // a dead waiter (U1, runtime.cpp). Guarded by final_mu.
  std::uint64_t late_wakes WEFT_GUARDED_BY(final_mu) = 0;
};

// advance_phase: move the phase forward to `to`; a later phase stays (U5,
// runtime.cpp). seq_cst, as the plain stores it replaces: the phase pairs
// with nm_running and foreign_readies. Returns the phase it found.
inline phase advance_phase(scheduler& s, phase to) noexcept {
  phase cur = s.ph.load(std::memory_order_seq_cst);
  while (cur < to && !s.ph.compare_exchange_weak(cur, to, std::memory_order_seq_cst)) {
  }
  return cur;
}

// The running runtime, or null (runtime.cpp L1). Set before any runtime
// thread starts and cleared after all of them are joined. Runtime threads
// read it freely; every entry into weft from another thread holds a
// runtime_pin (debug_internal.hpp) for as long as it touches g_sched, or
// proves that no runtime exists. A plain pointer, not an atomic: the pin's
// seq_cst handshake orders each plain thread's reads between run()'s writes.
extern scheduler* g_sched;

// Machines (scheduler.cpp).
void start_first_machine(processor* p);
void wake_all_for_exit();
void join_machines();

// Used by sysmon (sysmon.cpp).
// handoff_p: give a processor taken from a stuck machine to another machine,
// or put it on the idle list if there is nothing for it to do.
void handoff_p(processor* p) noexcept;
// lend_spare: activate a spare processor and start a machine on it, so work
// queued behind a hog runs. Returns false when every spare is lent.
bool lend_spare() noexcept;
// wake_idle: start an idle processor if any (after moving work to the
// global queue).
void wake_idle() noexcept;
// retire_idle_spares: take lent spares that sit idle back out of service.
void retire_idle_spares() noexcept;
// flush_idle_stack_caches: move the cached stacks of processors on the idle
// list to the pool's warm list, where the scavenger can age them (a cache
// holds up to 64 stacks: 8 idle processors would keep 512 resident). The
// caches of idle processors are guarded by mu, like the idle list.
void flush_idle_stack_caches() noexcept;
// drop_preempt: withdraw sysmon's preemption request on p, if any (its
// fiber is gone: p went idle, into a blocking call, or the run ended).
void drop_preempt(processor* p) noexcept;

// blocking(): enter_blocking and exit_blocking are declared in
// weft/blocking.hpp (blocking_entry says how the call runs).
// Offloaded calls submitted and not yet readied (blocking_pool.cpp;
// relaxed: a hint for enter_blocking, the exact count is in nm_running).
extern std::atomic<int> g_offload_in_flight;
// The pool that runs offloaded blocking() calls (blocking_pool.cpp): its
// threads' ids (runtime threads, never deadlock parties), how many it has
// started (they count against max_threads), and stopping it at the end of
// a run, once no call is in flight.
void blocking_pool_tids(std::vector<long>& out);
std::size_t blocking_pool_threads() noexcept;
void blocking_pool_stop() noexcept;
// running_done_offload: an offloaded call's fiber was readied: uncount it
// from nm_running, and at shutdown signal run() if that was the last.
void running_done_offload() noexcept;

// Fiber entry point for make_context.
void fiber_entry(bctx::transfer_t t) noexcept;

[[noreturn]] void report_overflow(const fiber* f) noexcept;
// check_stack: abort with the overflow report if the running fiber's
// canary-protected stack overflowed.
inline void check_stack(fiber* f, const void* sp) noexcept {
  if (f->stack != nullptr && !f->stack->guarded && !stack_pool::canary_intact(*f->stack, sp)) {
    report_overflow(f);
  }
}
// Overflow reporting (overflow.cpp): the SIGSEGV/SIGBUS handler, installed
// once per process, and each runtime thread's alternate signal stack.
void install_overflow_handler() noexcept;
void altstack_install() noexcept;
void altstack_remove() noexcept;

// Shared helpers (switch.cpp).
std::uint64_t next_fiber_id(processor* p) noexcept;
// g_coarse_ns: a clock for "how long has this fiber waited", refreshed by
// sysmon at every tick and by coarse_now_ns() (relaxed: a hint). Parking
// reads it instead of the clock (a clock read is ~5 ns of a ~60 ns channel
// round trip); while any processor runs, sysmon ticks at least every
// hog_handoff / 2, which bounds how stale it can be.
extern std::atomic<std::int64_t> g_coarse_ns;
std::int64_t coarse_now_ns() noexcept;  // reads the clock and refreshes g_coarse_ns

}  // namespace weft::detail
