// bench_sysmon.cpp: the cost of weft::blocking, the latency of handoff, and
// how soon a deadlock is reported.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <vector>
#include <weft/weft.hpp>

#include "bench.hpp"

namespace {

using clk = std::chrono::steady_clock;

// blocking: n calls of blocking(getpid) on one fiber; ns per call. The fast
// path (nobody took the processor) is a few plain stores and one CAS.
// Compare with Go's raw syscall.Getpid loop.
bench::result blocking(bench::params& p) {
  bench::result r;
  weft::options o;
  o.workers = p.workers;
  // The loop never parks: without this the fiber would count as a CPU hog
  // after 10 ms (harmless here: nothing is queued behind it).
  o.hog_handoff = std::chrono::hours(1);
  weft::run(
      [&] {
        long sink = 0;
        const auto t0 = clk::now();
        for (std::uint64_t i = 0; i < p.n; ++i) sink += weft::blocking([] { return ::getpid(); });
        r.value = bench::seconds_since(t0) * 1e9 / static_cast<double>(p.n);
        if (sink == 42) r.extra["impossible"] = 1;
      },
      o);
  return r;
}
WEFT_BENCH("blocking", "ns/call", 0, 2000000, blocking);

// handoff: a fiber starts another (queued behind it on the same worker) and
// enters a 50 ms blocking call; latency from entering the call to the first
// run of the queued fiber, which only sysmon's hand-off allows. Median over
// n trials, in microseconds.
bench::result handoff(bench::params& p) {
  bench::result r;
  weft::options o;
  o.workers = p.workers;
  std::vector<double> us;
  weft::run(
      [&] {
        for (std::uint64_t trial = 0; trial < p.n; ++trial) {
          weft::wait_group wg;
          wg.add(2);
          std::atomic<clk::rep> entered{0}, ran{0};
          weft::go([&] {
            weft::go([&] {
              ran = clk::now().time_since_epoch().count();
              wg.done();
            });
            entered = clk::now().time_since_epoch().count();
            weft::blocking([] { ::usleep(50'000); });
            wg.done();
          });
          wg.wait();
          us.push_back(static_cast<double>(ran.load() - entered.load()) / 1000.0);
          weft::sleep_for(std::chrono::milliseconds(20));  // let the runtime go quiet again
        }
      },
      o);
  std::sort(us.begin(), us.end());
  r.value = us[us.size() / 2];
  r.extra["p90_us"] = us[us.size() * 9 / 10];
  r.extra["max_us"] = us.back();
  return r;
}
WEFT_BENCH("handoff", "us", 1, 21, handoff);

// deadlock: n runs whose main fiber waits on a condition variable nobody
// notifies; latency from that wait to run() throwing weft::deadlock_error
// (sysmon's confirmation window, its ticks, the dump and the shutdown).
// Median over n runs, in milliseconds. Go reports its deadlock by exiting
// the process, so it has no row here.
bench::result deadlock(bench::params& p) {
  bench::result r;
  weft::options o;
  o.workers = p.workers;
  std::vector<double> ms;
  for (std::uint64_t trial = 0; trial < p.n; ++trial) {
    clk::time_point stuck;
    try {
      weft::run(
          [&] {
            weft::mutex mu;
            weft::condition_variable cv;
            std::unique_lock<weft::mutex> lk(mu);
            stuck = clk::now();
            cv.wait(lk);
          },
          o);
    } catch (const weft::deadlock_error&) {
      ms.push_back(bench::seconds_since(stuck) * 1e3);
    }
  }
  if (ms.empty()) return r;  // never reported: the row shows no value
  std::sort(ms.begin(), ms.end());
  r.value = ms[ms.size() / 2];
  r.extra["max_ms"] = ms.back();
  return r;
}
WEFT_BENCH("deadlock", "ms", 2, 11, deadlock);

}  // namespace
