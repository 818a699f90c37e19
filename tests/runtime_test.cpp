// runtime_test.cpp: run, go, yield, ids, options, shutdown, exceptions.

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

TEST_SUITE_BEGIN("runtime");

TEST_CASE("run returns main's int result, and 0 for a void main") {
  weft::options o;
  o.workers = 2;
  CHECK(weft::run([] { return 42; }, o) == 42);
  CHECK(weft::run([] {}, o) == 0);
  test::check_teardown();
}

TEST_CASE("run can be called again after it returned") {
  for (int i = 0; i < 5; ++i) {
    CAPTURE(i);
    weft::options o;
    o.workers = 1 + i % 3;
    CHECK(weft::run([i] { return i; }, o) == i);
    test::check_teardown();
  }
}

TEST_CASE("an exception escaping main is rethrown by run after shutdown") {
  test::for_each_workers([](unsigned) {}, {1});
  struct boom : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  weft::options o;
  o.workers = 2;
  std::atomic<bool> child_unwound{false};
  CHECK_THROWS_AS(weft::run(
                      [&] {
                        struct flag {
                          std::atomic<bool>* f;
                          ~flag() { f->store(true); }
                        };
                        weft::go([&child_unwound] {
                          flag f{&child_unwound};
                          weft::mutex mu;
                          weft::condition_variable cv;
                          std::unique_lock<weft::mutex> lk(mu);
                          cv.wait(lk);  // forever: unwound at shutdown
                        });
                        weft::yield();
                        throw boom("main failed");
                      },
                      o),
                  boom);
  CHECK(child_unwound.load());
  test::check_teardown();
}

TEST_CASE("run while a runtime is running throws logic_error, from a fiber or another thread") {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        CHECK_THROWS_AS(weft::run([] {}), std::logic_error);
        std::string msg;
        std::thread t([&] {
          try {
            weft::run([] {});
          } catch (const std::logic_error& e) {
            msg = e.what();
          }
        });
        t.join();
        CHECK(msg.find("already running") != std::string::npos);
      },
      o);
  test::check_teardown();
}

TEST_CASE("go with no runtime running throws logic_error") {
  CHECK_THROWS_AS(weft::go([] {}), std::logic_error);
  try {
    weft::go([] {});
  } catch (const std::logic_error& e) {
    CHECK(std::string(e.what()).find("no runtime") != std::string::npos);
  }
}

