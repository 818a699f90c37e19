// foreign_test.cpp: plain threads (threads the runtime did not start) and
// the runtime's lifetime as they see it: channels and go() across and
// between runs, deadlock parties.

#include <atomic>
#include <chrono>
#include <future>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

TEST_SUITE_BEGIN("foreign");

namespace {

constexpr unsigned rotation[] = {1, 2, 8};

}  // namespace

// Plain threads block on channels (waiter::prepare registers them as
// parties), wake fibers (ready from a plain thread), call go() and stats()
// while the main thread starts and stops runtimes back to back: each of
// these reads the scheduler that run() creates and deletes (runtime.cpp L1).
// Under TSan a read outside a pin is a race on g_sched; under ASan a
// use-after-free.
TEST_CASE("plain threads use channels, go and stats while runs start and stop") {
  weft::chan<int> ping, pong;  // unbuffered: every operation blocks
  weft::chan<int> to_fiber;    // a plain thread sends, fibers receive
  std::atomic<bool> stop{false};
  std::thread a([&] {
    for (int i = 0; !stop.load(); ++i) {
      ping.send(i);
      pong.recv();
    }
    ping.close();
  });
  std::thread b([&] {
    while (auto v = ping.recv()) pong.send(*v);
  });
  std::thread feeder([&] {
    try {
      for (;;) to_fiber.send(1);
    } catch (const weft::closed_channel&) {
    }
  });
  std::atomic<std::uint64_t> spawned{0};
  std::thread spawner([&] {
    while (!stop.load()) {
      try {
        weft::go([] {});
        spawned.fetch_add(1);
      } catch (const std::logic_error&) {
        // between runs, or while one shuts down
      }
      (void)weft::stats();
      std::this_thread::yield();
    }
  });
  const int runs = static_cast<int>(test::scaled(60, 3));
  int received = 0;
  for (int r = 0; r < runs; ++r) {
    CAPTURE(r);
    weft::options o;
    o.workers = rotation[r % 3];
    weft::run(
        [&] {
          for (int i = 0; i < 3; ++i) received += to_fiber.recv().value_or(0);
        },
        o);
    test::check_teardown();
  }
  CHECK(received == 3 * runs);
  stop = true;
  to_fiber.close();
  a.join();
  b.join();
  feeder.join();
  spawner.join();
}

// A plain thread sets deadlines (arming the poller's timers) and closes
// connections (cancelling them, waking waiters) while runs start and stop:
// each touches the poller of a runtime that run() may be destroying
// (runtime.cpp L1, netpoll.cpp N6).
TEST_CASE("plain threads set deadlines and close connections while runs start and stop") {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> rounds{0};
  std::thread plain([&] {
    auto ln = weft::net::listen("127.0.0.1:0");
    const std::string addr = "127.0.0.1:" + std::to_string(ln.port());
    while (!stop.load()) {
      weft::net::conn c = weft::net::dial(addr);
      weft::net::conn s = ln.accept();
      for (int i = 0; i < 20; ++i) {
        const auto t =
            std::chrono::steady_clock::now() + std::chrono::hours(1) + std::chrono::milliseconds(i);
        c.set_read_deadline(t);
        s.set_write_deadline(t);
      }
      c.close();
      s.close();
      rounds.fetch_add(1);
    }
  });
  const int runs = static_cast<int>(test::scaled(40, 2));
  for (int r = 0; r < runs; ++r) {
    CAPTURE(r);
    weft::options o;
    o.workers = rotation[r % 3];
    const std::uint64_t before = rounds.load();
    // Stay in the run until the plain thread has been through a round, so
    // its calls fall inside runs as well as between them.
    weft::run(
        [&] {
          while (rounds.load() == before) weft::sleep_for(std::chrono::milliseconds(1));
        },
        o);
    // Not check_teardown: deadlines of connections that outlive a run leave
    // their timers in its heap, which run() drops (timers_pending).
    const weft::detail::teardown_report t = weft::detail::last_teardown();
    CHECK(t.fiber_records_live == 0);
    CHECK(t.stacks_out == 0);
    CHECK(t.threads_alive == 0);
  }
  stop = true;
  plain.join();
}

