// stress_test.cpp: sizes that matter in production, scaled for CI.

#include <atomic>
#include <vector>
#include <weft/chan.hpp>

#include "support.hpp"

namespace weft::detail {
// Internal (runtime/asym_fence.hpp): the one-way switch to symmetric fences
// that a slow membarrier triggers. Each test case runs in its own process.
void asym_force_symmetric() noexcept;
bool asym_symmetric_for_test() noexcept;
}  // namespace weft::detail

TEST_SUITE_BEGIN("stress");

TEST_CASE("a million fibers parked at once, then all released") {
  // 1,000,000 simultaneously parked fibers on a stock kernel
  // (vm.max_map_count 65530): slab stacks, guard pages then canaries.
  // Under the sanitizers: ASan fibers need far bigger stacks, and TSan maps
  // a shadow stack per fiber (one mapping each), so fewer.
  const std::uint64_t n = test::scaled(1000000, 200);
  weft::options o;
  o.workers = 2;
  o.stack_size = 16 * 1024;
  std::atomic<std::uint64_t> finished{0};
  weft::run(
      [&] {
        weft::mutex mu;
        weft::condition_variable cv;
        bool release = false;
        weft::wait_group parked, done;
        parked.add(static_cast<int>(n));
        done.add(static_cast<int>(n));
        for (std::uint64_t i = 0; i < n; ++i) {
          weft::go([&] {
            std::unique_lock<weft::mutex> lk(mu);
            parked.done();
            cv.wait(lk, [&] { return release; });
            lk.unlock();
            finished++;
            done.done();
          });
        }
        parked.wait();
        { std::lock_guard<weft::mutex> lk(mu); }
        CHECK(weft::stats().fibers_parked >= n - 1);
        {
          std::lock_guard<weft::mutex> lk(mu);
          release = true;
        }
        cv.notify_all();
        done.wait();
      },
      o);
  CHECK(finished.load() == n);
  test::check_teardown();
}

// Under the sanitizers, 10,000 leaves: ASan's stack-use-after-return mode
// gives every fiber its own fake stack, mapped at its first instrumented
// frame and unmapped at its exit. The 100,000 tree took 3-4.5 minutes in
// ASan beside the loaded suite (6 s with detect_stack_use_after_return=0),
// against the watchdog's 270 s.
TEST_CASE(
    "fibers spawning fibers: a tree of 100,000 (10,000 sanitized) completes on every worker "
    "count") {
  test::for_each_workers([](unsigned) {
    constexpr int levels = test::sanitized ? 4 : 5;
    const long want = test::sanitized ? 10000 : 100000;
    std::atomic<long> leaves{0};
    weft::wait_group wg;
    struct tree {
      static void grow(int depth, std::atomic<long>& leaves, weft::wait_group& wg) {
        if (depth == 0) {
          leaves++;
          wg.done();
          return;
        }
        wg.add(10);
        for (int i = 0; i < 10; ++i)
          weft::go([depth, &leaves, &wg] { grow(depth - 1, leaves, wg); });
        wg.done();
      }
    };
    wg.add(1);
    weft::go([&] { tree::grow(levels, leaves, wg); });
    wg.wait();
    CHECK(leaves.load() == want);
  });
}

TEST_CASE("with symmetric fences (a host with slow IPIs), no wakeup or stolen fiber is lost") {
  weft::detail::asym_force_symmetric();
  REQUIRE(weft::detail::asym_symmetric_for_test());
  test::for_each_workers([](unsigned) {
    // Ping-pong pairs (wakeups between workers) and a spawning tree (steals).
    constexpr int pairs = 8, rounds = 2000;
    std::atomic<long> leaves{0}, pongs{0};
    weft::wait_group wg;
    wg.add(pairs + 1);
    for (int i = 0; i < pairs; ++i) {
      weft::go([&] {
        weft::chan<int> ping, pong;
        // Its own handles: it may still be inside its last send when this
        // fiber, woken by that send, finishes.
        weft::go([ping, pong]() mutable {
          for (int r = 0; r < rounds; ++r) pong.send(*ping.recv() + 1);
        });
        for (int r = 0; r < rounds; ++r) {
          ping.send(r);
          if (*pong.recv() == r + 1) pongs++;
        }
        wg.done();
      });
    }
    weft::go([&] {
      weft::wait_group tree;
      tree.add(10000);
      for (int i = 0; i < 100; ++i) {
        weft::go([&] {
          for (int j = 0; j < 100; ++j)
            weft::go([&] {
              leaves++;
              tree.done();
            });
        });
      }
      tree.wait();
      wg.done();
    });
    wg.wait();
    CHECK(pongs.load() == long{pairs} * rounds);
    CHECK(leaves.load() == 10000);
  });
}

TEST_SUITE_END();