TEST_CASE("bad options are refused with a message naming the option") {
  auto message = [](weft::options o) -> std::string {
    try {
      weft::run([] {}, o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  weft::options o;
  o.workers = 100000;
  CHECK(message(o).find("options.workers = 100000") != std::string::npos);
  o = {};
  o.workers = 1;
  o.stack_size = 100;
  CHECK(message(o).find("options.stack_size") != std::string::npos);
  o = {};
  o.workers = 1;
  o.blocking_handoff = std::chrono::microseconds(0);
  CHECK(message(o).find("blocking_handoff") != std::string::npos);
  o = {};
  o.workers = 1;
  o.hog_handoff = std::chrono::milliseconds(-5);
  CHECK(message(o).find("hog_handoff") != std::string::npos);
  // Nothing was started by the refused calls: a good run still works.
  o = {};
  o.workers = 1;
  CHECK(weft::run([] { return 7; }, o) == 7);
}

TEST_CASE("WEFT_WORKERS sets the processor count when options.workers is 0") {
  ::setenv("WEFT_WORKERS", "3", 1);
  std::uint64_t seen = 0;
  weft::run([&] { seen = weft::stats().workers; });
  CHECK(seen == 3);
  ::setenv("WEFT_WORKERS", "lots", 1);
  CHECK_THROWS_AS(weft::run([] {}), std::invalid_argument);
  ::unsetenv("WEFT_WORKERS");
}

TEST_CASE("fiber ids are unique and non-zero, 0 and in_fiber()==false outside a fiber") {
  CHECK(weft::this_fiber_id() == 0);
  CHECK_FALSE(weft::in_fiber());
  test::for_each_workers([](unsigned) {
    CHECK(weft::in_fiber());
    constexpr int n = 1000;
    std::vector<std::uint64_t> ids(n);
    weft::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i) {
      weft::go([&, i] {
        ids[i] = weft::this_fiber_id();
        wg.done();
      });
    }
    wg.wait();
    std::set<std::uint64_t> unique(ids.begin(), ids.end());
    unique.insert(weft::this_fiber_id());
    CHECK(unique.size() == n + 1);
    CHECK(unique.count(0) == 0);
  });
}

TEST_CASE("go decay-copies its arguments and accepts move-only ones") {
  test::for_each_workers([](unsigned) {
    weft::wait_group wg;
    int seen = 0;
    std::string s = "abc";
    auto p = std::make_unique<int>(5);
    wg.add(1);
    weft::go(
        [&](std::string copy, std::unique_ptr<int> q) {
          copy += "!";
          seen = *q + static_cast<int>(copy.size());
          wg.done();
        },
        s, std::move(p));
    wg.wait();
    CHECK(seen == 9);
    CHECK(s == "abc");
  });
}

TEST_CASE("a closure too big for the record's inline storage still runs and is freed") {
  test::for_each_workers([](unsigned) {
    std::array<std::uint64_t, 64> big{};
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = i;
    std::uint64_t sum = 0;
    weft::wait_group wg;
    wg.add(1);
    weft::go([big, &sum, &wg] {
      for (auto v : big) sum += v;
      wg.done();
    });
    wg.wait();
    CHECK(sum == 63 * 64 / 2);
  });
}

TEST_CASE("yield lets the other runnable fibers of the worker run") {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        std::vector<int> order;
        weft::wait_group wg;
        wg.add(2);
        for (int id = 0; id < 2; ++id) {
          weft::go([&, id] {
            for (int i = 0; i < 3; ++i) {
              order.push_back(id);
              weft::yield();
            }
            wg.done();
          });
        }
        wg.wait();
        // Like Go, the fiber started last runs first (it takes the `next`
        // slot); after that the two alternate at every yield.
        REQUIRE(order.size() == 6);
        for (std::size_t i = 1; i < order.size(); ++i) CHECK(order[i] != order[i - 1]);
      },
      o);
  test::check_teardown();
}

TEST_CASE("yield outside a fiber yields the thread and returns") {
  weft::yield();
  CHECK_FALSE(weft::in_fiber());
}

TEST_CASE("go from a foreign thread while the runtime runs queues the fiber globally") {
  test::for_each_workers([](unsigned) {
    constexpr int n = 200;
    std::atomic<int> ran{0};
    weft::wait_group wg;
    wg.add(n);
    std::thread t([&] {
      for (int i = 0; i < n; ++i) {
        weft::go([&] {
          CHECK(weft::in_fiber());
          ran.fetch_add(1);
          wg.done();
        });
      }
    });
    wg.wait();
    t.join();
    CHECK(ran.load() == n);
  });
}

namespace {
struct counter {
  std::atomic<int>* n;
  explicit counter(std::atomic<int>* c) : n(c) {}
  counter(const counter& o) : n(o.n) {}
  ~counter() { n->fetch_add(1); }
};
// live: +1 per object constructed, -1 per object destroyed.
struct live {
  std::atomic<int>* n;
  explicit live(std::atomic<int>* c) : n(c) { n->fetch_add(1); }
  live(const live& o) : n(o.n) { n->fetch_add(1); }
  ~live() { n->fetch_sub(1); }
};
}  // namespace

TEST_CASE("at shutdown parked fibers are unwound and fibers that never started are dropped") {
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    std::atomic<int> unwound{0};
    std::atomic<int> after_wait{0};
    std::atomic<int> queued_live{0};
    std::atomic<int> queued_ran{0};
    weft::mutex mu;
    weft::condition_variable cv;
    constexpr int parked = 50;
    constexpr int queued = 20;
    weft::options o;
    o.workers = w;
    // No preemption: on a loaded machine main's thread can lose its CPU for
    // longer than half the hog hand-off, and sysmon's request would then
    // make main yield in go() to the fibers it queued.
    o.hog_handoff = std::chrono::hours(1);
    weft::run(
        [&] {
          weft::wait_group wg;
          wg.add(parked);
          for (int i = 0; i < parked; ++i) {
            weft::go([&] {
              counter c(&unwound);
              std::unique_lock<weft::mutex> lk(mu);
              wg.done();
              cv.wait(lk);  // never notified
              after_wait.fetch_add(1);
            });
          }
          wg.wait();
          { std::lock_guard<weft::mutex> lk(mu); }  // the last waiter has parked
          // Queued last, behind main: on one worker they never start.
          for (int i = 0; i < queued; ++i) {
            weft::go([l = live(&queued_live), &queued_ran] { queued_ran.fetch_add(1); });
          }
        },
        o);
    CHECK(unwound.load() == parked);
    CHECK(after_wait.load() == 0);
    // Every queued closure was destroyed, run or not.
    CHECK(queued_live.load() == 0);
    if (w == 1) CHECK(queued_ran.load() == 0);
    test::check_teardown();
  }
}

