// signal_test.cpp: weft::signal::notify and stop.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "support.hpp"

TEST_SUITE_BEGIN("signal");

namespace {

std::atomic<int> g_handled{0};
void count_signal(int) { g_handled.fetch_add(1); }

bool empty_now(const weft::chan<int>& c) {
  bool got = false;
  weft::select(weft::recv_case(c, [&](std::optional<int>) { got = true; }), weft::default_case());
  return !got;
}

}  // namespace

TEST_CASE("notify delivers a signal sent to the process as a channel value") {
  test::for_each_workers(
      [](unsigned) {
        weft::chan<int> sigs = weft::signal::notify({SIGUSR1, SIGUSR2});
        REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
        CHECK(*sigs.recv() == SIGUSR1);
        REQUIRE(::kill(::getpid(), SIGUSR2) == 0);
        CHECK(*sigs.recv() == SIGUSR2);
        // From a plain thread, and a signal sent to that thread only.
        std::thread([] { REQUIRE(::raise(SIGUSR1) == 0); }).join();
        CHECK(*sigs.recv() == SIGUSR1);
        weft::signal::stop(sigs);
      },
      {1, 2, 8});
}

TEST_CASE("every channel registered for a signal receives it, a stopped one no longer does") {
  test::for_each_workers(
      [](unsigned) {
        weft::chan<int> a = weft::signal::notify({SIGUSR1});
        weft::chan<int> b = weft::signal::notify({SIGUSR1});
        weft::chan<int> other = weft::signal::notify({SIGUSR2});
        REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
        CHECK(*a.recv() == SIGUSR1);
        CHECK(*b.recv() == SIGUSR1);
        weft::signal::stop(a);
        weft::signal::stop(a);  // again: nothing to do
        REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
        CHECK(*b.recv() == SIGUSR1);
        CHECK(empty_now(a));  // b got it in the same delivery a would have
        CHECK(empty_now(other));
        weft::signal::stop(b);
        weft::signal::stop(other);
      },
      {1, 2});
}

TEST_CASE("stop restores the disposition the signal had before notify") {
  struct sigaction sa {
  }, old{};
  sa.sa_handler = &count_signal;
  sigemptyset(&sa.sa_mask);
  REQUIRE(::sigaction(SIGUSR2, &sa, &old) == 0);
  g_handled.store(0);
  weft::run([] {
    weft::chan<int> sigs = weft::signal::notify({SIGUSR2});
    REQUIRE(::kill(::getpid(), SIGUSR2) == 0);
    CHECK(*sigs.recv() == SIGUSR2);
    CHECK(g_handled.load() == 0);
    weft::signal::stop(sigs);
    REQUIRE(::kill(::getpid(), SIGUSR2) == 0);
    while (g_handled.load() == 0) weft::yield();  // the old handler runs in some thread
    CHECK(empty_now(sigs));
  });
  test::check_teardown();
  struct sigaction now {};
  REQUIRE(::sigaction(SIGUSR2, &old, &now) == 0);
  CHECK((now.sa_handler == &count_signal));
}

TEST_CASE("notify refuses signals it cannot deliver, and needs a runtime") {
  weft::run([] {
    CHECK_THROWS_AS(weft::signal::notify({SIGKILL}), std::invalid_argument);
    CHECK_THROWS_AS(weft::signal::notify({SIGSEGV}), std::invalid_argument);
    CHECK_THROWS_AS(weft::signal::notify({0}), std::invalid_argument);
    CHECK_THROWS_AS(weft::signal::notify({SIGUSR1, 1000}), std::invalid_argument);
  });
  CHECK_THROWS_AS(weft::signal::notify({SIGUSR1}), std::logic_error);
}

TEST_CASE("a program waiting on a notified channel at shutdown is unwound cleanly") {
  weft::run([] {
    weft::chan<int> sigs = weft::signal::notify({SIGUSR1});
    weft::go([sigs] { sigs.recv(); });
    while (weft::stats().fibers_parked < 2) weft::yield();  // it and the dispatcher
  });
  test::check_teardown();
  // The registration outlived the run; a later run delivers again.
  weft::run([] {
    weft::chan<int> sigs = weft::signal::notify({SIGUSR1});
    REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
    CHECK(*sigs.recv() == SIGUSR1);
    weft::signal::stop(sigs);
  });
  test::check_teardown();
}

TEST_SUITE_END();
