#pragma once
// harness.hpp: what boost-fiber-bench's workloads share: the registry and
// CLI types (the same contract as weft-bench, perf/README.md), the thread
// pool running Boost.Fiber's work_stealing scheduler, a wait group, and the
// 8 KiB stack allocator.

#include <atomic>
#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/fiber/all.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

namespace peer {

struct params {
  unsigned workers = 0;
  std::uint64_t n = 0;
};

struct result {
  double value = 0;
  std::map<std::string, double> extra;
};

using workload_fn = result (*)(const params& p);

struct workload {
  const char* name;
  const char* unit;
  unsigned default_workers;  // 0 = all cores
  std::uint64_t default_n;
  workload_fn fn;
};

bool add(const workload& w);

[[noreturn]] void fail(const char* fmt, ...);

std::uint64_t rss_bytes();

inline double ns_per(std::chrono::steady_clock::time_point t0, std::uint64_t count) {
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
         static_cast<double>(count);
}

// run_fibers: runs `main_fn` on this thread's main fiber while `workers`
// threads (this one included) schedule fibers. One worker: round_robin, the
// default scheduler. More: Boost's documented work_stealing setup, every
// thread calling use_scheduling_algorithm<work_stealing>(workers), the extra
// threads parked on a fiber condition variable until main_fn returns.
// work_stealing keeps global state, so this runs once per process.
void run_fibers(unsigned workers, const std::function<void()>& main_fn);

// Stacks: fixedsize_stack (malloc) of stack_bytes(), 8 KiB unless
// BOOST_FIBER_BENCH_STACK says otherwise. BOOST_FIBER_BENCH_GUARD=1 swaps in
// guard-paged stacks of the same usable size (whole pages) to check a size is enough
// (one mapping each: use a small --n).
std::size_t stack_bytes();
bool guard_stacks();

template <class F>
void spawn(F&& f) {
  if (guard_stacks()) {
    boost::fibers::fiber(std::allocator_arg,
                         boost::context::protected_fixedsize_stack(stack_bytes()),
                         std::forward<F>(f))
        .detach();
  } else {
    boost::fibers::fiber(std::allocator_arg, boost::context::fixedsize_stack(stack_bytes()),
                         std::forward<F>(f))
        .detach();
  }
}

// wait_group: Go's sync.WaitGroup over Boost.Fiber primitives. done() is
// one atomic decrement; only the last one takes the lock to wake wait().
class wait_group {
 public:
  void add(std::int64_t k) { count_.fetch_add(k, std::memory_order_relaxed); }
  void done() {
    // acq_rel: the waiter must see everything the other done() callers did.
    if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<boost::fibers::mutex> lk(mu_);
      cv_.notify_all();
    }
  }
  void wait() {
    std::unique_lock<boost::fibers::mutex> lk(mu_);
    // acquire pairs with the acq_rel decrement in done().
    cv_.wait(lk, [&] { return count_.load(std::memory_order_acquire) == 0; });
  }

 private:
  std::atomic<std::int64_t> count_{0};
  boost::fibers::mutex mu_;
  boost::fibers::condition_variable cv_;
};

}  // namespace peer

#define PEER_BENCH_CAT2(a, b) a##b
#define PEER_BENCH_CAT(a, b) PEER_BENCH_CAT2(a, b)
#define PEER_BENCH(name, unit, workers, n, fn)              \
  static const bool PEER_BENCH_CAT(registered_, __LINE__) = \
      ::peer::add({name, unit, workers, n, fn})
