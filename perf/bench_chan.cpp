// bench_chan.cpp: the channel workloads: pingpong, chan, skynet, select.
//
// The Go and Boost.Fiber peers (perf/peers/) implement the same shapes:
//   pingpong  two fibers, two unbuffered channels; A sends i on one and
//             waits for the echo on the other, n round trips (ns/round trip).
//   chan      one channel of capacity 1024, 4 producers each sending n/4
//             ints, 4 consumers receiving until it is closed (ns/value).
//   skynet    each node makes an unbuffered channel, starts 10 children and
//             sums what they send on it; a leaf sends its number; 1,000,000
//             leaves (n) in a tree of 10; the sum must be n(n-1)/2 (ms).
//   select    4 unbuffered channels, each fed by its own sender fiber; one
//             fiber runs n selects over the 4 receives plus
//             recv_case(after(1ms)) (ns/select).

#include <atomic>
#include <stdexcept>
#include <string>
#include <weft/weft.hpp>

#include "bench.hpp"

namespace {

using clk = std::chrono::steady_clock;

weft::options opts_of(const bench::params& p) {
  weft::options o;
  o.workers = p.workers;
  return o;
}

bench::result pingpong(bench::params& p) {
  bench::result r;
  weft::run(
      [&] {
        weft::chan<std::uint64_t> ping, pong;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          for (std::uint64_t i = 0; i < p.n; ++i) pong.send(*ping.recv());
          wg.done();
        });
        const double faults0 = bench::minor_faults();
        const auto t0 = clk::now();
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0; i < p.n; ++i) {
          ping.send(i);
          sum += *pong.recv();
        }
        r.value = bench::seconds_since(t0) * 1e9 / static_cast<double>(p.n);
        r.extra["minor_faults"] = bench::minor_faults() - faults0;
        wg.wait();
        if (sum != p.n * (p.n - 1) / 2)
          throw std::runtime_error("wrong sum " + std::to_string(sum));
      },
      opts_of(p));
  return r;
}
WEFT_BENCH("pingpong", "ns/roundtrip", 0, 1000000, pingpong);

bench::result chan_mpmc(bench::params& p) {
  bench::result r;
  constexpr int producers = 4, consumers = 4;
  weft::run(
      [&] {
        weft::chan<std::uint64_t> c(1024);
        weft::wait_group prod, cons;
        std::atomic<std::uint64_t> total{0}, count{0};
        const std::uint64_t each = p.n / producers;
        prod.add(producers);
        cons.add(consumers);
        const auto t0 = clk::now();
        for (int k = 0; k < consumers; ++k) {
          weft::go([&] {
            std::uint64_t sum = 0, n = 0;
            for (std::uint64_t v : c) {
              sum += v;
              ++n;
            }
            total.fetch_add(sum);
            count.fetch_add(n);
            cons.done();
          });
        }
        for (int k = 0; k < producers; ++k) {
          weft::go([&, k] {
            for (std::uint64_t i = 0; i < each; ++i) c.send(i * producers + k);
            prod.done();
          });
        }
        prod.wait();
        c.close();
        cons.wait();
        const std::uint64_t n = each * producers;
        r.value = bench::seconds_since(t0) * 1e9 / static_cast<double>(n);
        if (count.load() != n || total.load() != n * (n - 1) / 2) {
          throw std::runtime_error("lost or duplicated values");
        }
      },
      opts_of(p));
  return r;
}
WEFT_BENCH("chan", "ns/value", 0, 10000000, chan_mpmc);

void skynet_node(weft::chan<std::uint64_t> out, std::uint64_t num, std::uint64_t size) {
  if (size == 1) {
    out.send(num);
    return;
  }
  weft::chan<std::uint64_t> rc;
  const std::uint64_t sub = size / 10;
  for (std::uint64_t i = 0; i < 10; ++i) weft::go(skynet_node, rc, num + i * sub, sub);
  std::uint64_t sum = 0;
  for (int i = 0; i < 10; ++i) sum += *rc.recv();
  out.send(sum);
}

bench::result skynet(bench::params& p) {
  bench::result r;
  std::uint64_t leaves = 1;
  while (leaves < p.n) leaves *= 10;
  weft::run(
      [&] {
        for (int round = 0; round < 2; ++round) {
          const double faults0 = bench::minor_faults();
          const auto t0 = clk::now();
          weft::chan<std::uint64_t> rc;
          weft::go(skynet_node, rc, std::uint64_t{0}, leaves);
          const std::uint64_t sum = *rc.recv();
          const double ms = bench::seconds_since(t0) * 1e3;
          const double faults = bench::minor_faults() - faults0;
          if (sum != leaves * (leaves - 1) / 2) {
            throw std::runtime_error("wrong sum " + std::to_string(sum));
          }
          if (round == 0) {
            r.value = ms;
            r.extra["minor_faults"] = faults;
          } else {
            r.extra["second_round"] = ms;
            r.extra["second_round_faults"] = faults;
          }
        }
      },
      opts_of(p));
  p.n = leaves;
  return r;
}
WEFT_BENCH("skynet", "ms", 0, 1000000, skynet);

bench::result select_bench(bench::params& p) {
  using namespace std::chrono_literals;
  bench::result r;
  weft::run(
      [&] {
        weft::chan<std::uint64_t> cs[4];
        const std::uint64_t each = p.n / 4;
        for (auto& c : cs) {
          weft::go([c, each] {
            for (std::uint64_t i = 0; i < each; ++i) c.send(i);
          });
        }
        std::uint64_t got = 0, timeouts = 0, sum = 0;
        const auto on_value = [&](std::optional<std::uint64_t> v) {
          sum += *v;
          ++got;
        };
        const auto t0 = clk::now();
        std::uint64_t selects = 0;
        while (got < 4 * each) {
          weft::select(weft::recv_case(cs[0], on_value), weft::recv_case(cs[1], on_value),
                       weft::recv_case(cs[2], on_value), weft::recv_case(cs[3], on_value),
                       weft::recv_case(weft::after(1ms), [&](auto) { ++timeouts; }));
          ++selects;
        }
        r.value = bench::seconds_since(t0) * 1e9 / static_cast<double>(selects);
        r.extra["timeouts"] = static_cast<double>(timeouts);
        if (sum != 4 * (each * (each - 1) / 2)) throw std::runtime_error("wrong sum");
      },
      opts_of(p));
  return r;
}
WEFT_BENCH("select", "ns/select", 0, 1000000, select_bench);

}  // namespace
