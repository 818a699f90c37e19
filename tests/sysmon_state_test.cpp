// sysmon_state_test.cpp: the monitor's hand-offs leave the scheduler's
// bookkeeping right: who holds a processor after blocking(), and which
// preemption requests are outstanding. These check internal state
// (weft/detail/introspect.hpp), not timing, so they hold on a loaded machine.

#include <unistd.h>

#include <atomic>
#include <chrono>

#include "support.hpp"

TEST_SUITE_BEGIN("sysmon");

TEST_CASE("a fiber back from blocking runs on a processor that names its worker as holder") {
  // Blocking calls long enough for sysmon to hand their processors on, and
  // several fibers making them, so a processor handed to another worker is
  // often back in a blocking call when the first worker's call returns.
  test::for_each_workers(
      [](unsigned) {
        constexpr int fibers = 4;
        const int calls = test::sanitized ? 60 : 200;
        std::atomic<long> wrong{0};
        weft::wait_group wg;
        wg.add(fibers);
        for (int i = 0; i < fibers; ++i) {
          weft::go([&, i] {
            for (int k = 0; k < calls; ++k) {
              weft::blocking([k, i] { ::usleep(200 + ((k + i) * 37) % 300); });
              if (!weft::detail::holds_own_processor()) wrong.fetch_add(1);
              weft::yield();
            }
            wg.done();
          });
        }
        wg.wait();
        CHECK(wrong.load() == 0);
      },
      {1, 2, 8});
}

namespace {

// spin_until: busy-wait without any scheduling point until pred() holds or
// 10 s pass (a stalled monitor); returns pred().
template <class Pred>
bool spin_until(Pred pred) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred() && std::chrono::steady_clock::now() < limit) {
  }
  return pred();
}

bool preempt_requested() { return weft::detail::g_preempt_requests.load() != 0; }

}  // namespace

TEST_CASE("no preemption request outlives the run whose hog it was meant for") {
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    bool flagged = false;
    weft::options o;
    o.workers = 1;
    o.hog_handoff = std::chrono::milliseconds(4);
    // main hogs its worker until sysmon asks it to yield, then returns
    // without reaching a preempt point.
    weft::run([&] { flagged = spin_until(preempt_requested); }, o);
    CHECK(flagged);
    CHECK(weft::detail::g_preempt_requests.load() == 0);
  }
}

TEST_CASE("no preemption request outlives a hog whose processor then goes idle") {
  test::for_each_workers(
      [](unsigned w) {
        std::atomic<bool> flagged{false}, hog_done{false};
        unsigned left = 1;
        weft::go([&] {
          flagged = spin_until(preempt_requested);
          hog_done = true;  // and finish with no preempt point
        });
        // Main's thread waits here as a plain thread: its processor goes to
        // the hog, and when the hog is done every processor goes idle.
        weft::blocking([&] {
          const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
          while ((!hog_done || weft::detail::idle_processors() != w) &&
                 std::chrono::steady_clock::now() < limit) {
            ::usleep(100);
          }
          left = weft::detail::g_preempt_requests.load();
        });
        CHECK(flagged.load());
        CHECK(hog_done.load());
        CHECK(left == 0);
      },
      {1, 2});
}

TEST_SUITE_END();
