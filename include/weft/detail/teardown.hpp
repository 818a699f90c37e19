#pragma once
// detail/teardown.hpp: what the last run() found when it tore the runtime
// down, for leak checks in tests. Not part of the public API.

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

teardown_report last_teardown() noexcept;

}  // namespace weft::detail
