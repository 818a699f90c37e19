// duration_test.cpp: every call that takes a duration or a time point
// accepts any value without undefined behaviour (weft/time.hpp,
// detail/duration.hpp): NaN throws std::invalid_argument naming the call,
// -infinity and past times expire at once, +infinity and huge values
// saturate to "never".

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>

#include "net_support.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
using fsec = std::chrono::duration<double>;

namespace {

const fsec nan_d(std::numeric_limits<double>::quiet_NaN());
const fsec pos_inf(std::numeric_limits<double>::infinity());
const fsec neg_inf(-std::numeric_limits<double>::infinity());

// throws_invalid: f() throws std::invalid_argument whose what() starts
// with `api`.
template <class F>
bool throws_invalid(F&& f, const std::string& api) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).rfind(api, 0) == 0) return true;
    MESSAGE("wrong message: ", e.what());
    return false;
  }
  return false;
}

// wait_until_parked: poll until `n` fibers are parked.
void wait_until_parked(std::uint64_t n) {
  while (weft::stats().fibers_parked < n) weft::yield();
}

}  // namespace

TEST_SUITE_BEGIN("duration");

TEST_CASE("a NaN duration throws invalid_argument naming the call") {
  test::for_each_workers(
      [](unsigned) {
        CHECK(throws_invalid([] { weft::sleep_for(nan_d); }, "weft::sleep_for"));
        CHECK(throws_invalid([] { (void)weft::after(nan_d); }, "weft::after"));
        CHECK(throws_invalid([] { weft::ticker t(nan_d); }, "weft::ticker"));
        weft::mutex mu;
        weft::condition_variable cv;
        std::unique_lock<weft::mutex> lk(mu);
        const std::string wait_for = "weft::condition_variable::wait_for";
        const std::string wait_until = "weft::condition_variable::wait_until";
        CHECK(throws_invalid([&] { (void)cv.wait_for(lk, nan_d); }, wait_for));
        CHECK(
            throws_invalid([&] { (void)cv.wait_for(lk, nan_d, [] { return false; }); }, wait_for));
        CHECK(throws_invalid([&] { (void)cv.wait_until(lk, clk::now() + nan_d); }, wait_until));
        CHECK(throws_invalid(
            [&] { (void)cv.wait_until(lk, std::chrono::system_clock::now() + nan_d); },
            wait_until));
        CHECK(throws_invalid(
            [&] {
              (void)cv.wait_until(lk, std::chrono::system_clock::now() + nan_d,
                                  [] { return false; });
            },
            wait_until));
        CHECK(lk.owns_lock());  // a rejected wait never released the lock
      },
      {1, 2});
  // Outside a runtime the duration is checked first, too.
  CHECK(throws_invalid([] { weft::sleep_for(nan_d); }, "weft::sleep_for"));
  CHECK(throws_invalid([] { (void)weft::after(nan_d); }, "weft::after"));
}

TEST_CASE("-infinity and negative durations expire at once") {
  test::for_each_workers(
      [](unsigned) {
        weft::sleep_for(neg_inf);
        weft::sleep_for(std::chrono::hours::min());
        weft::sleep_until(clk::time_point::min());
        CHECK(weft::after(neg_inf).size() == 1);
        CHECK(weft::after(std::chrono::nanoseconds::min()).size() == 1);
        CHECK(weft::after(std::chrono::duration<float, std::milli>(-0.5f)).size() == 1);
        CHECK_THROWS_AS([] { weft::ticker t(neg_inf); }(), std::invalid_argument);
        weft::mutex mu;
        weft::condition_variable cv;
        std::unique_lock<weft::mutex> lk(mu);
        CHECK(cv.wait_for(lk, neg_inf) == std::cv_status::timeout);
        CHECK(cv.wait_for(lk, std::chrono::hours::min()) == std::cv_status::timeout);
        CHECK(cv.wait_until(lk, clk::time_point::min()) == std::cv_status::timeout);
        CHECK(cv.wait_until(lk, std::chrono::system_clock::now() + neg_inf) ==
              std::cv_status::timeout);
        using hours_tp = std::chrono::time_point<std::chrono::system_clock, std::chrono::hours>;
        CHECK(cv.wait_until(lk, hours_tp::min()) == std::cv_status::timeout);
        CHECK(!cv.wait_until(lk, hours_tp::min(), [] { return false; }));
        CHECK(lk.owns_lock());
      },
      {1, 2});
}

