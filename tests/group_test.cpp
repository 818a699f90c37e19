// group_test.cpp: weft::group (Go's errgroup).

#include <atomic>
#include <stdexcept>
#include <string>

#include "net_support.hpp"

TEST_SUITE_BEGIN("group");

using namespace std::chrono_literals;

namespace {
constexpr std::initializer_list<unsigned> workers = {1, 2, 8};
}

TEST_CASE("group::wait returns once every fiber finished, and cancels the group's context") {
  test::for_each_workers(
      [](unsigned) {
        weft::group g;
        std::atomic<int> ran{0};
        const int n = 500;
        for (int i = 0; i < n; ++i) {
          g.go([&] {
            weft::yield();
            ran.fetch_add(1);
          });
        }
        CHECK(!g.ctx().err());
        g.wait();
        CHECK(ran.load() == n);
        CHECK(g.ctx().err() == weft::errc::canceled);
        g.wait();  // again: nothing left, nothing to rethrow
      },
      workers);
}

TEST_CASE("the first exception cancels the siblings and is rethrown by wait, every time") {
  test::for_each_workers(
      [](unsigned) {
        weft::group g;
        std::atomic<int> woken{0};
        const int n = 20;
        for (int i = 0; i < n; ++i) {
          g.go([&] {
            std::error_code ec;
            weft::sleep_for(g.ctx(), 1h, ec);  // until the failure cancels the group
            if (ec == weft::errc::canceled) woken.fetch_add(1);
          });
        }
        weft::chan<int> go_ahead;
        g.go([&] {
          go_ahead.recv();
          throw std::runtime_error("disk on fire");
        });
        g.go([]() -> std::error_code { return {}; });  // a success changes nothing
        go_ahead.send(1);
        for (int k = 0; k < 2; ++k) {
          try {
            g.wait();
            FAIL("wait did not rethrow");
          } catch (const std::runtime_error& e) {
            CHECK(std::string(e.what()) == "disk on fire");
          }
        }
        CHECK(woken.load() == n);
        CHECK(g.ctx().err() == weft::errc::canceled);
      },
      workers);
}

TEST_CASE("a fiber returning an error_code fails the group with system_error") {
  test::for_each_workers(
      [](unsigned) {
        weft::group g;
        g.go([]() -> std::error_code { return std::make_error_code(std::errc::connection_reset); });
        try {
          g.wait();
          FAIL("wait did not rethrow");
        } catch (const std::system_error& e) {
          CHECK(e.code() == std::errc::connection_reset);
        }
      },
      {1, 2});
}

TEST_CASE("a group derives its context from a parent, whose cancellation reaches its fibers") {
  test::for_each_workers(
      [](unsigned) {
        weft::context parent = weft::with_cancel(weft::background());
        weft::group g(parent);
        std::atomic<int> canceled{0};
        for (int i = 0; i < 10; ++i) {
          g.go([&] {
            std::error_code ec;
            weft::sleep_for(g.ctx(), 1h, ec);
            if (ec == weft::errc::canceled) canceled.fetch_add(1);
          });
        }
        while (weft::stats().fibers_parked < 10) weft::yield();
        parent.cancel();
        g.wait();  // no failure: cancellation by the parent is not one
        CHECK(canceled.load() == 10);
      },
      workers);
}

TEST_CASE("a group going out of scope cancels its context and waits for its fibers") {
  test::for_each_workers(
      [](unsigned) {
        std::atomic<int> finished{0};
        {
          weft::group g;
          for (int i = 0; i < 10; ++i) {
            g.go([&] {
              std::error_code ec;
              weft::sleep_for(g.ctx(), 1h, ec);
              finished.fetch_add(1);
            });
          }
          g.go([] { throw std::runtime_error("nobody waits for this"); });
        }
        CHECK(finished.load() == 10);
      },
      workers);
}

TEST_CASE("a group waiting at shutdown is unwound with its fibers, none reaching std::terminate") {
  for (unsigned w : {1u, 2u, 8u}) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    weft::run(
        [] {
          weft::go([] {
            weft::group g;
            for (int i = 0; i < 4; ++i) g.go([] { weft::chan<int>().recv(); });
            g.wait();  // never returns: unwound at shutdown, then ~group waits again
          });
          while (weft::stats().fibers_parked < 5) weft::yield();
        },
        o);
    test::check_teardown();
  }
}

TEST_SUITE_END();
