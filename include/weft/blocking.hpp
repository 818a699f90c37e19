#pragma once
// weft/blocking.hpp: run a call that may block its OS thread.

#include <functional>
#include <type_traits>
#include <utility>

namespace weft {

namespace detail {
bool enter_blocking() noexcept;
void exit_blocking() noexcept;
}  // namespace detail

// blocking: run f() on the current thread, marked as a blocking system call.
// If it lasts longer than options::blocking_handoff, the monitor thread
// hands this worker's run queue to another thread so every other fiber
// keeps running. Returns exactly what f returns, or rethrows its exception.
//
// Inside f the fiber behaves like a plain OS thread: weft calls that block
// (channel operations, locks, sleep) block the thread rather than park the
// fiber, and go() queues globally. Outside a fiber (or nested inside another
// blocking call) blocking(f) simply calls f.
template <class F>
decltype(auto) blocking(F&& f) {
  if (!detail::enter_blocking()) return std::invoke(std::forward<F>(f));
  struct leave {
    ~leave() { detail::exit_blocking(); }
  } guard;
  return std::invoke(std::forward<F>(f));
}

}  // namespace weft