TEST_CASE("+infinity and huge durations saturate: the timer never fires") {
  test::for_each_workers([](unsigned) {
    std::atomic<int> woke{0};
    weft::go([&] {
      weft::sleep_for(pos_inf);
      woke.fetch_add(1);
    });
    weft::go([&] {
      weft::sleep_for(std::chrono::hours::max());
      woke.fetch_add(1);
    });
    weft::go([&] {
      weft::sleep_for(std::chrono::duration<std::uint64_t, std::nano>::max());
      woke.fetch_add(1);
    });
    wait_until_parked(3);  // all three sleep (none returned at once)
    auto a = weft::after(pos_inf);
    auto b = weft::after(std::chrono::hours::max());
    auto c = weft::after(std::chrono::duration<long double, std::ratio<86400>>(1e30L));
    weft::ticker t(pos_inf);
    weft::sleep_for(5ms);  // probe: nothing fires
    CHECK(woke.load() == 0);
    CHECK(a.size() + b.size() + c.size() + t.c().size() == 0);
  });  // the sleepers are unwound at shutdown
}

TEST_CASE("a wait with an infinite or huge timeout ends when notified") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    weft::condition_variable cv;
    bool ready = false;
    std::atomic<int> done{0};
    const auto waiter = [&](auto wait) {
      weft::go([&, wait] {
        bool woke = false;
        {
          std::unique_lock<weft::mutex> lk(mu);
          woke = wait(lk);
        }
        // Counted once mu is released: the test's frame (and mu) may go
        // as soon as the count reaches 6.
        if (woke) done.fetch_add(1);
      });
    };
    waiter([&](auto& lk) { return cv.wait_for(lk, pos_inf, [&] { return ready; }); });
    waiter([&](auto& lk) {
      return cv.wait_for(lk, std::chrono::hours::max(), [&] { return ready; });
    });
    waiter([&](auto& lk) {
      return cv.wait_until(lk, std::chrono::system_clock::now() + pos_inf, [&] { return ready; });
    });
    waiter([&](auto& lk) {
      return cv.wait_until(lk, std::chrono::system_clock::time_point::max(), [&] { return ready; });
    });
    waiter([&](auto& lk) {
      using hours_tp = std::chrono::time_point<std::chrono::system_clock, std::chrono::hours>;
      return cv.wait_until(lk, hours_tp::max(), [&] { return ready; });
    });
    waiter(
        [&](auto& lk) { return cv.wait_until(lk, clk::time_point::max(), [&] { return ready; }); });
    wait_until_parked(6);
    {
      std::lock_guard<weft::mutex> g(mu);
      ready = true;
    }
    cv.notify_all();
    while (done.load() < 6) weft::yield();
  });
}

TEST_CASE("run accepts hand-off times too long to represent in nanoseconds") {
  weft::options o;
  o.workers = 2;
  o.blocking_handoff = std::chrono::microseconds::max();
  o.hog_handoff = std::chrono::milliseconds::max();
  int sum = 0;
  weft::run(
      [&] {
        weft::chan<int> c;
        weft::go([c] { c.send(1); });
        sum = *c.recv();
        weft::blocking([] {});
      },
      o);
  test::check_teardown();
  CHECK(sum == 1);
}

TEST_CASE("net deadlines and dial timeouts at the extremes") {
  nt::net_runs(
      [](unsigned) {
        weft::net::listener l = weft::net::listen("127.0.0.1:0");
        const std::string addr = "127.0.0.1:" + std::to_string(l.port());
        // A negative timeout expires at once, milliseconds::min() included.
        for (auto t : {std::chrono::milliseconds(-1), std::chrono::milliseconds::min()}) {
          try {
            (void)weft::net::dial(addr, t);
            FAIL("dial with a negative timeout connected");
          } catch (const std::system_error& e) {
            CHECK(nt::code_of(e) == std::errc::timed_out);
          }
        }
        weft::net::conn c = weft::net::dial(addr, std::chrono::milliseconds::max());
        weft::net::conn s = l.accept();
        c.set_read_deadline(clk::time_point::min());
        std::byte buf[1];
        try {
          (void)c.read(buf);
          FAIL("read past a time_point::min() deadline");
        } catch (const std::system_error& e) {
          CHECK(nt::code_of(e) == std::errc::timed_out);
        }
        try {
          weft::net::wait_readable(c.fd(), clk::time_point::min());
          FAIL("wait_readable past a time_point::min() deadline");
        } catch (const std::system_error& e) {
          CHECK(nt::code_of(e) == std::errc::timed_out);
        }
        c.set_deadline(clk::time_point::max());  // clears it
        s.write(nt::bytes("x"));
        CHECK(c.read(buf) == 1);
      },
      {1, 2});
}

TEST_SUITE_END();
