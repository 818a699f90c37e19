#pragma once
// fiber.hpp: the fiber record (Go's G).
//
// A record is 256 bytes and holds everything a fiber needs before it first
// runs: its closure (inline when it fits), its id and start site. The stack
// is bound only when the fiber first runs (lazy binding): a million spawned
// fibers that finish quickly share a handful of stacks.
//
// Records are type-stable: they live in chunks that are never freed while a
// runtime runs (fiber_pool.hpp), so a dump may read any record at any time;
// `state_` tells a live record from a free one.
//
// Invariants
//   F1  state_ == runnable iff the fiber is in exactly one run queue, global
//       queue or injection batch (or is being moved between them).
//   F2  Only the worker running the fiber, or the party that won the right to
//       wake it (unpark), changes state_ away from parked/running.
//   F3  ctx.fctx != null iff the fiber has started and is not running.

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/context.hpp"
#include "weft/detail/park.hpp"
#include "weft/runtime.hpp"

namespace weft::detail {

struct stack_slot;

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
  // while the fiber lives, so relaxed atomics (plain moves on x86).
  std::atomic<std::uint64_t> id{0};
  std::atomic<const char*> file{nullptr};
  std::atomic<std::uint32_t> line{0};
  stack_slot* stack = nullptr;  // bound at first run, by the worker running it
  const closure_ops* ops = nullptr;
  void* closure = nullptr;  // inline_ or a heap block
  // See F1/F2. relaxed loads are for diagnostics only; transitions are
  // ordered by the queue or lock that carries the fiber.
  std::atomic<fiber_state> state{fiber_state::free};
  bool is_main = false;
  bool unwinding = false;  // set before resuming it at shutdown; read by park()
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

  static constexpr std::size_t inline_size = 88;
  alignas(16) unsigned char inline_[inline_size];
};

#if !WEFT_ASAN && !WEFT_TSAN
static_assert(sizeof(fiber) <= fiber_record_size, "fiber record grew past 256 bytes");
#endif

}  // namespace weft::detail
