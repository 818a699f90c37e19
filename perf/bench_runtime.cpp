// bench_runtime.cpp: the scheduler workloads: spawn, yield, parked.

#include <atomic>
#include <mutex>
#include <weft/weft.hpp>

#include "bench.hpp"

namespace {

using clk = std::chrono::steady_clock;

// spawn: n `go` of an empty function from one fiber, then wait for all with
// a wait_group; ns per fiber. Two rounds in one process: the first pays for
// growing the record and stack pools, the second shows the steady state.
bench::result spawn(bench::params& p) {
  bench::result r;
  weft::options o;
  o.workers = p.workers;
  // The spawning loop runs ~100 ms without a scheduling point, which is a
  // CPU hog by weft's definition: sysmon would lend a spare processor and
  // print a warning. Measure spawning itself (Go preempts its spawner at
  // 10 ms, which costs it nothing measurable either).
  o.hog_handoff = std::chrono::hours(1);
  weft::run(
      [&] {
        for (int round = 0; round < 2; ++round) {
          weft::wait_group wg;
          const double faults0 = bench::minor_faults();
          const auto steals0 = weft::stats().steals;
          const auto t0 = clk::now();
          wg.add(static_cast<int>(p.n));
          for (std::uint64_t i = 0; i < p.n; ++i) weft::go([&wg] { wg.done(); });
          wg.wait();
          const double ns = bench::seconds_since(t0) * 1e9 / static_cast<double>(p.n);
          const double faults = bench::minor_faults() - faults0;
          if (round == 0) {
            r.value = ns;
            r.extra["minor_faults"] = faults;
            r.extra["steals"] = static_cast<double>(weft::stats().steals - steals0);
          } else {
            r.extra["second_round"] = ns;
            r.extra["second_round_faults"] = faults;
          }
        }
      },
      o);
  return r;
}
WEFT_BENCH("spawn", "ns/fiber", 0, 1000000, spawn);

// yield: two fibers yielding to each other on one worker; ns per switch.
bench::result yield(bench::params& p) {
  bench::result r;
  weft::options o;
  o.workers = p.workers;
  weft::run(
      [&] {
        const std::uint64_t each = p.n / 2;
        weft::wait_group wg;
        wg.add(2);
        const auto t0 = clk::now();
        for (int k = 0; k < 2; ++k) {
          weft::go([&] {
            for (std::uint64_t i = 0; i < each; ++i) weft::yield();
            wg.done();
          });
        }
        wg.wait();
        r.value = bench::seconds_since(t0) * 1e9 / static_cast<double>(2 * each);
      },
      o);
  return r;
}
WEFT_BENCH("yield", "ns/switch", 1, 10000000, yield);

// parked: n fibers parked on one condition variable; RSS bytes per parked
// fiber (from /proc/self/status), then all released and finished.
bench::result parked(bench::params& p) {
  bench::result r;
  weft::options o;
  o.workers = p.workers;
  weft::run(
      [&] {
        weft::mutex mu;
        weft::condition_variable cv;
        bool go = false;
        weft::wait_group parked_wg, done_wg;
        const std::uint64_t before = bench::rss_bytes();
        const double faults0 = bench::minor_faults();
        parked_wg.add(static_cast<int>(p.n));
        done_wg.add(static_cast<int>(p.n));
        const auto t0 = clk::now();
        for (std::uint64_t i = 0; i < p.n; ++i) {
          weft::go([&] {
            std::unique_lock<weft::mutex> lk(mu);
            parked_wg.done();
            cv.wait(lk, [&] { return go; });
            lk.unlock();
            done_wg.done();
          });
        }
        parked_wg.wait();
        // Every fiber has taken the lock; the last ones may still be on
        // their way into wait(). Taking the lock once more orders us after
        // all of them but the final waiter, which is parked once we get it.
        { std::lock_guard<weft::mutex> lk(mu); }
        const std::uint64_t after = bench::rss_bytes();
        r.extra["minor_faults"] = bench::minor_faults() - faults0;
        r.value = static_cast<double>(after - before) / static_cast<double>(p.n);
        r.extra["park_ns"] = bench::seconds_since(t0) * 1e9 / static_cast<double>(p.n);
        const auto t1 = clk::now();
        {
          std::lock_guard<weft::mutex> lk(mu);
          go = true;
        }
        cv.notify_all();
        done_wg.wait();
        r.extra["release_ns"] = bench::seconds_since(t1) * 1e9 / static_cast<double>(p.n);
      },
      o);
  return r;
}
WEFT_BENCH("parked", "bytes/fiber", 0, 1000000, parked);

}  // namespace
