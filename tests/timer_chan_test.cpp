// timer_chan_test.cpp: after() and ticker (weft/time.hpp).

#include <atomic>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "chan_helpers.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

TEST_SUITE_BEGIN("timer_chan");

TEST_CASE("after delivers the time once, no earlier than the duration") {
  test::for_each_workers([](unsigned) {
    const auto t0 = clk::now();
    weft::chan<clk::time_point> c = weft::after(5ms);
    CHECK(c.capacity() == 1);
    const clk::time_point fired = *c.recv();
    const auto t1 = clk::now();
    CHECK(t1 - t0 >= 5ms);
    CHECK(fired >= t0 + 5ms);
    CHECK(fired <= t1);
    // Exactly one value: nothing more arrives.
    weft::sleep_for(2ms);
    CHECK(weft::select(weft::recv_case(c), weft::default_case()) == 1);
  });
}

TEST_CASE("after never fires early, however the timers are batched") {
  test::for_each_workers([](unsigned) {
    // Durations below and above the batching threshold, interleaved so that
    // consecutive calls both join and break batches.
    std::vector<std::pair<clk::time_point, weft::chan<clk::time_point>>> pending;
    std::vector<clk::duration> wanted;
    for (int i = 0; i < 300; ++i) {
      const auto d = std::chrono::microseconds((i % 3 == 0) ? 10 + i : 100 + 17 * i);
      wanted.push_back(d);
      const clk::time_point t0 = clk::now();  // before after() starts counting
      pending.emplace_back(t0, weft::after(d));
    }
    int early = 0;
    for (std::size_t i = 0; i < pending.size(); ++i) {
      const clk::time_point fired = *pending[i].second.recv();
      if (fired < pending[i].first + wanted[i]) {
        ++early;
        MESSAGE("after(", std::chrono::duration_cast<std::chrono::microseconds>(wanted[i]).count(),
                "us) fired ",
                std::chrono::duration_cast<std::chrono::nanoseconds>(pending[i].first + wanted[i] -
                                                                     fired)
                    .count(),
                "ns early");
      }
    }
    CHECK(early == 0);
  });
}

TEST_CASE("after with a zero or negative duration fires at once") {
  test::for_each_workers([](unsigned) {
    for (auto d : {0ms, -5ms}) {
      const auto t0 = clk::now();
      weft::chan<clk::time_point> c = weft::after(d);
      CHECK(c.size() == 1);  // already there, before any timer could run
      CHECK(*c.recv() >= t0);
    }
    CHECK(weft::after(-std::chrono::hours(1)).size() == 1);
  });
}

TEST_CASE("after is a select timeout: it fires only when nothing else is ready") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> never;
    const auto t0 = clk::now();
    bool timed_out = false;
    const std::size_t i =
        weft::select(weft::recv_case(never),
                     weft::recv_case(weft::after(3ms), [&](auto v) { timed_out = v.has_value(); }));
    CHECK(i == 1);
    CHECK(timed_out);
    CHECK(clk::now() - t0 >= 3ms);
    // A ready case wins over a timeout that has not fired.
    weft::chan<int> ready(1);
    ready.send(1);
    CHECK(weft::select(weft::recv_case(ready), weft::recv_case(weft::after(1h))) == 0);
  });
}

TEST_CASE("after and ticker need a running runtime: outside one they throw logic_error") {
  CHECK_THROWS_AS(weft::after(1ms), std::logic_error);
  CHECK_THROWS_AS(weft::after(0ms), std::logic_error);
  CHECK_THROWS_AS(weft::ticker(1ms), std::logic_error);
  std::string what;
  try {
    (void)weft::after(1ms);
  } catch (const std::logic_error& e) {
    what = e.what();
  }
  CHECK(what.find("weft::after") == 0);
  std::thread t([] { CHECK_THROWS_AS(weft::after(1ms), std::logic_error); });
  t.join();
}

TEST_CASE("after works from a plain thread while a runtime runs") {
  test::for_each_workers([](unsigned) {
    std::atomic<bool> ok{false};
    std::thread t([&] {
      const auto t0 = clk::now();
      const clk::time_point fired = *weft::after(2ms).recv();  // the thread sleeps
      ok = fired >= t0 + 2ms;
    });
    weft::blocking([&] { t.join(); });
    CHECK(ok.load());
  });
}

TEST_CASE("a ticker ticks every period until stopped") {
  test::for_each_workers([](unsigned) {
    constexpr auto period = 2ms;
    const auto t0 = clk::now();
    weft::ticker tk(period);
    weft::chan<clk::time_point> c = tk.c();
    CHECK(c.capacity() == 1);
    clk::time_point last = t0;
    for (int k = 1; k <= 5; ++k) {
      const clk::time_point tick = *c.recv();
      CHECK(tick >= t0 + k * period);  // the k-th tick is due k periods in
      CHECK(tick > last);
      last = tick;
    }
    tk.stop();
    (void)weft::select(weft::recv_case(c), weft::default_case());  // a tick sent before stop
    weft::sleep_for(3 * period);                                   // probe: no more ticks
    CHECK(c.size() == 0);
    tk.stop();  // idempotent
  });
}