TEST_CASE("a fiber parked inside a catch block keeps its own exception state") {
  test::for_each_workers([](unsigned) {
    weft::wait_group wg;
    weft::mutex mu;
    weft::condition_variable cv;
    bool go_on = false;
    std::string seen;
    wg.add(2);
    weft::go([&] {
      try {
        throw std::runtime_error("first");
      } catch (const std::exception&) {
        {
          std::unique_lock<weft::mutex> lk(mu);
          cv.wait(lk, [&] { return go_on; });
        }
        // Still inside our handler, perhaps on another thread: rethrow ours.
        try {
          throw;
        } catch (const std::runtime_error& again) {
          seen = again.what();
        }
      }
      wg.done();
    });
    weft::go([&] {
      try {
        throw std::logic_error("second");
      } catch (const std::exception&) {
        std::lock_guard<weft::mutex> lk(mu);
        go_on = true;
        cv.notify_all();
      }
      CHECK(std::uncaught_exceptions() == 0);
      wg.done();
    });
    wg.wait();
    CHECK(seen == "first");
  });
}

TEST_CASE("an idle runtime uses almost no CPU") {
  for (unsigned w : {1u, 2u, 8u}) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    std::int64_t used = 0;
    weft::run(
        [&] {
          // Wake every worker once so all threads exist, then go idle.
          weft::wait_group wg;
          wg.add(static_cast<int>(w) * 4);
          for (unsigned i = 0; i < w * 4; ++i) weft::go([&] { wg.done(); });
          wg.wait();
          const std::int64_t t0 = test::process_cpu_ns();
          weft::sleep_for(std::chrono::seconds(1));  // probe: nothing may spin meanwhile
          used = test::process_cpu_ns() - t0;
        },
        o);
    CHECK_MESSAGE(used < 50'000'000, "CPU used over an idle second: ", used / 1000000, " ms");
    test::check_teardown();
  }
}

namespace {
// Opaque to the optimiser, as code that reads per-thread state after a call
// that may switch must be (see README "Fibers and threads").
[[gnu::noinline]] int read_errno() { return errno; }
[[gnu::noinline]] void write_errno(int v) { errno = v; }
[[gnu::noinline]] long os_tid() { return static_cast<long>(::syscall(SYS_gettid)); }
}  // namespace

TEST_CASE("a fiber that migrates between workers sees the new worker and keeps its own errno") {
  // Fibers bounce between two workers; after every suspension the
  // runtime's idea of the current worker must be the thread the fiber
  // actually runs on, and errno must be the fiber's own (swapped with the
  // context, like a thread's), even though other fibers set theirs
  // meanwhile on the same threads.
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        constexpr int fibers = 8;
        std::atomic<int> migrations{0};
        std::atomic<int> wrong_worker{0};
        std::atomic<int> wrong_errno{0};
        std::atomic<bool> stop{false};
        weft::wait_group wg;
        wg.add(fibers);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        for (int i = 0; i < fibers; ++i) {
          weft::go([&, i] {
            long last = os_tid();
            while (!stop.load() && std::chrono::steady_clock::now() < deadline) {
              write_errno(1000 + i);
              weft::yield();
              weft::sleep_for(std::chrono::microseconds(50));
              const long now = os_tid();
              if (weft::detail::worker_tid() != now) wrong_worker.fetch_add(1);
              if (read_errno() != 1000 + i) wrong_errno.fetch_add(1);
              if (now != last) {
                if (migrations.fetch_add(1) > 100) stop = true;
                last = now;
              }
            }
            wg.done();
          });
        }
        wg.wait();
        CHECK(migrations.load() > 0);
        CHECK(wrong_worker.load() == 0);
        CHECK(wrong_errno.load() == 0);
      },
      o);
  test::check_teardown();
}

TEST_SUITE_END();
