#pragma once
// sched_ops.hpp: what the code built on the scheduler (channels, select,
// sync, timers, the netpoller) needs from it: readying, injecting and
// parking fibers, and where the caller runs. The scheduler's state and the
// operations its own files share are scheduler.hpp's.

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/context.hpp"
#include "weft/detail/park.hpp"

namespace weft::detail {

struct fiber;

// Forked children (runtime.cpp, "Fork"). g_forked: this process was forked
// while a runtime existed (set once, by the child's atfork handler, before
// the child runs anything else). throw_forked_child: std::logic_error
// naming `api`. forked_child_fatal: the same message, then abort (a fiber
// in the child that needs the scheduler).
extern std::atomic<bool> g_forked;
inline bool forked_child() noexcept { return g_forked.load(std::memory_order_relaxed); }
[[noreturn]] void throw_forked_child(const char* api);
[[noreturn]] void forked_child_fatal() noexcept;

// fiber_unwind: thrown out of park()/yield() into a fiber being unwound at
// shutdown. User code must let it pass (a `catch (...)` must rethrow).
struct fiber_unwind {};

// ready_batch: fibers readied by a thread that holds no processor (the
// netpoller thread firing timers, for instance), injected into the global
// queue in one go by the thread that installed the batch.
struct ready_batch {
  static constexpr std::size_t capacity = 256;
  fiber* fibers[capacity];
  std::size_t n = 0;
};

// ---- operations (switch.cpp, scheduler.cpp) ----

// ready: make a parked fiber runnable. From a fiber holding a processor it
// goes to that processor's `next` slot; otherwise to the current
// ready_batch if one is installed, else the global queue.
void ready(fiber* f) noexcept;
// ready_spawned: queue a new fiber (go): like ready, from state free; same wakeups.
// In phase final it queues nothing: the unwinder drops the fiber (U3,
// runtime.cpp).
void ready_spawned(fiber* f) noexcept;

// park_current: park the running fiber; `release` runs once its context is
// saved. Throws fiber_unwind at shutdown.
void park_current(switch_action release, wait_reason why, const void* obj, std::int64_t note = 0);
void yield_current();
// yield_behind_global: yield, and queue the caller at the global queue's
// tail rather than on its own ring, behind what it queued there (a
// spawner over the spawn backlog, runtime.cpp).
void yield_behind_global();
// fire_timers_before_wait: the running fiber is about to wait on the
// netpoller and holds no lock a timer callback takes (a descriptor's
// direction lock is below the timers lock, timers.hpp): fire the timers
// that are due, if any. A network-bound worker parks its fibers and never
// yields, so without this only the netpoller thread fired its timers, and
// that thread waits for a CPU like any other on a saturated machine.
// Costs a relaxed load, and a clock read while a timer is queued.
void fire_timers_before_wait() noexcept;
[[noreturn]] void exit_current() noexcept;

// inject: put a chain of runnable fibers on the global queue and start up
// to that many idle processors. `front`: ahead of the fibers queued there
// (the netpoller's timer wakeups: Go readies a timer's goroutine into
// runnext).
void inject(fiber* const* fs, std::size_t n, bool front = false) noexcept;
void set_ready_batch(ready_batch* b) noexcept;

// deadlock_recheck: something that ruled out a deadlock while every
// processor was idle may have ended without a processor starting work
// (the netpoller's firing round: an after() fired into its buffer, a
// batch delivered). Wakes sysmon if it sleeps untimed, so it judges again
// (deadlock.cpp D3). Otherwise a fence and a relaxed load. Only during a run.
void deadlock_recheck() noexcept;

// current_fiber: the running fiber, null outside a fiber.
fiber* current_fiber() noexcept;
// current_processor_index: the index of the processor the calling fiber
// runs on (< scheduler::np_total). Only on a fiber holding a processor.
unsigned current_processor_index() noexcept;
// in_final_phase: the run has reached phase::final (its fibers are being
// unwound by run()'s thread; relaxed: a runtime thread's own view).
bool in_final_phase() noexcept;
// all_processors_idle: every worker processor is on the idle list (a
// seq_cst load of scheduler::npidle, for the caller's Dekker pairs with it;
// netpoll.cpp "Who polls").
bool all_processors_idle() noexcept;

// closure_alloc / closure_free: heap storage for closures too big for the
// record (alloc.cpp). Freed by whichever worker ran the fiber.
void* closure_alloc(std::size_t size, std::size_t align);
void closure_free(void* p) noexcept;

}  // namespace weft::detail
