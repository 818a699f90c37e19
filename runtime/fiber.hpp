#pragma once
// fiber.hpp: the fiber record (Go's G).
//
// A record is 224 bytes in release builds (at most 256) and holds
// everything a fiber needs before it first runs: its closure (inline when
// it fits), its id and start site. The stack is bound only when the fiber
// first runs (lazy binding): a million spawned fibers that finish quickly
// share a handful of stacks.
//
// Records are type-stable: they live in chunks that are never freed while a
// runtime runs (fiber_pool.hpp), so a dump may read any record at any time;
// `state` tells a live record from a free one.
//
// Invariants
//   F1  state == runnable iff the fiber is in exactly one run queue, global
//       queue or injection batch (or is being moved between them).
//   F2  Only the worker running the fiber, or the party that won the right to
//       wake it (unpark), changes state away from parked/running.
//   F3  ctx.fctx != null iff the fiber has started and is not running.
//   F4  state changes only along the table in legal_transition(), through
//       transition(), which (WEFT_DEBUG_CHECKS) checks the prior state: a
//       fiber readied twice, resumed while running or recycled while parked
//       aborts at the transition instead of corrupting a queue later.
//   F5  Incarnations: `seq` is odd while the record is handed out for a new
//       fiber and its identity (id, start site, is_main) rewritten, from
//       begin_incarnation() (fiber_pool::reset) to publish_identity()
//       (before the fiber is readied, or when the record goes back
//       unused); only the thread handing the record out writes them then.
//       A reader that sees the same even `seq` before and after reading a
//       record's fields (seqlock: every field it reads is atomic) read one
//       fiber: its identity, and its state as of about that time
//       (debug.cpp, take_snapshot). That needs `seq` to only grow over a
//       record's life, also across the scavenger releasing its page, which
//       reads back as 0 (fiber_pool.hpp P4).

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/context.hpp"
#include "runtime/sanitizers.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/park.hpp"
#include "weft/runtime.hpp"

namespace weft::detail {

struct stack_slot;

// Keep in step: STATE_NAMES in tools/weft-gdb.py (by enumerator name; the
// script reads the values from debug information, and the gdb_extension
// test fails when a name is missing) and describe() in runtime/debug.cpp.
enum class fiber_state : std::uint8_t {
  free,      // in a pool, not a fiber
  runnable,  // queued, F1
  running,   // on a worker
  parked,    // waiting in park()
  dead,      // finished, about to return to the pool
};

inline constexpr std::size_t fiber_record_size = 256;  // release builds

struct fiber {
  exec_context ctx;  // written by the switch code only (context.hpp, C1)
  // Intrusive link for whichever single list holds the fiber (F1, pools).
  // Written by the list's owner under the list's protection.
  fiber* link = nullptr;
  // Identity and start site: written once when the record is handed out,
  // before the fiber is published; read by other threads (sysmon, dumps)
  // while the fiber lives, and by dumps at any time, so relaxed atomics
  // (plain moves on x86) under the seqlock `seq` (F5).
  std::atomic<std::uint64_t> id{0};
  std::atomic<const char*> file{nullptr};
  std::atomic<std::uint32_t> line{0};
  // F5; written by the thread handing the record out (or taking it off the
  // cold list, P4); only grows while the runtime runs.
  std::atomic<std::uint32_t> seq{0};
  stack_slot* stack = nullptr;  // bound at first run, by the worker running it
  const closure_ops* ops = nullptr;
  void* closure = nullptr;  // inline_ or a heap block
  // See F1/F2. relaxed loads are for diagnostics only; transitions are
  // ordered by the queue or lock that carries the fiber.
  std::atomic<fiber_state> state{fiber_state::free};
  std::atomic<bool> is_main{false};  // identity (F5); relaxed
  bool unwinding = false;            // set before resuming it at shutdown; read by park()
  bool heap_closure = false;
  bool queued_final = false;   // on the shutdown readied list; guarded by scheduler::final_mu
  std::uint16_t rethrows = 0;  // shutdown unwinds thrown at a fiber that swallowed one
  // Diagnostics, written by the fiber itself when it parks (relaxed: read
  // only by dumps, which tolerate a stale value).
  std::atomic<wait_reason> reason{wait_reason::none};
  std::atomic<const void*> wait_obj{nullptr};
  std::atomic<std::int64_t> wait_note{0};   // see wait_reason
  std::atomic<std::int64_t> wait_since{0};  // coarse monotonic ns

