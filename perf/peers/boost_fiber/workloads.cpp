// workloads.cpp: Boost.Fiber versions of spawn, yield, parked, pingpong, chan
// and skynet, defined as in perf/README.md. Each runs on the main fiber of
// the main thread while run_fibers' schedulers run the fibers it starts.

#include <memory>
#include <mutex>

#include "harness.hpp"

namespace {

namespace bf = boost::fibers;
using clk = std::chrono::steady_clock;

// spawn: n fibers that only call done(), started from one fiber, then waited
// for; ns per fiber; two rounds (value, second_round).
peer::result spawn(const peer::params& p) {
  peer::result r;
  for (int round = 0; round < 2; ++round) {
    peer::wait_group wg;
    const auto t0 = clk::now();
    wg.add(static_cast<std::int64_t>(p.n));
    for (std::uint64_t i = 0; i < p.n; ++i) peer::spawn([&wg] { wg.done(); });
    wg.wait();
    const double ns = peer::ns_per(t0, p.n);
    if (round == 0) {
      r.value = ns;
    } else {
      r.extra["second_round"] = ns;
    }
  }
  return r;
}
PEER_BENCH("spawn", "ns/fiber", 0, 1000000, spawn);

// yield: two fibers each calling this_fiber::yield() n/2 times; ns per switch.
peer::result yield(const peer::params& p) {
  const std::uint64_t each = p.n / 2;
  peer::wait_group wg;
  wg.add(2);
  const auto t0 = clk::now();
  for (int k = 0; k < 2; ++k) {
    peer::spawn([&] {
      for (std::uint64_t i = 0; i < each; ++i) boost::this_fiber::yield();
      wg.done();
    });
  }
  wg.wait();
  return {peer::ns_per(t0, 2 * each), {}};
}
PEER_BENCH("yield", "ns/switch", 1, 10000000, yield);

// parked: n fibers each lock a mutex, count themselves parked and wait on a
// condition variable until released; RSS bytes per parked fiber.
peer::result parked(const peer::params& p) {
  peer::result r;
  bf::mutex mu;
  bf::condition_variable cv, all_parked_cv;
  bool released = false;
  std::uint64_t nparked = 0;
  peer::wait_group done;
  done.add(static_cast<std::int64_t>(p.n));
  const std::uint64_t before = peer::rss_bytes();
  const auto t0 = clk::now();
  for (std::uint64_t i = 0; i < p.n; ++i) {
    peer::spawn([&] {
      std::unique_lock<bf::mutex> lk(mu);
      if (++nparked == p.n) all_parked_cv.notify_one();
      cv.wait(lk, [&] { return released; });
      lk.unlock();
      done.done();
    });
  }
  {
    // condition_variable::wait queues the fiber before it unlocks mu, so
    // once this holds mu with nparked == n, all n are on cv's queue (the
    // last may still be switching out; its stack is already counted).
    std::unique_lock<bf::mutex> lk(mu);
    all_parked_cv.wait(lk, [&] { return nparked == p.n; });
  }
  const std::uint64_t after = peer::rss_bytes();
  r.value = (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(p.n);
  r.extra["park_ns"] = peer::ns_per(t0, p.n);
  const auto t1 = clk::now();
  {
    std::lock_guard<bf::mutex> lk(mu);
    released = true;
  }
  cv.notify_all();
  done.wait();
  r.extra["release_ns"] = peer::ns_per(t1, p.n);
  return r;
}
PEER_BENCH("parked", "bytes/fiber", 0, 1000000, parked);

// pingpong: two fibers, one unbuffered channel each way, n round trips; ns
// per round trip. Both are ordinary fibers (the main fiber is pinned to its
// thread, so it would not be a fair party with work stealing).
peer::result pingpong(const peer::params& p) {
  bf::unbuffered_channel<std::uint64_t> ping, pong;
  peer::wait_group wg;
  wg.add(2);
  bool ok = true;
  const auto t0 = clk::now();
  peer::spawn([&] {
    for (std::uint64_t i = 0; i < p.n; ++i) {
      ping.push(i);
      if (pong.value_pop() != i) ok = false;
    }
    wg.done();
  });
  peer::spawn([&] {
    for (std::uint64_t i = 0; i < p.n; ++i) pong.push(ping.value_pop());
    wg.done();
  });
  wg.wait();
  const double ns = peer::ns_per(t0, p.n);
  if (!ok) peer::fail("pingpong: a value came back changed");
  return {ns, {}};
}
PEER_BENCH("pingpong", "ns/roundtrip", 0, 1000000, pingpong);

// chan: one buffered channel (Boost needs a power of two: 1024 slots hold
// 1023 values), 4 producers sending 0..n-1 between them, 4 consumers draining
// until closed; ns per value; count and sum are checked.
peer::result chan(const peer::params& p) {
  constexpr std::uint64_t producers = 4, consumers = 4;
  bf::buffered_channel<std::uint64_t> ch(1024);
  std::atomic<std::uint64_t> count{0}, sum{0};
  peer::wait_group prod, cons;
  prod.add(producers);
  cons.add(consumers);
  const auto t0 = clk::now();
  for (std::uint64_t c = 0; c < consumers; ++c) {
    peer::spawn([&] {
      std::uint64_t k = 0, s = 0, v = 0;
      while (ch.pop(v) == bf::channel_op_status::success) {
        ++k;
        s += v;
      }
      count.fetch_add(k, std::memory_order_relaxed);
      sum.fetch_add(s, std::memory_order_relaxed);
      cons.done();
    });
  }
  for (std::uint64_t q = 0; q < producers; ++q) {
    const std::uint64_t lo = p.n * q / producers, hi = p.n * (q + 1) / producers;
    peer::spawn([&, lo, hi] {
      for (std::uint64_t v = lo; v < hi; ++v) {
        if (ch.push(v) != bf::channel_op_status::success) peer::fail("chan: push failed");
      }
      prod.done();
    });
  }
  prod.wait();
  ch.close();
  cons.wait();
  const double ns = peer::ns_per(t0, p.n);
  const std::uint64_t want = p.n * (p.n - 1) / 2;
  if (count.load() != p.n || sum.load() != want) {
    peer::fail("chan: received %llu values summing to %llu, want %llu summing to %llu",
               static_cast<unsigned long long>(count.load()),
               static_cast<unsigned long long>(sum.load()), static_cast<unsigned long long>(p.n),
               static_cast<unsigned long long>(want));
  }
  return {ns, {}};
}
PEER_BENCH("chan", "ns/value", 0, 10000000, chan);

// skynet_node: a leaf sends num; an inner node starts 10 children over
// [num, num + size) and sends the sum of what they send it. Channels are
// unbuffered, as in Go's skynet. They are shared_ptr-owned because a child
// whose value was already taken may still be inside push() (taking the
// channel's consumer spinlock) when its parent finishes and returns.
using skynet_chan = std::shared_ptr<bf::unbuffered_channel<std::uint64_t>>;
void skynet_node(skynet_chan out, std::uint64_t num, std::uint64_t size) {
  if (size == 1) {
    out->push(num);
    return;
  }
  auto rc = std::make_shared<bf::unbuffered_channel<std::uint64_t>>();
  const std::uint64_t child = size / 10;
  for (std::uint64_t i = 0; i < 10; ++i) {
    peer::spawn([rc, num, i, child] { skynet_node(rc, num + i * child, child); });
  }
  std::uint64_t sum = 0;
  for (int i = 0; i < 10; ++i) sum += rc->value_pop();
  out->push(sum);
}

// skynet: 10 children per node down to n leaves (a power of ten); ms; the
// total is checked.
peer::result skynet(const peer::params& p) {
  std::uint64_t leaves = 1;
  while (leaves < p.n) leaves *= 10;
  if (leaves != p.n) {
    peer::fail("skynet: n must be a power of 10, got %llu", static_cast<unsigned long long>(p.n));
  }
  auto out = std::make_shared<bf::unbuffered_channel<std::uint64_t>>();
  const auto t0 = clk::now();
  peer::spawn([out, n = p.n] { skynet_node(out, 0, n); });
  const std::uint64_t total = out->value_pop();
  const double ms = peer::ns_per(t0, 1) / 1e6;
  if (total != p.n * (p.n - 1) / 2) {
    peer::fail("skynet: total %llu, want %llu", static_cast<unsigned long long>(total),
               static_cast<unsigned long long>(p.n * (p.n - 1) / 2));
  }
  return {ms, {}};
}
PEER_BENCH("skynet", "ms", 0, 1000000, skynet);

}  // namespace
