// time_test.cpp: sleep_for, sleep_until and the timer heap.

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono;

TEST_SUITE_BEGIN("time");

TEST_CASE("sleep_for sleeps at least its duration, zero and negative return at once") {
  test::for_each_workers([](unsigned) {
    auto t0 = steady_clock::now();
    weft::sleep_for(milliseconds(15));
    CHECK(steady_clock::now() - t0 >= milliseconds(15));
    // "At once": without parking (no switch), not "within N ms", which a
    // loaded machine may exceed between any two instructions.
    const std::uint64_t switches = weft::stats().context_switches;
    weft::sleep_for(milliseconds(0));
    weft::sleep_for(milliseconds(-5));
    weft::sleep_until(steady_clock::now() - seconds(1));
    CHECK(weft::stats().context_switches == switches);
  });
}

TEST_CASE("many sleeping fibers each wake no earlier than their deadline") {
  test::for_each_workers([](unsigned) {
    constexpr int n = 300;
    std::atomic<int> early{0};
    std::atomic<int> woke{0};
    weft::wait_group wg;
    wg.add(n);
    std::mt19937 rng(7);
    for (int i = 0; i < n; ++i) {
      const auto d = microseconds(rng() % 20000);
      weft::go([&, d] {
        const auto deadline = steady_clock::now() + d;
        weft::sleep_until(deadline);
        if (steady_clock::now() < deadline) early++;
        woke++;
        wg.done();
      });
    }
    wg.wait();
    CHECK(early.load() == 0);
    CHECK(woke.load() == n);
  });
}

TEST_CASE("timers fire in deadline order on one worker") {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        struct woke {
          int d;
          steady_clock::time_point at;
        };
        std::vector<woke> order;
        weft::wait_group wg;
        const int delays_ms[] = {30, 10, 50, 20, 40};
        // Deadlines from one base: with sleep_for, a fiber started late
        // (a busy machine, TSan) could get a later deadline than its delay
        // suggests, and the test would judge the machine, not the heap.
        const auto base = steady_clock::now();
        wg.add(5);
        for (int d : delays_ms) {
          weft::go([&, d] {
            weft::sleep_until(base + milliseconds(d));
            order.push_back({d, steady_clock::now()});
            wg.done();
          });
        }
        wg.wait();
        REQUIRE(order.size() == 5);
        // A fiber never resumes ahead of one with an earlier deadline unless
        // that deadline had passed too: then both were due at once (the
        // worker got the CPU late) and, as in Go, either may run first. On
        // a machine that keeps up, that is the order 10, 20, 30, 40, 50.
        for (std::size_t i = 0; i < order.size(); ++i) {
          for (std::size_t j = i + 1; j < order.size(); ++j) {
            if (order[j].d >= order[i].d) continue;
            CAPTURE(order[i].d);
            CAPTURE(order[j].d);
            CHECK(order[i].at >= base + milliseconds(order[j].d));
          }
        }
      },
      o);
  test::check_teardown();
}

TEST_CASE("sleep_for outside a fiber sleeps the calling thread") {
  const auto t0 = steady_clock::now();
  weft::sleep_for(milliseconds(5));
  CHECK(steady_clock::now() - t0 >= milliseconds(5));
}

TEST_CASE("a sleeping fiber is unwound at shutdown and its timer removed") {
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    std::atomic<bool> unwound{false};
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          weft::go([&] {
            struct flag {
              std::atomic<bool>* f;
              ~flag() { f->store(true); }
            } fl{&unwound};
            weft::sleep_for(hours(1));
          });
          test::await_parked(1);  // asleep, so it is unwound (not dropped unstarted)
        },
        o);
    CHECK(unwound.load());
    test::check_teardown();
  }
}

TEST_SUITE_END();
