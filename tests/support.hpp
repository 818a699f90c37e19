#pragma once
// support.hpp: helpers shared by the test suites.
//
// for_each_workers(body): run `body` inside weft::run once per worker count
// (1, 2, 4 and 8: 8 is more workers than this machine has cores), with the
// count CAPTUREd, and check after every run that the runtime left nothing
// behind (fibers, stacks, timers, threads).

#include <doctest/doctest.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <weft/detail/introspect.hpp>
#include <weft/weft.hpp>

namespace test {

inline void check_teardown() {
  const weft::detail::teardown_report r = weft::detail::last_teardown();
  CHECK_MESSAGE(r.fiber_records_live == 0, "fiber records leaked");
  CHECK_MESSAGE(r.stacks_out == 0, "stacks leaked");
  CHECK_MESSAGE(r.timers_pending == 0, "timers leaked");
  CHECK_MESSAGE(r.threads_alive == 0, "threads leaked");
}

inline constexpr std::initializer_list<unsigned> worker_counts = {1, 2, 4, 8};

// for_each_workers: run body(w) in a fresh runtime for each worker count.
// CAPTURE and INFO belong here, on the test's thread, never inside a fiber:
// doctest keeps their scopes in a thread_local stack, and a fiber that
// parks may resume on another worker and pop the wrong thread's scope.
template <class Body>
void for_each_workers(Body&& body, std::initializer_list<unsigned> counts = worker_counts) {
  for (unsigned w : counts) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    weft::run([&] { body(w); }, o);
    check_teardown();
  }
}

// await_parked: yield until at least k fibers are parked, counted from
// their records (weft::detail::fibers_parked_now; the counter-derived
// stats().fibers_parked can count a fiber in flight between queues). The
// caller keeps running, so it is not among them: "the k fibers I started
// have all blocked", with no sleep, however late the machine lets them
// start.
inline void await_parked(std::uint64_t k) {
  while (weft::detail::fibers_parked_now() < k) weft::yield();
}

inline std::int64_t process_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Scale a stress count down under the sanitizers (5-15x slower, and ASan
// stacks are much larger).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WEFT_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_TEST_SANITIZED 1
#endif
#ifdef WEFT_TEST_SANITIZED
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
constexpr std::uint64_t scaled(std::uint64_t n, std::uint64_t divisor = 10) {
  return sanitized ? (n / divisor > 0 ? n / divisor : 1) : n;
}

}  // namespace test