TEST_CASE("a slow ticker reader misses ticks instead of queueing them") {
  test::for_each_workers([](unsigned) {
    weft::ticker tk(1ms);
    weft::sleep_for(10ms);
    CHECK(tk.c().size() == 1);  // ten ticks were due; the channel kept one
    const auto t0 = clk::now();
    (void)tk.c().recv();  // the kept one, at once
    (void)tk.c().recv();  // the next one is a fresh tick
    CHECK(clk::now() - t0 <= 1s);
  });
}

TEST_CASE("a ticker rejects a non-positive period") {
  test::for_each_workers([](unsigned) {
    CHECK_THROWS_AS(weft::ticker(0ms), std::invalid_argument);
    CHECK_THROWS_AS(weft::ticker(-1s), std::invalid_argument);
    CHECK_THROWS_WITH(weft::ticker(0ns), "weft::ticker: the period must be positive");
  });
}

TEST_CASE("a moved-from ticker is stopped, the destructor stops the ticks") {
  test::for_each_workers([](unsigned) {
    weft::chan<clk::time_point> c;
    {
      weft::ticker a(1ms);
      weft::ticker b(std::move(a));
      // NOLINTNEXTLINE(bugprone-use-after-move): a moved-from ticker is stopped, under test
      CHECK(a.c() == weft::chan<clk::time_point>::nil());
      a.stop();  // harmless
      c = b.c();
      (void)c.recv();  // b ticks
      weft::ticker d(1h);
      d = std::move(b);  // stops d's own timer, takes b's
      (void)c.recv();
    }
    (void)weft::select(weft::recv_case(c), weft::default_case());
    weft::sleep_for(5ms);  // probe: the destroyed ticker sends nothing
    CHECK(c.size() == 0);
  });
  // Every timer was cancelled, none disposed at shutdown.
  CHECK(weft::detail::last_teardown().timers_disposed == 0);
}

TEST_CASE("a ticker alive at shutdown is disposed, stopping it later is harmless") {
  std::optional<weft::ticker> outer;
  weft::chan<clk::time_point> c;
  weft::options o;
  o.workers = 2;
  weft::run(
      [&] {
        outer.emplace(1ms);
        c = outer->c();
        (void)c.recv();
      },
      o);
  test::check_teardown();
  CHECK(weft::detail::last_teardown().timers_disposed == 1);
  outer->stop();  // no runtime: nothing to cancel
  weft::run(
      [&] {
        outer->stop();  // a later runtime: not its timer
        weft::ticker fresh(1ms);
        (void)fresh.c().recv();
      },
      o);
  test::check_teardown();
  CHECK(weft::detail::last_teardown().timers_disposed == 0);
  outer.reset();
  CHECK(c.capacity() == 1);  // our handle keeps the channel
}

TEST_CASE(
    "a plain thread's pending after()s are disposed at shutdown, it uses after() again in a later "
    "run") {
  // The thread keeps a batch of its after() timers across the two runs,
  // and holds their channels until each run has ended (a channel's last
  // handle going would take its timer off at once).
  weft::chan<int> go_on(1), done(1);
  std::thread t([&] {
    weft::chan<clk::time_point> pending, again;
    for (int run = 0; run < 2; ++run) {
      (void)go_on.recv();
      pending = weft::after(std::chrono::hours(1));  // batched, never fires
      again = weft::after(std::chrono::hours(1));    // joins the same batch
      const auto t0 = clk::now();
      const clk::time_point fired = *weft::after(200us).recv();
      done.send(fired >= t0 + 200us ? 1 : 0);
    }
    (void)go_on.recv();
  });
  weft::options o;
  o.workers = 2;
  for (int run = 0; run < 2; ++run) {
    CAPTURE(run);
    int ok = 0;
    weft::run(
        [&] {
          go_on.send(1);
          ok = *done.recv();
        },
        o);
    test::check_teardown();
    CHECK(ok == 1);
    CHECK(weft::detail::last_teardown().timers_disposed >= 1);  // the 1h batch
  }
  go_on.send(1);
  t.join();
}

TEST_CASE("a ticker can be stopped from a plain thread") {
  test::for_each_workers([](unsigned) {
    weft::ticker tk(1ms);
    weft::chan<clk::time_point> c = tk.c();
    (void)c.recv();
    std::thread t([&] { tk.stop(); });
    weft::blocking([&] { t.join(); });
    (void)weft::select(weft::recv_case(c), weft::default_case());
    weft::sleep_for(5ms);  // probe
    CHECK(c.size() == 0);
  });
  CHECK(weft::detail::last_teardown().timers_disposed == 0);
}

TEST_SUITE_END();
