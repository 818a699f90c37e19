#pragma once
// detail/introspect.hpp: hooks for weft's own tests. Not public API, and not
// installed (cmake/install-rules.cmake).

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace weft::detail {

struct teardown_report {
  std::uint64_t fiber_records_live;  // records neither free nor cached: leaked fibers
  std::uint64_t stacks_out;          // stacks not returned to the pool
  std::uint64_t timers_pending;      // timers still queued after unwinding (leaked sleeps)
  std::uint64_t timers_disposed;     // runtime-owned timers (after, ticker) dropped at shutdown
  std::uint64_t threads_alive;       // runtime threads not joined
  std::uint64_t fibers_unwound;      // fibers unwound or dropped at shutdown
  std::uint64_t late_wakes;          // wakes at shutdown of fibers already finished (0: U1)
};

// last_teardown: what the last run() found when it tore the runtime down.
teardown_report last_teardown() noexcept;

// worker_tid: the OS thread id the runtime believes the calling fiber runs
// on (its machine's), or 0 outside a worker. Read through the same opaque
// accessor the runtime uses, so a test can check it after migrations.
long worker_tid() noexcept;

// holds_own_processor: true if the calling fiber's worker holds a processor
// whose holder fields (machine, OS thread id, running fiber) name this
// worker and this fiber. False outside a worker or inside weft::blocking.
bool holds_own_processor() noexcept;

// set_scavenge_tick: the memory scavenger's tick (default 1 s; 0 restores
// it). Free stacks unused for a few ticks get their pages released. Takes
// effect from the scavenger's next tick.
void set_scavenge_tick(std::chrono::milliseconds tick) noexcept;

// memory_report: the stack and fiber record pools right now (0 outside a
// run).
struct memory_report {
  std::uint64_t stacks_out;         // bound to fibers, or in processors' caches
  std::uint64_t stacks_warm_free;   // free, pages possibly resident
  std::uint64_t stacks_cold_free;   // free, pages given back (or never touched)
  std::uint64_t records_cold_free;  // free fiber records the scavenger took
};
memory_report memory() noexcept;

// runtime_threads_entered: true when every OS thread the runtime has
// started (workers, netpoller, sysmon, blocking() pool) has begun running
// its own code (runtime/os_thread.hpp O1). A test that is about to use up
// the process's descriptors waits for this first.
bool runtime_threads_entered() noexcept;

// idle_processors: processors on the idle list (0 outside a run). A
// processor counted here has finished putting itself there (acquire).
unsigned idle_processors() noexcept;

// set_batch_join_hook: `hook` runs inside after() whenever it is about to
// join a batch of timers, between reading the batch's member stack and the
// CAS that adds the new channel (runtime/timer_chan.cpp), on the calling
// thread; it must not park or switch fibers. nullptr removes it.
void set_batch_join_hook(void (*hook)()) noexcept;

// timers_live: timers in the running runtime's heap that can still reach
// someone (sleeps, timed waits, deadlines, tickers, after()s whose channel
// has a handle); a thread's open batch of after()s whose channels are all
// gone does not count. 0 with no runtime running.
std::size_t timers_live() noexcept;

// blocking_calls_offloaded: weft::blocking() calls that ran on a pool
// thread while their fiber parked, in this run (runtime/blocking_pool.cpp).
std::uint64_t blocking_calls_offloaded() noexcept;

// set_offload_done_hook: `hook` runs on the pool thread of every offloaded
// blocking() call after it has readied the call's fiber and before the
// call stops counting as running (runtime/blocking_pool.cpp), where a
// deadlock check can see the call still in flight. nullptr removes it. It
// may read the functions here but must not park, send or lock. Set it only
// while no call is offloaded.
void set_offload_done_hook(void (*hook)()) noexcept;

// set_party_check_hook: `hook` runs on the monitor's thread each time the
// deadlock check, having found every fiber parked and no progress for its
// confirmation time, is about to look for live plain threads
// (runtime/deadlock.cpp D4). nullptr removes it. It must not call into
// weft. Set it only while no runtime runs.
void set_party_check_hook(void (*hook)()) noexcept;

// set_poller_cycle_hook: `hook` runs on the netpoller thread at the top
// of each of its cycles, before it fires the timers that are due
// (netpoll/poller.cpp). It may block that thread, standing for a netpoller
// that gets no CPU, but must release it before run() returns, and must not
// call into weft. nullptr removes it.
void set_poller_cycle_hook(void (*hook)()) noexcept;

// sysmon_sleeps_untimed: the running runtime's monitor sleeps (or is
// about to) with no timed end: every processor was idle and nothing needed
// timing, so it wakes only when poked. False with no runtime running.
bool sysmon_sleeps_untimed() noexcept;

// hogs_reported: hog warnings the running runtime's monitor has printed
// or counted for its end-of-run summary (runtime/sysmon.cpp). 0 with no
// runtime running.
std::uint64_t hogs_reported() noexcept;

// fibers_parked_now: fibers whose record says parked, counted record by
// record (stats().fibers_parked is derived from counters and can count a
// fiber in flight between queues as parked). A fiber counted here has
// started and reached a wait. 0 with no runtime running.
std::uint64_t fibers_parked_now() noexcept;

}  // namespace weft::detail
