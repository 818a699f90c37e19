// internals_test.cpp: the runtime's building blocks on their own, with no
// runtime running: the run queue (shrunk to 4 slots, with an owner and
// thieves), the timer heap, the descriptor record's lifecycle and direction
// lock, and the asymmetric fences' mode switch. Each test case runs in its
// own process (ctest), so the one-way fence switch does not leak.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "netpoll/poll_desc.hpp"
#include "runtime/asym_fence.hpp"
#include "runtime/global_queue.hpp"
#include "runtime/run_queue.hpp"
#include "runtime/timer_heap.hpp"
#include "support.hpp"

using weft::detail::fiber;
using weft::detail::fiber_state;

TEST_SUITE_BEGIN("internals");

namespace {

// A pool of fiber records standing in for fibers: the queue only moves
// pointers, and checks (WEFT_DCHECK) that they are runnable.
struct token_pool {
  std::vector<std::unique_ptr<fiber>> records;
  // 1 while the record is in the queue (pushed, not yet taken out).
  std::unique_ptr<std::atomic<int>[]> queued;
  std::map<const fiber*, std::size_t> index;
  explicit token_pool(std::size_t n) : queued(new std::atomic<int>[n]()) {
    for (std::size_t i = 0; i < n; ++i) {
      records.push_back(std::make_unique<fiber>());
      records.back()->state.store(fiber_state::runnable);
      index[records.back().get()] = i;
    }
  }
  std::size_t of(const fiber* f) const { return index.at(f); }
};

void run_queue_conservation() {
  constexpr std::size_t tokens = 64;
  const int rounds = static_cast<int>(test::scaled(200000, 10));
  weft::detail::run_queue<4> q;
  token_pool pool(tokens);
  std::mutex free_mu;
  std::vector<fiber*> free_list;  // tokens not in the queue
  for (auto& r : pool.records) free_list.push_back(r.get());
  std::atomic<long> taken{0}, pushed{0}, errors{0};
  std::atomic<bool> stop{false};

  auto take_out = [&](fiber* f) {
    // Exactly once: every take must find the token queued.
    if (pool.queued[pool.of(f)].exchange(0) != 1) errors.fetch_add(1);
    taken.fetch_add(1);
    std::lock_guard<std::mutex> lk(free_mu);
    free_list.push_back(f);
  };
  auto put_in = [&](fiber* f) {
    if (pool.queued[pool.of(f)].exchange(1) != 0) errors.fetch_add(1);
    pushed.fetch_add(1);
  };
  auto grab = [&]() -> fiber* {
    std::lock_guard<std::mutex> lk(free_mu);
    if (free_list.empty()) return nullptr;
    fiber* f = free_list.back();
    free_list.pop_back();
    return f;
  };

  std::vector<std::thread> thieves;
  for (int t = 0; t < 2; ++t) {
    thieves.emplace_back([&, t] {
      std::mt19937 g(static_cast<unsigned>(t + 1));
      fiber* buf[2];
      while (!stop.load()) {
        const std::uint32_t k = q.steal(buf, g() % 2 == 0);
        if (k > 2) errors.fetch_add(1);  // more than half of 4, rounded up
        for (std::uint32_t i = 0; i < k; ++i) take_out(buf[i]);
      }
    });
  }
  std::mt19937 g(7);
  fiber* half[2];
  for (int i = 0; i < rounds; ++i) {
    switch (g() % 6) {
      case 0:
      case 1:
        if (fiber* f = grab()) {
          put_in(f);  // before it is visible: a thief may take it at once
          if (!q.push(f)) {
            // Full (R4): the owner moves the older half out, then it fits.
            // Thieves may have emptied some slots since the failed push.
            const std::uint32_t n = q.take_half(half);
            CHECK(n <= 2);
            for (std::uint32_t k = 0; k < n; ++k) take_out(half[k]);
            CHECK(q.push(f));
          }
        }
        break;
      case 2:
        if (fiber* f = grab()) {
          put_in(f);
          if (fiber* old = q.set_next(f)) {
            // Displaced from `next`: still queued, so back in the ring.
            if (!q.push(old)) {
              const std::uint32_t n = q.take_half(half);
              for (std::uint32_t k = 0; k < n; ++k) take_out(half[k]);
              CHECK(q.push(old));
            }
          }
        }
        break;
      case 3:
      case 4:
        if (fiber* f = q.pop()) take_out(f);
        break;
      default:
        if (fiber* f = q.take_next()) take_out(f);
        break;
    }
    CHECK(q.size() <= 5);
  }
  stop.store(true);
  for (auto& t : thieves) t.join();
  while (fiber* f = q.pop()) take_out(f);
  if (fiber* f = q.take_next()) take_out(f);
  CHECK(errors.load() == 0);
  CHECK(taken.load() == pushed.load());
  CHECK(free_list.size() == tokens);
  CHECK(q.looks_empty());
}

}  // namespace

TEST_CASE(
    "run_queue<4> with symmetric fences: owner and two thieves see every fiber exactly once") {
  weft::detail::asym_force_symmetric();
  run_queue_conservation();
}

