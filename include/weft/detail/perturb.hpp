#pragma once
// detail/perturb.hpp: schedule perturbation, a testing mode (WEFT_PERTURB).
//
// Purpose
//   Concurrency bugs hide in windows a few instructions wide: between a
//   waker's unlock and its unpark, between a park's commit and the parked
//   fiber's next run, between a thief's look and its take. On an idle
//   machine those windows almost never open; on a loaded one they do. With
//   WEFT_PERTURB set, the runtime opens them on purpose, at random.
//
// Design
//   WEFT_PERTURB=<seed> (any number but 0 and 1) turns the mode on for the
//   process; WEFT_PERTURB=1 (or "random") draws a seed. The first run()
//   reads it and prints the seed on stderr, and so does every failed
//   WEFT_CHECK; replay with the same value. At each perturbation point
//   (perturb()) a thread draws from its own PRNG, seeded from the seed, the
//   run and the thread (worker threads by machine id), and does nothing,
//   spins, calls sched_yield, or sleeps for microseconds (rarely hundreds,
//   as a preempted thread would). Decision points (perturb_chance) make
//   random scheduling choices instead: a readied fiber goes to the back of
//   the queue or to the global queue instead of `next`, a fiber yields at a
//   preempt point or right after go(), a thief may take a victim's `next`
//   on any pass, an idle worker steals before looking at its own queue. The
//   OS still interleaves threads as it likes, so a replay makes a failure
//   likely, not certain.
//   Only delays of the calling thread and choices the runtime may make
//   anyway: a fiber is yielded only where a yield is already allowed (a
//   preempt point, go()), never while it holds a lock or inside park.
//   Rejected: compiling the points only into sanitizer builds (release
//   builds are where timing bugs show most; the stress run uses both).
//
// Cost when off: perturb() and perturb_on() are one relaxed load of a
//   global flag and a branch predicted not taken; everything else is out of
//   line. The fiber-level yield at preempt points costs nothing more: the
//   mode adds a bias to g_preempt_requests, so preempt_point() (park.hpp)
//   takes its existing slow path.

#include <atomic>
#include <cstdint>

namespace weft::detail {

// Where a perturbation happens; each site has its own delay profile.
enum class perturb_site : std::uint8_t {
  wake_gap,       // a waker between releasing a lock and unparking (or the reverse)
  park_commit,    // around a park's release function, on the next context
  park_resumed,   // a fiber just resumed from park
  op_entry,       // a plain thread entering a channel or sync operation
  select_locks,   // select between its passes and its lock and unlock steps
  steal,          // a thief inside the victim's queue, or choosing a victim
  idle,           // a worker giving up its processor (scheduler.cpp K3)
  poller_inject,  // fired timers or I/O readied, not yet injected
  blocking,       // entering or leaving weft::blocking
  timer_add,      // a deadline computed, its timer not yet queued
  unwind,         // run()'s thread between unwinding two fibers
};

// Set once, before the first run starts its threads, by perturb_init.
extern std::atomic<bool> g_perturb;

inline bool perturb_on() noexcept {
  return __builtin_expect(g_perturb.load(std::memory_order_relaxed), false);
}

void perturb_slow(perturb_site s) noexcept;

// perturb: a perturbation point.
inline void perturb(perturb_site s) noexcept {
  if (perturb_on()) perturb_slow(s);
}

// perturb_chance: true once in `one_in` draws of the calling thread's PRNG.
// Call only when perturb_on().
bool perturb_chance(unsigned one_in) noexcept;

// perturb_yield_point: perhaps yield the calling fiber (a point where
// yielding is allowed: go(), a preempt point). Never throws: a fiber being
// unwound meets its unwind at its next park, as with preemption.
void perturb_yield_point() noexcept;

// perturb_seed: the seed in effect (0 when the mode is off).
std::uint64_t perturb_seed() noexcept;

// perturb_init: read WEFT_PERTURB (first call per process only).
// perturb_run_begin / perturb_run_end: around each run (reseeds the
// threads' PRNGs per run; the preempt-point bias lives for the run).
void perturb_init() noexcept;
void perturb_run_begin() noexcept;
void perturb_run_end() noexcept;

}  // namespace weft::detail
