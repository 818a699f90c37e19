#pragma once
// processor.hpp: a processor (Go's P): the right to run fibers.
//
// The processor, not the thread, owns the run queue and the caches, so the
// monitor thread can move a stuck thread's queued work to another thread by
// moving its processor (sysmon.cpp).
//
// Invariants
//   P1  At most one machine holds a processor (m != null) and only that
//       machine touches its caches, its id batch and its owner-only fields;
//       the hand-over goes through sched::mu_ or a CAS on status, which
//       carries the happens-before edge.
//   P2  status == idle iff the processor is on the idle list.

#include <atomic>
#include <cstdint>

#include "runtime/fiber_pool.hpp"
#include "runtime/run_queue.hpp"
#include "runtime/stack_pool.hpp"

namespace weft::detail {

struct machine;

enum class p_status : std::uint32_t {
  idle,     // on the idle list (P2)
  running,  // held by a machine running fibers or scheduler code
  syscall,  // held by a machine inside weft::blocking(); sysmon may retake it
  dead,     // not in use: a spare not lent out, or the runtime stopped
};

inline constexpr std::uint32_t local_queue_size = 256;

// Per-processor counters: written only by the holder (relaxed load + store,
// no read-modify-write), read by stats() from any thread.
struct p_counter {
  std::atomic<std::uint64_t> v{0};
  void inc(std::uint64_t n = 1) noexcept {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

struct processor {
  std::uint32_t index = 0;
  // A spare (index >= options::workers) is lent by sysmon while a fiber
  // hogs another processor, and retires when it next runs out of work
  // (sysmon.cpp, "Hogs"). Fixed for the run.
  bool spare = false;
  run_queue<local_queue_size> runq;
  // Lifecycle: changed under sched::mu_ (idle <-> running) or by CAS
  // (running <-> syscall by the holder, syscall -> idle by sysmon).
  std::atomic<p_status> status{p_status::dead};
  machine* m = nullptr;  // holder; written with status under the same protection
  // The holder's OS thread id, for sysmon's CPU-time check on a suspected
  // hog (sysmon.cpp). Written by acquire_p (relaxed); read by sysmon as a
  // hint: a stale id only makes sysmon treat a suspect as a hog.
  std::atomic<long> m_tid{0};
  processor* idle_link = nullptr;  // guarded by sched::mu_

  // Owner-only (P1).
  stack_cache stacks;
  fiber_cache records;
  std::uint64_t next_id = 0, id_limit = 0;  // fiber id batch
  std::uint32_t tick = 0;                   // scheduling decisions, for the 61-tick global check
  std::uint32_t next_streak = 0;            // consecutive picks from runq.next
  bool check_timers = false;                // fire due timers at the next safe point

  // Read by sysmon without a lock (relaxed): it only compares snapshots.
  std::atomic<std::uint64_t> schedtick{0};    // bumped at every switch (also the stat)
  std::atomic<std::uint32_t> syscalltick{0};  // bumped at every blocking() entry
  // The fiber this processor's machine is running, null on g0. Written by the
  // holder at every switch (relaxed: sysmon only uses it to name a hog, and
  // re-checks schedtick around the read).
  std::atomic<fiber*> current{nullptr};
  // Set by sysmon when the running fiber has not switched for half of
  // hog_handoff; cleared (exchange) by that fiber at its next preempt point,
  // where it yields (park.hpp). Counted in g_preempt_requests.
  std::atomic<bool> preempt{false};

  // stats (P1 writers)
  p_counter started, finished, steals;
};

}  // namespace weft::detail