TEST_CASE(
    "run_queue<4> with membarrier fences: owner and two thieves see every fiber exactly once") {
  weft::detail::asym_fence_init();  // asym where the kernel has membarrier
  run_queue_conservation();
}

TEST_CASE("run_queue<4>: push fails when full, take_half moves the older half in FIFO order") {
  weft::detail::run_queue<4> q;
  token_pool pool(6);
  fiber* f[6];
  for (int i = 0; i < 6; ++i) f[i] = pool.records[i].get();
  for (int i = 0; i < 4; ++i) CHECK(q.push(f[i]));
  CHECK_FALSE(q.push(f[4]));
  fiber* half[2];
  CHECK(q.take_half(half) == 2);
  CHECK(half[0] == f[0]);
  CHECK(half[1] == f[1]);
  CHECK(q.push(f[4]));
  CHECK(q.set_next(f[5]) == nullptr);
  CHECK(q.size() == 4);
  fiber* out[2];
  CHECK(q.steal(out, false) == 2);  // half of 3, rounded up: f[2], f[3]
  CHECK(out[0] == f[2]);
  CHECK(out[1] == f[3]);
  CHECK(q.pop() == f[4]);
  CHECK(q.steal(out, false) == 0);  // only `next` left, and not asked for
  CHECK(q.steal(out, true) == 1);
  CHECK(out[0] == f[5]);
  CHECK(q.looks_empty());
}

TEST_CASE("global_queue: front pushes come out first and mark the queue urgent until taken") {
  weft::detail::global_queue q;
  token_pool pool(5);
  fiber* f[5];
  for (int i = 0; i < 5; ++i) f[i] = pool.records[i].get();
  q.push_many(f, 2);
  CHECK_FALSE(q.urgent_hint());  // a backlog is not urgent
  q.push_front_many(f + 2, 2);   // two timer wakeups
  CHECK(q.urgent_hint());
  fiber* out[5];
  CHECK(q.pop_many(out, 1) == 1);
  CHECK(out[0] == f[2]);
  CHECK(q.urgent_hint());  // f[3] still waits at the front
  q.push(f[4]);            // behind the backlog: changes nothing at the front
  CHECK(q.pop_many(out, 2) == 2);
  CHECK(out[0] == f[3]);
  CHECK(out[1] == f[0]);
  CHECK_FALSE(q.urgent_hint());
  q.push_front_many(f, 1);
  CHECK(q.urgent_hint());
  q.clear();
  CHECK_FALSE(q.urgent_hint());
}

TEST_CASE(
    "timer_heap keeps deadline order and positions through random pushes, removals and pops") {
  using weft::detail::timer;
  weft::detail::timer_heap h;
  std::mt19937_64 g(42);
  std::vector<std::unique_ptr<timer>> all;
  std::multimap<std::int64_t, timer*> ref;
  for (int i = 0; i < 20000; ++i) {
    const unsigned op = g() % 10;
    if (op < 5 || ref.empty()) {
      all.push_back(std::make_unique<timer>());
      timer* t = all.back().get();
      t->when = static_cast<std::int64_t>(g() % 1000);  // many equal deadlines
      h.push(t);
      ref.emplace(t->when, t);
    } else if (op < 8) {
      // Remove a random queued timer (cancel).
      auto it = ref.begin();
      std::advance(it, static_cast<long>(g() % ref.size()));
      timer* t = it->second;
      REQUIRE(t->index != timer::npos);  // T1: queued iff it has a position
      h.remove(t);
      CHECK(t->index == timer::npos);
      ref.erase(it);
    } else {
      // Pop the earliest (fire).
      timer* t = h.top();
      CHECK(t->when == ref.begin()->first);
      auto range = ref.equal_range(t->when);
      auto it = std::find_if(range.first, range.second, [&](auto& e) { return e.second == t; });
      REQUIRE(it != range.second);
      ref.erase(it);
      h.remove(t);
    }
    REQUIRE(h.size() == ref.size());
    if (!ref.empty()) CHECK(h.top()->when == ref.begin()->first);
  }
  std::size_t disposed = 0;
  for (auto& e : ref) {
    e.second->dispose = [](timer*) {};
    ++disposed;
  }
  CHECK(h.clear() == disposed);
  CHECK(h.empty());
  for (auto& t : all) CHECK(t->index == timer::npos);
}

namespace {

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

}  // namespace