  std::uint64_t get_id() const noexcept { return id.load(std::memory_order_relaxed); }
  const char* get_file() const noexcept {
    const char* f = file.load(std::memory_order_relaxed);
    return f != nullptr ? f : "?";
  }
  std::uint32_t get_line() const noexcept { return line.load(std::memory_order_relaxed); }
  void set_site(const char* f, std::uint32_t l) noexcept {
    file.store(f, std::memory_order_relaxed);
    line.store(l, std::memory_order_relaxed);
  }
  bool main_fiber() const noexcept { return is_main.load(std::memory_order_relaxed); }

  // begin_incarnation / publish_identity: bracket the rewriting of the
  // identity fields when the record is handed out (F5).
  void begin_incarnation() noexcept {
    seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // release: a reader that sees any field written after this fence also
    // sees the odd `seq` on its second look (pairs with the acquire fence
    // in take_snapshot).
    std::atomic_thread_fence(std::memory_order_release);
  }
  void publish_identity() noexcept {
    // release: pairs with the reader's first, acquire load of `seq`.
    seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  static constexpr std::size_t inline_size = 88;
  alignas(16) unsigned char inline_[inline_size];
};

#if !WEFT_ASAN && !WEFT_TSAN
static_assert(sizeof(fiber) <= fiber_record_size, "fiber record grew past 256 bytes");
#endif

// legal_transition: F4's table. Who makes each transition:
//   free     -> runnable  go() (ready_spawned), run() for the main fiber
//   runnable -> running   the party that took it from a queue (prepare_run),
//                         the unwinder (phase::final)
//   running  -> parked    park_current
//   running  -> runnable  yield, exit_blocking without a processor
//   running  -> dead      exit_current
//   parked   -> runnable  unpark (ready), the netpoller taking it from a slot
//   parked   -> running   the unwinder resuming it to unwind it
//   runnable -> dead      the unwinder dropping a fiber that never started
//   dead     -> free      recycling the record (fiber_pool)
constexpr bool legal_transition(fiber_state from, fiber_state to) noexcept {
  using s = fiber_state;
  switch (from) {
    case s::free:
      return to == s::runnable;
    case s::runnable:
      return to == s::running || to == s::dead;
    case s::running:
      return to == s::parked || to == s::runnable || to == s::dead;
    case s::parked:
      return to == s::runnable || to == s::running;
    case s::dead:
      return to == s::free;
  }
  return false;
}

const char* fiber_state_name(fiber_state s) noexcept;

// transition_failed: WEFT_CHECK's report for a transition from the wrong
// state (switch.cpp).
[[noreturn]] void transition_failed(const fiber* f, fiber_state prior, fiber_state from,
                                    fiber_state to, const char* file, int line) noexcept;

// transition: move f from `from` to `to` (F4). Relaxed: the queue, lock or
// CAS that hands the fiber over orders it (F1, F2). With WEFT_DEBUG_CHECKS
// the store is an exchange, and a prior state other than `from` aborts
// with the transition named.
inline void transition(fiber* f, fiber_state from, fiber_state to,
                       const char* file = __builtin_FILE(), int line = __builtin_LINE()) noexcept {
#if WEFT_DEBUG_CHECKS
  const fiber_state prior = f->state.exchange(to, std::memory_order_relaxed);
  if (prior != from || !legal_transition(from, to))
    transition_failed(f, prior, from, to, file, line);
#else
  (void)from;
  (void)file;
  (void)line;
  f->state.store(to, std::memory_order_relaxed);
#endif
}

}  // namespace weft::detail
