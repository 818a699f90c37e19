#pragma once
// scheduler.hpp: the runtime's shared scheduling state and the operations
// the rest of the runtime builds on (ready, park, yield, exit, wakeups).
// The protocols are described at the top of scheduler.cpp (spinning) and
// switch.cpp (parking).

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "netpoll/poller.hpp"
#include "runtime/fiber.hpp"
#include "runtime/global_queue.hpp"
#include "runtime/machine.hpp"
#include "runtime/processor.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/sysmon.hpp"

namespace weft::detail {

enum class phase : std::uint32_t {
  running,   // fibers run
  stopping,  // main returned: no new fiber is started; running ones park at their next chance
  final,     // workers are gone; run()'s thread unwinds what is left
};

// fiber_unwind: thrown out of park()/yield() into a fiber being unwound at
// shutdown. User code must let it pass (a `catch (...)` must rethrow).
struct fiber_unwind {};

// ready_batch: fibers readied by a thread that holds no processor (the
// poller firing timers, for instance), injected into the global queue in one
// go by the thread that installed the batch.
struct ready_batch {
  static constexpr std::size_t capacity = 256;
  fiber* fibers[capacity];
  std::size_t n = 0;
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
  std::mutex mu;
  processor* pidle = nullptr;
  machine* midle = nullptr;
  unsigned nmidle = 0;
  std::vector<machine*> machines;
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
  poller poll;
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

  // Diagnostics (deadlock.cpp, debug.cpp).
  long run_caller_tid = 0;          // the thread in run(); never a party
  std::vector<long> baseline_tids;  // threads alive when the runtime started (sorted)
  std::mutex party_mu;
  std::vector<long> party_tids;  // threads that called into weft; guarded by party_mu
  std::uint64_t run_epoch = 0;   // distinguishes runs for the per-thread party flag
  // Deadlock confirmation state, sysmon only.
  std::uint64_t dl_signature = 0;
  std::int64_t dl_since = 0;
  // Set by sysmon before it wakes run() (release on all_idle); read by run().
  bool deadlocked = false;
  std::string deadlock_message;
  std::int64_t started_ns = 0;     // when run() started, for schedtrace
  std::int64_t schedtrace_ns = 0;  // WEFT_SCHEDTRACE interval, 0 = off

  // phase::final only: fibers readied while unwinding, resumed by run()'s
  // thread. Guarded by final_mu (a foreign thread may ready one).
  std::mutex final_mu;
  fiber* final_first = nullptr;
  fiber* final_last = nullptr;
};

// The running runtime, or null. Set before any runtime thread starts and
// cleared after all of them are joined; foreign threads read it only inside
// the foreign_entry guard (runtime.cpp).
extern scheduler* g_sched;

// ---- operations (switch.cpp, scheduler.cpp) ----

// ready: make a parked (or new) fiber runnable. From a fiber holding a
// processor it goes to that processor's `next` slot; otherwise to the
// current ready_batch if one is installed, else the global queue.
void ready(fiber* f) noexcept;
// ready_spawned: queue a new fiber (go): like ready, always wakes a worker.
void ready_spawned(fiber* f) noexcept;

// park_current: park the running fiber; `release` runs once its context is
// saved. Throws fiber_unwind at shutdown.
void park_current(switch_action release, wait_reason why, const void* obj, std::int64_t note = 0);
void yield_current();
[[noreturn]] void exit_current() noexcept;

// inject: put a chain of runnable fibers on the global queue and start up
// to that many idle processors.
void inject(fiber* const* fs, std::size_t n) noexcept;
void set_ready_batch(ready_batch* b) noexcept;

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

// blocking(): enter returns false when the caller is not a fiber holding a
// processor (then blocking() just calls f).
bool enter_blocking() noexcept;
void exit_blocking() noexcept;

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

// closure_alloc / closure_free: heap storage for closures too big for the
// record (alloc.cpp). Freed by whichever worker ran the fiber.
void* closure_alloc(std::size_t size, std::size_t align);
void closure_free(void* p) noexcept;

// Shared helpers (switch.cpp).
fiber* current_fiber() noexcept;  // null outside a fiber
std::uint64_t next_fiber_id(processor* p) noexcept;
// g_coarse_ns: a clock for "how long has this fiber waited", refreshed by
// sysmon at every tick and by coarse_now_ns() (relaxed: a hint). Parking
// reads it instead of the clock (a clock read is ~5 ns of a ~60 ns channel
// round trip); while any processor runs, sysmon ticks at least every
// hog_handoff / 2, which bounds how stale it can be.
extern std::atomic<std::int64_t> g_coarse_ns;
std::int64_t coarse_now_ns() noexcept;  // reads the clock and refreshes g_coarse_ns

}  // namespace weft::detail