TEST_CASE("poll_desc: close waits for the last operation, then closes the descriptor once") {
  using namespace weft::detail;
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(fd >= 0);
  std::uint32_t gen = 0;
  poll_desc* pd = pd_open(fd, &gen);
  REQUIRE(pd != nullptr);
  CHECK(pd_acquire(*pd, gen));
  CHECK(pd_acquire(*pd, gen));
  CHECK_FALSE(pd_acquire(*pd, gen + 1));  // another incarnation's generation
  CHECK(pd_close(*pd, gen));
  CHECK_FALSE(pd_close(*pd, gen));    // once
  CHECK_FALSE(pd_acquire(*pd, gen));  // closing: no new operation
  CHECK(fd_open(fd));                 // two operations still inside
  pd_release(*pd);
  CHECK(fd_open(fd));
  pd_release(*pd);
  CHECK_FALSE(fd_open(fd));  // the last one out closed it (N3)

  // The number comes back from the kernel: a new incarnation, new generation.
  const int fd2 = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(fd2 >= 0);
  std::uint32_t gen2 = 0;
  poll_desc* pd2 = pd_open(fd2, &gen2);
  if (fd2 == fd) {
    CHECK(pd2 == pd);  // type-stable record (N1)
    CHECK(gen2 != gen);
    CHECK_FALSE(pd_acquire(*pd2, gen));  // a stale generation stays out
  }
  CHECK(pd_close(*pd2, gen2));
  CHECK_FALSE(fd_open(fd2));
}

TEST_CASE("poll_desc: a borrowed descriptor stays open when its last borrower leaves") {
  using namespace weft::detail;
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(fd >= 0);
  std::uint32_t g1 = 0, g2 = 0;
  poll_desc* a = pd_borrow(fd, &g1);
  poll_desc* b = pd_borrow(fd, &g2);
  CHECK(a == b);
  CHECK(g1 == g2);
  pd_release(*a);
  pd_release(*b);
  CHECK(fd_open(fd));
  std::uint32_t g3 = 0;
  poll_desc* c = pd_borrow(fd, &g3);
  CHECK(g3 != g1);  // a fresh incarnation
  pd_release(*c);
  ::close(fd);
}

TEST_CASE("poll_desc: the direction lock excludes and hands over to waiting threads") {
  using namespace weft::detail;
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(fd >= 0);
  std::uint32_t gen = 0;
  poll_desc* pd = pd_open(fd, &gen);
  const int iters = static_cast<int>(test::scaled(20000, 10));
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  long counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < iters; ++i) {
        pd_lock(*pd, dir_read);
        if (inside.exchange(1) != 0) overlaps.fetch_add(1);
        ++counter;
        if (i % 64 == 0) std::this_thread::yield();  // let waiters queue (N7)
        inside.store(0);
        pd_unlock(*pd, dir_read);
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(overlaps.load() == 0);
  CHECK(counter == 4L * iters);
  CHECK(pd->lock[dir_read].load() == 0);  // free, no waiters bit left behind
  CHECK(pd->lock[dir_write].load() == 0);
  CHECK(pd_close(*pd, gen));
  CHECK_FALSE(fd_open(fd));
}

namespace {

// dekker: rounds of the handshake the scheduler relies on (K1/K3, R1):
// light side: x = 1; asym_light(); read y. heavy side: y = 1; asym_heavy();
// read x. At least one side must see the other's store. `during` is called
// by a third thread halfway through.
template <class F>
long dekker_misses(int rounds, F during) {
  std::atomic<int> x{0}, y{0};
  std::atomic<int> round{0}, arrived{0};
  std::atomic<int> seen_light{0}, seen_heavy{0};
  long misses = 0;
  auto side = [&](bool light) {
    for (int r = 1; r <= rounds; ++r) {
      while (round.load(std::memory_order_acquire) != r) std::this_thread::yield();
      if (light) {
        x.store(1, std::memory_order_relaxed);
        weft::detail::asym_light();
        seen_light.store(y.load(std::memory_order_relaxed), std::memory_order_relaxed);
      } else {
        y.store(1, std::memory_order_relaxed);
        weft::detail::asym_heavy();
        seen_heavy.store(x.load(std::memory_order_relaxed), std::memory_order_relaxed);
      }
      arrived.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  std::thread a(side, true), b(side, false);
  std::thread c;
  for (int r = 1; r <= rounds; ++r) {
    x.store(0, std::memory_order_relaxed);
    y.store(0, std::memory_order_relaxed);
    arrived.store(0, std::memory_order_relaxed);
    round.store(r, std::memory_order_release);
    if (r == rounds / 2) c = std::thread(during);
    while (arrived.load(std::memory_order_acquire) != 2) std::this_thread::yield();
    if (seen_light.load(std::memory_order_relaxed) == 0 &&
        seen_heavy.load(std::memory_order_relaxed) == 0) {
      ++misses;
    }
  }
  a.join();
  b.join();
  c.join();
  return misses;
}

}  // namespace

TEST_CASE(
    "asym fences: the Dekker handshake holds before, during and after the switch to symmetric") {
  weft::detail::asym_fence_init();
  const int rounds = static_cast<int>(test::scaled(5000, 4));
  const long misses = dekker_misses(rounds, [] { weft::detail::asym_force_symmetric(); });
  CHECK(misses == 0);
  CHECK(weft::detail::asym_symmetric_for_test());
  // Symmetric from now on, in this process, whatever init says.
  weft::detail::asym_fence_init();
  CHECK(weft::detail::asym_symmetric_for_test());
  CHECK(dekker_misses(rounds / 4, [] {}) == 0);
}
