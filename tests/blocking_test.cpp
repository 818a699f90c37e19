// blocking_test.cpp: weft::blocking() under bursts: calls made while other
// fibers wait run on pool threads (runtime/blocking_pool.cpp), and at the
// thread limit they wait for one instead of aborting the process.

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <thread>

#include "support.hpp"

namespace {

[[gnu::noinline]] int errno_now() { return errno; }

// max_threads_env: WEFT_MAX_THREADS for the runs in one scope.
struct max_threads_env {
  explicit max_threads_env(const char* n) { ::setenv("WEFT_MAX_THREADS", n, 1); }
  ~max_threads_env() { ::unsetenv("WEFT_MAX_THREADS"); }
};

}  // namespace

TEST_SUITE_BEGIN("blocking");

TEST_CASE(
    "a burst of 10,000 blocking() calls (2,000 under the sanitizers) with WEFT_MAX_THREADS=100 "
    "completes every call") {
  max_threads_env env("100");
  test::for_each_workers(
      [](unsigned) {
        // 2,000 calls of 5 ms still queue 20 deep for the ~95 pool threads
        // the limit leaves. Under TSan each parked fiber is a live TSan
        // thread; with 10,000 at once a CI run once reported a race on a
        // context switch's own hand-off record (context.cpp, arrive) that
        // 100 local runs, loaded and perturbed, never showed again.
        constexpr int n = static_cast<int>(test::scaled(10000, 5));
        std::atomic<int> done{0};
        std::atomic<std::uint64_t> peak{0};
        std::atomic<bool> finished{false};
        weft::wait_group wg;
        wg.add(n);
        weft::go([&] {  // the thread count while the burst runs
          while (!finished.load()) {
            const std::uint64_t t = weft::stats().threads;
            std::uint64_t prev = peak.load();
            while (t > prev && !peak.compare_exchange_weak(prev, t)) {
            }
            weft::yield();
          }
        });
        for (int i = 0; i < n; ++i) {
          weft::go([&] {
            weft::blocking([] { ::usleep(5000); });
            done.fetch_add(1);
            wg.done();
          });
        }
        wg.wait();
        finished.store(true);
        CHECK(done.load() == n);
        CAPTURE(peak.load());
        // Workers, spares, pool threads, the poller and sysmon.
        CHECK(peak.load() <= 100 + 2);
        CHECK(weft::detail::blocking_calls_offloaded() > 0);
      },
      {1, 2, 8});
}

TEST_CASE("an offloaded blocking() call returns f's result, exception and errno") {
  test::for_each_workers(
      [](unsigned) {
        std::atomic<bool> stop{false};
        weft::go([&] {  // keeps the worker's queue busy: calls are offloaded
          while (!stop.load()) weft::yield();
        });
        const auto caller = std::this_thread::get_id();
        int on_other_thread = 0;
        for (int i = 0; i < 50; ++i) {
          const int r = weft::blocking([&] {
            on_other_thread += std::this_thread::get_id() != caller;
            errno = ENOENT;
            return -1;
          });
          CHECK(r == -1);
          CHECK(errno_now() == ENOENT);
          int x = 3;
          int& ref = weft::blocking([&]() -> int& { return x; });
          CHECK(&ref == &x);
          CHECK_THROWS_WITH_AS(weft::blocking([]() -> int { throw std::runtime_error("disk"); }),
                               "disk", std::runtime_error);
        }
        stop.store(true);
        CHECK(weft::detail::blocking_calls_offloaded() > 0);
        CHECK(on_other_thread > 0);
      },
      {1});  // one worker: the busy fiber is queued, not stolen
}

TEST_CASE("fibers waiting only for offloaded blocking() calls are not a deadlock") {
  test::for_each_workers(
      [](unsigned) {
        weft::chan<int> done;
        for (int i = 0; i < 2; ++i) {
          weft::go([done] {
            weft::blocking([] { ::usleep(150'000); });
            done.send(1);
          });
        }
        // main parks on the channel; nothing runs, no timer, no descriptor:
        // only the calls in flight can send.
        int got = *done.recv();
        got += *done.recv();
        CHECK(got == 2);
        CHECK(weft::detail::blocking_calls_offloaded() > 0);
      },
      {1});  // one worker: the busy fiber is queued, not stolen
}

TEST_SUITE_END();
