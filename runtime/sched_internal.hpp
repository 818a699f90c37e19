#pragma once
// sched_internal.hpp: what scheduler.cpp (machines, processors, finding work)
// and switch.cpp (readying fibers and switching between them) share.
//
// The helpers on the fast paths (a ready's wakeup check, and what a park,
// yield or exit does to pick and start the next fiber) are inline here, so
// that neither file reaches them through an out-of-line call into the other.
// The cold ones are declared here and defined out of line. The protocols
// they follow are described at the top of scheduler.cpp (spinning, K1-K4,
// W1) and switch.cpp (the park protocol, W2-W4).

#include <cstddef>
#include <cstdint>

#include "runtime/asym_fence.hpp"
#include "runtime/sanitizers.hpp"
#include "runtime/scheduler.hpp"

namespace weft::detail {

// How many times in a row a processor may run its `next` fiber before it
// takes one from its ring (pick_local), so a ping-pong pair cannot starve
// the rest of the queue.
inline constexpr std::uint32_t max_next_streak = 128;

// ---- cold, out of line ----

// scheduler.cpp
void startm(processor* p, bool spinning) noexcept;
fiber* global_get(processor* p, std::size_t max) noexcept;
void wakep_slow() noexcept;

// switch.cpp: a new fiber's first run takes a stack and makes its context.
void bind_stack(processor* p, fiber* f);

// ---- hot, inline ----

// wakep: K1. The caller has published work.
inline void wakep() noexcept {
  asym_light();
  if (g_sched->npidle.load(std::memory_order_relaxed) == 0) return;
  if (g_sched->nmspinning.load(std::memory_order_relaxed) != 0) return;
  wakep_slow();
}

inline fiber* pick_local(processor* p) noexcept {
  ++p->tick;
  if (p->tick % 61 == 0 || ((p->tick & 1) != 0 && g_sched->gq.urgent_hint())) {
    // Fairness: the global queue, which local respawning could otherwise
    // starve, and (at the next safe point) timers that are due. Within two
    // decisions, not at the 61st, when a timer's fiber waits at the
    // queue's front (the netpoller fired it): a backlog of 61 decisions of
    // network work is milliseconds, and that was the worst lateness of a
    // 1 ms ticker beside 1,000 busy hooked clients (perf/RESULTS.md). Only
    // every other decision, so that a stream of timer wakeups cannot
    // starve the local queue.
    p->check_timers = true;
    if (g_sched->gq.size_hint() != 0) {
      if (fiber* f = global_get(p, 1)) return f;
    }
  }
  if (p->next_streak < max_next_streak) {
    if (fiber* f = p->runq.take_next()) {
      ++p->next_streak;
      return f;
    }
  }
  p->next_streak = 0;
  if (fiber* f = p->runq.pop()) return f;
  return p->runq.take_next();
}

// fire_timers: every 61st scheduling decision a worker fires the timers
// that are due itself (timers.hpp), so they stay punctual when the poller
// thread gets no CPU. Only where the caller is between operations: in
// yield, in a finishing fiber and on g0, and (fire_timers_before_wait,
// switch.cpp) before a fiber waits on the netpoller. Not in park: the
// parking fiber holds the lock its park releases, and a fiber just resumed
// from park is still inside its channel, select or lock operation, whose
// objects a timer callback (an after() channel's send) may touch.
inline void fire_timers(processor* p) noexcept {
  if (!p->check_timers) return;
  p->check_timers = false;
  if (g_timers.earliest() != INT64_MAX) g_timers.fire_due(now_ns());
}

// prepare_run: f is about to be switched to on machine m (W3, switch.cpp).
inline void prepare_run(machine* m, processor* p, fiber* f) {
  m->curg = f;
  p->current.store(f, std::memory_order_relaxed);
  transition(f, fiber_state::runnable, fiber_state::running);
  if (f->ctx.fctx == nullptr) bind_stack(p, f);
  p->schedtick.store(p->schedtick.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// leave_for_g0: the running fiber is about to switch to its machine's g0.
inline void leave_for_g0(machine* m) noexcept {
#if WEFT_TSAN
  // In a child forked from a multi-threaded process TSan turns off race
  // checks and synchronisation for the forking thread's state only, which
  // here is the fiber's; after the switch g0's accesses would race with the
  // fiber's unsynchronised ones, and halt_on_error ends the child before
  // find_runnable prints the forked-child message. Print it here instead
  // ("Fork", runtime.cpp). Builds without TSan keep the check off this path.
  if (g_sched->ph.load(std::memory_order_relaxed) == phase::forked) forked_child_fatal();
#endif
  m->curg = nullptr;
  if (m->p != nullptr && !m->in_blocking) m->p->current.store(nullptr, std::memory_order_relaxed);
}

}  // namespace weft::detail
