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
//       the hand-over goes through scheduler::mu or a CAS on status, which
//       carries the happens-before edge.
//   P2  status == idle iff the processor is on the idle list, except while
//       sysmon hands a processor it retook (CAS syscall -> idle) to
//       handoff_p, which lists it or gives it to a machine.
//   P3  A processor in `syscall` names its blocked holder in the same word
//       (status_word::syscall_of). Only that machine stores that word
//       (enter_blocking), and it stays inside blocking() until its exit CAS
//       from exactly that word; so once sysmon has taken the processor
//       (syscall -> idle), the word cannot come back even if the next
//       holder's fiber enters blocking() too, and the exit CAS succeeds iff
//       nobody took the processor during this call: then m, m_tid and
//       current still describe the caller (checked in exit_blocking).

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
// The global queue's length at which a fiber that has spawned more than a
// ring's worth in one run yields when its ring spills into it (runtime.cpp,
// "Spawn backlog"): half of the record chunk a run starts with.
inline constexpr std::size_t spawn_backlog_max = 4096;

// Per-processor counters: written only by the holder (relaxed load + store,
// no read-modify-write), read by stats() from any thread.
struct p_counter {
  std::atomic<std::uint64_t> v{0};
  void inc(std::uint64_t n = 1) noexcept {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

// status_word: p_status in the low two bits; for `syscall`, the holder's
// machine id + 1 above them (P3). load() and store() deal in plain states
// (tag 0) for everyone else; the tagged word is only stored by
// enter_blocking and compared by the two CASes that leave `syscall`.
class status_word {
 public:
  static constexpr std::uint32_t syscall_of(std::uint32_t machine_id) noexcept {
    return ((machine_id + 1) << 2) | static_cast<std::uint32_t>(p_status::syscall);
  }
  p_status load(std::memory_order mo) const noexcept {
    return static_cast<p_status>(w_.load(mo) & 3);
  }
  std::uint32_t load_word(std::memory_order mo) const noexcept { return w_.load(mo); }
  void store(p_status s, std::memory_order mo) noexcept {
    w_.store(static_cast<std::uint32_t>(s), mo);
  }
  void store_word(std::uint32_t w, std::memory_order mo) noexcept { w_.store(w, mo); }
  // cas: from exactly `expected` (a word from load_word or syscall_of).
  bool cas(std::uint32_t expected, p_status to, std::memory_order mo) noexcept {
    return w_.compare_exchange_strong(expected, static_cast<std::uint32_t>(to), mo);
  }

 private:
  std::atomic<std::uint32_t> w_{static_cast<std::uint32_t>(p_status::dead)};
};

struct processor {
  std::uint32_t index = 0;
  // A spare (index >= options::workers) is lent by sysmon while a fiber
  // hogs another processor, and retires when it next runs out of work
  // (sysmon.cpp, "Hogs"). Fixed for the run.
  bool spare = false;
  run_queue<local_queue_size> runq;
  // Lifecycle: changed under scheduler::mu (idle <-> running) or by CAS
  // (running <-> syscall by the holder, syscall -> idle by sysmon; P3).
  status_word status;
  machine* m = nullptr;  // holder; written with status under the same protection
  // The holder's OS thread id, for sysmon's CPU-time check on a suspected
  // hog (sysmon.cpp). Written by acquire_p (relaxed); read by sysmon as a
  // hint: a stale id only makes sysmon treat a suspect as a hog.
  std::atomic<long> m_tid{0};
  processor* idle_link = nullptr;  // guarded by scheduler::mu

  // Owner-only (P1).
  stack_cache stacks;
  fiber_cache records;
  std::uint64_t next_id = 0, id_limit = 0;  // fiber id batch
  std::uint32_t tick = 0;                   // scheduling decisions, for the 61-tick global check
  std::uint32_t next_streak = 0;            // consecutive picks from runq.next
  bool check_timers = false;                // fire due timers at the next safe point
  // Spawn backlog (runtime.cpp): go() calls by the running fiber since it
  // was switched in (counted in spawn_run while schedtick equals
  // spawn_tick), and whether this ring has spilled into a global queue of
  // spawn_backlog_max fibers since the last go().
  std::uint64_t spawn_tick = ~std::uint64_t{0};
  std::uint32_t spawn_run = 0;
  bool spawn_backlog = false;

  // Read by sysmon without a lock (relaxed): it only compares snapshots.
  std::atomic<std::uint64_t> schedtick{0};    // bumped at every switch (also the stat)
  std::atomic<std::uint32_t> syscalltick{0};  // bumped at every blocking() entry
  // The fiber this processor's machine is running, null on g0. Written by the
  // holder at every switch (relaxed: sysmon only uses it to name a hog, and
  // re-checks schedtick around the read).
  std::atomic<fiber*> current{nullptr};
  // Odd while the holder does the runtime's own slow work (runtime_work):
  // growing the stack or fiber pools (mmap, mprotect, first touches of new
  // memory, waiting for the pool's lock), or runtime_own_work's (a
  // preempted lock holder waited out, a long wake list). Written by the holder (relaxed
  // load + store); read by sysmon (relaxed), which counts a fiber's run only
  // from its last look at an even, unchanged value: the time is the
  // runtime's, not the fiber that happened to need a stack.
  std::atomic<std::uint32_t> rtwork{0};
  // Set by sysmon when the running fiber has not switched for half of
  // hog_handoff; cleared (exchange) by that fiber at its next preempt point,
  // where it yields (park.hpp), or withdrawn (drop_preempt) once that fiber
  // is gone: by sysmon when the processor has switched or is not running,
  // by pidle_put and release_p, and at the end of run(). Counted in
  // g_preempt_requests, so a request must not outlive its fiber: every
  // channel, select and lock operation takes the slow path while any is out.
  std::atomic<bool> preempt{false};

  // stats (P1 writers)
  p_counter started, finished, steals;
};

// runtime_work: marks a scope of the runtime's own slow work on p
// (processor::rtwork). For cold paths only: a pool's cache is empty.
class runtime_work {
 public:
  explicit runtime_work(processor* p) noexcept : p_(p) { bump(); }
  ~runtime_work() { bump(); }
  runtime_work(const runtime_work&) = delete;
  runtime_work& operator=(const runtime_work&) = delete;

 private:
  void bump() noexcept {
    p_->rtwork.store(p_->rtwork.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  processor* p_;
};

}  // namespace weft::detail
