// timer_abandon_test.cpp: an after() whose channel loses its last handle
// gives up its timer at once (runtime/timer_chan.cpp, "Abandoned timers").

#include <atomic>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
using weft::detail::timers_live;

TEST_SUITE_BEGIN("timer_abandon");

TEST_CASE("an after() whose last handle goes leaves no live timer behind") {
  test::for_each_workers([](unsigned) {
    CHECK(timers_live() == 0);
    {
      std::vector<weft::chan<clk::time_point>> held;
      for (int i = 0; i < 1000; ++i) held.push_back(weft::after(1h));  // batched
      CHECK(timers_live() >= 1);
    }
    CHECK(timers_live() == 0);

    // Copies: the timer stays while any handle does.
    weft::chan<clk::time_point> a = weft::after(1h);
    weft::chan<clk::time_point> b = a;
    a = weft::chan<clk::time_point>::nil();
    CHECK(timers_live() == 1);
    b = weft::chan<clk::time_point>::nil();
    CHECK(timers_live() == 0);

    // A select loop whose timeouts never fire.
    weft::chan<int> ready(1);
    for (int i = 0; i < 10000; ++i) {
      ready.send(i);
      CHECK(weft::select(weft::recv_case(ready), weft::recv_case(weft::after(1h))) == 0);
    }
    CHECK(timers_live() == 0);

    // Single (short) timers: each fired or was taken back.
    for (int i = 0; i < 1000; ++i) (void)weft::after(30us);
    CHECK(timers_live() == 0);

    // From a plain thread.
    std::size_t on_thread = 1;
    std::thread t([&] {
      for (int i = 0; i < 1000; ++i) (void)weft::after(std::chrono::seconds(1 + i));
      on_thread = timers_live();
    });
    weft::blocking([&] { t.join(); });
    CHECK(on_thread == 0);
  });
}

TEST_CASE("handles dropped on other threads while their timers fire: kept ones still deliver") {
  const int each = static_cast<int>(test::scaled(3000, 10));
  test::for_each_workers([&](unsigned) {
    weft::chan<weft::chan<clk::time_point>> handoff(64);
    std::atomic<int> received{0}, kept{0};
    weft::wait_group wg;
    for (int p = 0; p < 3; ++p) {
      wg.add(2);
      weft::go([&, p] {
        for (int i = 0; i < each; ++i) {
          // 64 us to 1 ms: batched, some fire while their handles are dropped.
          handoff.send(weft::after(std::chrono::microseconds(64 + (i * 37 + p * 101) % 936)));
        }
        wg.done();
      });
      weft::go([&, p] {
        for (int i = 0; i < each; ++i) {
          weft::chan<clk::time_point> c = *handoff.recv();
          if ((i + p) % 3 == 0) {
            kept.fetch_add(1);
            if (c.recv().has_value()) received.fetch_add(1);
          }
        }  // the others are dropped here, fired or not
        wg.done();
      });
    }
    wg.wait();
    CHECK(received.load() == kept.load());
    CHECK(timers_live() == 0);
  });
}

TEST_CASE("abandoned after()s do not hide a deadlock") {
  for (unsigned w : {1u, 2u, 8u}) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    CHECK_THROWS_AS(weft::run(
                        [] {
                          {
                            auto a = weft::after(1h);
                            auto b = weft::after(2h);
                            weft::chan<int> ready(1);
                            ready.send(1);
                            (void)weft::select(weft::recv_case(ready),
                                               weft::recv_case(weft::after(3h)));
                          }
                          weft::chan<int>().recv();  // nobody will ever send
                        },
                        o),
                    weft::deadlock_error);
    test::check_teardown();
  }
}

TEST_SUITE_END();
