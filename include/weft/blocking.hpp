#pragma once
// weft/blocking.hpp: run a call that may block its OS thread.

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

namespace weft {

namespace detail {
// enter_blocking (runtime/scheduler.cpp) decides how blocking() runs f:
// direct (not a fiber holding a processor: just call f), entered (f runs
// here, the processor marked as in a system call; exit_blocking after), or
// offload (other fibers wait for this worker: offload runs f on a pool
// thread while the fiber parks, runtime/blocking_pool.cpp). One call
// decides, so a lone call pays for one look at the worker's queues.
enum class blocking_entry : unsigned char { direct, entered, offload };
blocking_entry enter_blocking() noexcept;
void exit_blocking() noexcept;
void offload(void (*run)(void*), void* arg);

// offloaded: f() run by offload, its result or exception brought back.
template <class F>
std::invoke_result_t<F> offloaded(F& f) {
  using R = std::invoke_result_t<F>;
  struct call {
    F& f;
    std::exception_ptr exc;
    std::conditional_t<
        std::is_void_v<R>, bool,
        std::conditional_t<std::is_reference_v<R>, std::remove_reference_t<R>*, std::optional<R>>>
        result{};
  } c{f, nullptr};
  offload(
      [](void* p) {
        call& pc = *static_cast<call*>(p);
        try {
          if constexpr (std::is_void_v<R>) {
            std::invoke(pc.f);
          } else if constexpr (std::is_reference_v<R>) {
            pc.result = &std::invoke(pc.f);
          } else {
            pc.result.emplace(std::invoke(pc.f));
          }
        } catch (...) {
          pc.exc = std::current_exception();
        }
      },
      &c);
  if (c.exc) std::rethrow_exception(c.exc);
  if constexpr (std::is_reference_v<R>) {
    return static_cast<R>(*c.result);
  } else if constexpr (!std::is_void_v<R>) {
    return std::move(*c.result);
  }
}
}  // namespace detail

// blocking: run f() on the current thread, marked as a blocking system call.
// If it lasts longer than options::blocking_handoff, the monitor thread
// hands this worker's run queue to another thread so every other fiber
// keeps running. Returns exactly what f returns, or rethrows its exception.
//
// When other fibers wait for this worker, f runs on a pool thread while the
// calling fiber parks (errno comes back with the result); at the thread
// limit (WEFT_MAX_THREADS) the call waits for a pool thread to be free.
//
// Inside f the fiber behaves like a plain OS thread: weft calls that block
// (channel operations, locks, sleep) block the thread rather than park the
// fiber, and go() queues globally. Outside a fiber (or nested inside another
// blocking call) blocking(f) simply calls f.
template <class F>
decltype(auto) blocking(F&& f) {
  const detail::blocking_entry how = detail::enter_blocking();
  if (how == detail::blocking_entry::direct) return std::invoke(std::forward<F>(f));
  if (how == detail::blocking_entry::offload) return detail::offloaded(f);
  struct leave {
    ~leave() { detail::exit_blocking(); }
  } guard;
  return std::invoke(std::forward<F>(f));
}

}  // namespace weft