// A thread that existed before run() and calls into weft during the run is
// a possible party while it is alive, whatever the call: here one that
// neither blocks nor wakes anyone, after which the thread does plain work
// (a sleep: the probe that no deadlock is reported meanwhile) and then
// sends what main waits for.
TEST_CASE("a thread that existed before run is a party once it calls in, even without blocking") {
  using namespace std::chrono_literals;
  struct op {
    const char* name;
    void (*call)(weft::chan<int>&);
  };
  static weft::mutex mu;
  static weft::wait_group wg;
  static weft::condition_variable cv;
  const op ops[] = {
      {"buffered send", [](weft::chan<int>& c) { c.send(1); }},
      {"buffered recv", [](weft::chan<int>& c) { (void)c.recv(); }},
      {"close", [](weft::chan<int>& c) { c.close(); }},
      {"ready select", [](weft::chan<int>& c) { weft::select(weft::send_case(c, 1)); }},
      {"select taking its default",
       [](weft::chan<int>& c) { weft::select(weft::recv_case(c), weft::default_case()); }},
      {"range-for over a closed channel",
       [](weft::chan<int>& c) {
         c.close();
         for (int v : c) (void)v;
       }},
      {"mutex lock", [](weft::chan<int>&) { std::lock_guard<weft::mutex> g(mu); }},
      {"wait_group add and done",
       [](weft::chan<int>&) {
         wg.add(1);
         wg.done();
       }},
      {"condition_variable notify", [](weft::chan<int>&) { cv.notify_all(); }},
  };
  for (std::size_t i = 0; i < std::size(ops); ++i) {
    const op& o = ops[i];
    const unsigned w = rotation[i % 3];
    const std::string name = o.name;
    CAPTURE(name);
    CAPTURE(w);
    weft::chan<int> own(1), result;
    if (name == "buffered recv") own.send(7);
    std::atomic<int> step{0};
    std::thread helper([&] {
      while (step.load() != 1) std::this_thread::yield();
      o.call(own);
      step.store(2);
      // Once main waits for the result, the detector has every reason to
      // report a deadlock but this thread; give it twice its 100 ms bound.
      while (weft::detail::chan_access::waiting(result, false) == 0) {
        std::this_thread::sleep_for(1ms);
      }
      std::this_thread::sleep_for(200ms);
      result.send(42);
    });
    int got = 0;
    bool deadlock = false;
    try {
      weft::options opts;
      opts.workers = w;
      weft::run(
          [&] {
            step.store(1);
            while (step.load() != 2) weft::sleep_for(1ms);
            got = result.recv().value_or(-1);
          },
          opts);
    } catch (const weft::deadlock_error&) {
      deadlock = true;
      (void)result.recv();  // let the helper finish
    }
    helper.join();
    CHECK_FALSE(deadlock);
    CHECK(got == (deadlock ? 0 : 42));
  }
}

// Registration is per run: a thread that called in during an earlier run
// only is ignored again, like any thread that existed before this one.
TEST_CASE("a thread that called in during an earlier run only is not a party of the next") {
  weft::chan<int> c(1);
  std::atomic<int> step{0};
  std::promise<void> finish;
  std::shared_future<void> done = finish.get_future().share();
  std::thread helper([&] {
    while (step.load() != 1) std::this_thread::yield();
    c.send(1);
    step.store(2);
    done.wait();  // alive through the next run, without calling in
  });
  weft::options o;
  o.workers = 2;
  weft::run(
      [&] {
        step.store(1);
        while (step.load() != 2) weft::sleep_for(std::chrono::milliseconds(1));
      },
      o);
  CHECK_THROWS_AS(weft::run([] { weft::chan<int>().recv(); }, o), weft::deadlock_error);
  finish.set_value();
  helper.join();
}

TEST_SUITE_END();
