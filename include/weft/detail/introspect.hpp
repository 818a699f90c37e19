#pragma once
// detail/introspect.hpp: hooks for weft's own tests. Not public API.

#include <cstdint>

namespace weft::detail {

struct teardown_report {
  std::uint64_t fiber_records_live;  // records neither free nor cached: leaked fibers
  std::uint64_t stacks_out;          // stacks not returned to the pool
  std::uint64_t timers_pending;      // timers still queued after unwinding (leaked sleeps)
  std::uint64_t timers_disposed;     // runtime-owned timers (after, ticker) dropped at shutdown
  std::uint64_t threads_alive;       // runtime threads not joined
  std::uint64_t fibers_unwound;      // fibers unwound or dropped at shutdown
};

// last_teardown: what the last run() found when it tore the runtime down.
teardown_report last_teardown() noexcept;

// worker_tid: the OS thread id the runtime believes the calling fiber runs
// on (its machine's), or 0 outside a worker. Read through the same opaque
// accessor the runtime uses, so a test can check it after migrations.
long worker_tid() noexcept;

}  // namespace weft::detail
