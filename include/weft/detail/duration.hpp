#pragma once
// detail/duration.hpp: a caller's duration or time point as steady_clock
// nanoseconds, for every weft call that takes one (time.hpp, sync.hpp).
//
// No input is undefined behaviour, floating-point ones included:
//   * NaN throws std::invalid_argument naming the call;
//   * zero, negative and -infinity durations expire at once;
//   * durations of never_ns or more, +infinity included, saturate to
//     never_ns (about 146 years: a timer that never fires in practice);
//     time points that far from now saturate the same way.
// Conversions round up to whole nanoseconds, so nothing expires early.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace weft::detail {

// never_ns: the longest timeout weft keeps (INT64_MAX / 2 ns, ~146 years),
// small enough that now + never_ns cannot overflow.
inline constexpr std::int64_t never_ns = INT64_MAX / 2;

// throw_nan_duration: std::invalid_argument("<api>: the duration is NaN").
[[noreturn]] void throw_nan_duration(const char* api);

// saturated_ns: d in nanoseconds, rounded up, clamped to [-never_ns,
// never_ns]; NaN throws.
template <class Rep, class Period>
std::int64_t saturated_ns(const std::chrono::duration<Rep, Period>& d, const char* api) {
  using namespace std::chrono;
  using dur = duration<Rep, Period>;
  if constexpr (std::is_floating_point_v<Rep>) {
    if (std::isnan(d.count())) throw_nan_duration(api);
  }
  // Whether some value of `dur` lies beyond never_ns (then never_ns is
  // representable in `dur`, and the comparisons below are exact).
  constexpr bool can_exceed = [] {
    if constexpr (std::is_floating_point_v<Rep>) {
      return true;
    } else {
      return static_cast<long double>(std::numeric_limits<Rep>::max()) * Period::num * 1e9L /
                 Period::den >=
             static_cast<long double>(never_ns);
    }
  }();
  if constexpr (can_exceed) {
    constexpr dur hi = duration_cast<dur>(nanoseconds(never_ns));
    if (d >= hi) return never_ns;
    if constexpr (std::is_signed_v<Rep> || std::is_floating_point_v<Rep>) {
      if (d <= -hi) return -never_ns;
    }
  }
  return ceil<nanoseconds>(d).count();
}

// timeout_ns: d as a timeout in nanoseconds, in [0, never_ns] (see above).
template <class Rep, class Period>
std::int64_t timeout_ns(const std::chrono::duration<Rep, Period>& d, const char* api) {
  const std::int64_t ns = saturated_ns(d, api);
  return ns < 0 ? 0 : ns;
}

// deadline_ns: t as a steady_clock time in nanoseconds. A steady_clock
// time_point is taken as it is (time_point::max() gives INT64_MAX, which
// callers read as "no deadline"); another clock's is converted through the
// time left until it, read from that clock now.
template <class Clock, class Duration>
std::int64_t deadline_ns(const std::chrono::time_point<Clock, Duration>& t, const char* api) {
  using namespace std::chrono;
  if constexpr (std::is_same_v<Clock, steady_clock> &&
                std::is_same_v<Duration, steady_clock::duration>) {
    return duration_cast<nanoseconds>(t.time_since_epoch()).count();
  } else if constexpr (std::is_same_v<Clock, steady_clock>) {
    return saturated_ns(t.time_since_epoch(), api);
  } else {
    // Both terms lie in [-never_ns, never_ns]: the difference cannot overflow.
    const std::int64_t left = saturated_ns(t.time_since_epoch(), api) -
                              saturated_ns(Clock::now().time_since_epoch(), api);
    const std::int64_t now =
        duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
    return left <= 0 ? now : now + (left < never_ns ? left : never_ns);
  }
}

}  // namespace weft::detail
