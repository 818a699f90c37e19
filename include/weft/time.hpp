#pragma once
// weft/time.hpp: sleeping, timeouts and tickers on steady_clock.
//
// Zero or negative durations expire at once. Timers are serviced by the
// runtime's poller thread with nanosecond resolution (epoll_pwait2), so
// sleep_for(1us) sleeps microseconds, not a millisecond.

#include <chrono>

namespace weft {

// sleep_until: park the calling fiber until t. Outside a fiber (or inside
// weft::blocking) it sleeps the calling thread.
void sleep_until(std::chrono::steady_clock::time_point t);

// sleep_for: park the calling fiber for at least d.
template <class Rep, class Period>
void sleep_for(const std::chrono::duration<Rep, Period>& d) {
  using namespace std::chrono;
  if (d <= duration<Rep, Period>::zero()) return;
  const auto now = steady_clock::now();
  if (d >= duration_cast<duration<Rep, Period>>(steady_clock::time_point::max() - now)) {
    sleep_until(steady_clock::time_point::max());
  } else {
    sleep_until(now + ceil<steady_clock::duration>(d));
  }
}

}  // namespace weft
