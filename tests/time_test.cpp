// time_test.cpp: sleep_for, sleep_until and the timer heap.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
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

// The netpoller thread held at the top of its cycle (introspect.hpp): 0 no
// hold, 1 asked for, 2 holding; storing 0 releases it.
namespace held_poller {
std::atomic<int> state{0};
void hook() {
  int asked = 1;
  if (!state.compare_exchange_strong(asked, 2)) return;
  state.notify_all();
  for (int s = 2; s == 2; s = state.load()) state.wait(2);
}
void release() {
  state.store(0);
  state.notify_all();
}
}  // namespace held_poller

TEST_CASE(
    "a worker about to wait on the network fires due timers while the netpoller gets no CPU") {
  // A network-bound worker parks its fibers and never yields. Its due
  // timers must still fire when the netpoller thread, which sleeps until
  // the earliest deadline, waits for a CPU (all of them busy): here it is
  // held at the top of its cycle, before it fires anything. The sleeper
  // must be woken by the worker, before the hold ends. (Without the check
  // before network waits it is woken only when the guard lets the netpoller
  // go, unless the worker's every-61st-decision check happens to fall in
  // the window.)
  weft::detail::set_poller_cycle_hook(&held_poller::hook);
  test::for_each_workers([](unsigned) {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    held_poller::state.store(1);
    // A guard, not a synchronisation: it only turns a sleeper that nobody
    // fires into a failure instead of a hang.
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::thread guard([&] {
      std::unique_lock lk(mu);
      cv.wait_for(lk, seconds(30), [&] { return done; });
      held_poller::release();
    });
    // A far timer makes the netpoller start a new cycle (it sleeps to the
    // earliest deadline), where the hook holds it.
    weft::go([] { weft::sleep_for(hours(1)); });
    test::await_parked(1);
    while (held_poller::state.load() == 1)
      held_poller::state.wait(1);  // blocks this worker briefly
    std::atomic<std::int64_t> deadline{0};
    std::atomic<bool> held_at_wake{false};
    weft::go([&] {
      const auto d = steady_clock::now() + milliseconds(1);
      deadline.store(d.time_since_epoch().count());
      weft::sleep_until(d);
      held_at_wake.store(held_poller::state.load() == 2);
      held_poller::release();
      const char c = 'x';
      CHECK(::write(p[1], &c, 1) == 1);
    });
    while (deadline.load() == 0) weft::yield();
    // Spin past the deadline without a scheduling point, then wait.
    while (steady_clock::now().time_since_epoch().count() <= deadline.load()) {
    }
    weft::net::wait_readable(p[0], steady_clock::now() + seconds(30));
    // The read orders the writer's use of the pipe before the close below
    // for TSan, which sees a pipe's write and read as release and acquire.
    char c = 0;
    CHECK(::read(p[0], &c, 1) == 1);
    CHECK(held_at_wake.load());
    {
      std::lock_guard lk(mu);
      done = true;
    }
    cv.notify_all();
    guard.join();
    ::close(p[0]);
    ::close(p[1]);
  });
  weft::detail::set_poller_cycle_hook(nullptr);
}

TEST_SUITE_END();
