#pragma once
// weft/time.hpp: sleeping, timeouts and tickers on steady_clock.
//
// Zero or negative durations expire at once. Timers are serviced by the
// runtime's poller thread with nanosecond resolution (epoll_pwait2), so
// sleep_for(1us) sleeps microseconds, not a millisecond.
//
// Durations of any representation are accepted, floating-point ones
// included, and none is undefined behaviour: a NaN duration throws
// std::invalid_argument naming the call; -infinity expires at once, like
// any negative duration; a duration too long to represent (more than
// about 146 years), +infinity included, saturates to about 146 years,
// which in effect is forever. Fractions of a nanosecond round up.

#include <chrono>
#include <cstdint>

#include "weft/chan.hpp"
#include "weft/detail/duration.hpp"

namespace weft {

// sleep_until: park the calling fiber until t; a t already past returns
// at once, time_point::max() sleeps forever. Outside a fiber (or inside
// weft::blocking) it sleeps the calling thread. In a destructor that runs
// while the runtime unwinds the calling fiber at shutdown it returns at
// once: no timer fires any more, and shutdown does not wait.
void sleep_until(std::chrono::steady_clock::time_point t);

// sleep_for: park the calling fiber for at least d. Zero, negative and
// -infinite d return at once; +infinity sleeps forever (see above); NaN
// throws std::invalid_argument. At shutdown, as sleep_until.
template <class Rep, class Period>
void sleep_for(const std::chrono::duration<Rep, Period>& d) {
  const std::int64_t ns = detail::timeout_ns(d, "weft::sleep_for");
  if (ns == 0) return;
  sleep_until(std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns));
}

namespace detail {
chan<std::chrono::steady_clock::time_point> make_after(std::int64_t ns);
chan<std::chrono::steady_clock::time_point> make_ticker(std::int64_t period_ns);
void stop_ticker(const chan<std::chrono::steady_clock::time_point>& c) noexcept;
}  // namespace detail

// after: a channel that receives the steady_clock time once, when d has
// elapsed (Go's time.After); zero, negative and -infinite d fire at once,
// +infinity never does, NaN throws std::invalid_argument. It never
// fires early; to keep many timeouts cheap it may fire up to d/16 (at most
// 50 us) late, like a batch of timers due together. The channel
// holds that one value (capacity 1), so nobody has to receive it. Use it as
// a select timeout: `recv_case(after(100ms), ...)`.
// The timer is the runtime's: callable from fibers, and from other threads
// while a runtime is running; with no runtime running (or once it is
// shutting down) it throws std::logic_error. A pending `after` keeps the
// runtime from reporting a deadlock until it fires, received or not, or
// until the last handle to its channel goes: then nobody can receive it,
// and its timer and channel are freed at once (Go 1.23's rule), not at the
// deadline. One still pending when run() returns is discarded.
template <class Rep, class Period>
chan<std::chrono::steady_clock::time_point> after(const std::chrono::duration<Rep, Period>& d) {
  return detail::make_after(detail::timeout_ns(d, "weft::after"));
}

// ticker: sends the steady_clock time on c() every `period` (Go's
// time.Ticker), the first tick one period after construction. c() holds
// one tick: a reader that falls behind misses ticks rather than queueing
// them. stop() (and the destructor) ends the ticks; c() stays valid and
// receives no more. Move-only; a moved-from ticker is stopped and its c()
// is the nil channel. Construction throws std::invalid_argument for a
// non-positive period (-infinity included) or a NaN one, and
// std::logic_error where `after` does; a period of +infinity never ticks.
// stop() and the destructor may be called from anywhere, also after run()
// returned.
class ticker {
 public:
  template <class Rep, class Period>
  explicit ticker(const std::chrono::duration<Rep, Period>& period)
      : c_(detail::make_ticker(positive_ns(period))) {}
  ticker(ticker&& o) noexcept : c_(std::move(o.c_)) {}
  ticker& operator=(ticker&& o) noexcept {
    if (this != &o) {
      stop();
      c_ = std::move(o.c_);
    }
    return *this;
  }
  ticker(const ticker&) = delete;
  ticker& operator=(const ticker&) = delete;
  ~ticker() { stop(); }

  // c: the channel the ticks arrive on.
  chan<std::chrono::steady_clock::time_point> c() const { return c_; }
  // stop: no tick is sent after stop returns (a stop from a plain thread
  // racing with the runtime's shutdown may let ticks through until the
  // runtime's timers stop). Idempotent.
  void stop() noexcept { detail::stop_ticker(c_); }

 private:
  template <class Rep, class Period>
  static std::int64_t positive_ns(const std::chrono::duration<Rep, Period>& period) {
    const std::int64_t ns = detail::saturated_ns(period, "weft::ticker");
    if (ns <= 0) throw_bad_period();
    return ns;
  }
  [[noreturn]] static void throw_bad_period();

  chan<std::chrono::steady_clock::time_point> c_;
};

}  // namespace weft
