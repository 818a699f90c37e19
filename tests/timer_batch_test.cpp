// timer_batch_test.cpp: batched after() timers (runtime/timer_chan.cpp,
// invariants B1-B4) under preemption.

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>
#include <weft/detail/check.hpp>
#include <weft/detail/introspect.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

// A signal handler that spins for 100-300 us stands in for the OS
// descheduling the interrupted thread at an arbitrary instruction.
void spin_handler(int) {
  static thread_local unsigned x = 12345;
  x = x * 1103515245 + 12345;
  const long want = 100000 + static_cast<long>((x >> 8) % 200000);
  timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  do {
    clock_gettime(CLOCK_MONOTONIC, &b);
  } while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < want);
}

// interrupter: while alive, sends SIGUSR2 to every registered thread every
// 300 us; each one then spins in spin_handler.
class interrupter {
 public:
  interrupter() {
    struct sigaction sa {};
    sa.sa_handler = &spin_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, &old_);
    thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_relaxed)) {
        {
          std::lock_guard<std::mutex> g(mu_);
          for (pthread_t t : targets_) pthread_kill(t, SIGUSR2);
        }
        std::this_thread::sleep_for(300us);  // a rate, not synchronisation
      }
    });
  }
  ~interrupter() {
    stop();
    sigaction(SIGUSR2, &old_, nullptr);
  }
  // stop: no signal is sent once it returns (before the targets exit).
  void stop() {
    stop_.store(true, std::memory_order_relaxed);
    if (thread_.joinable()) thread_.join();
  }
  void add(pthread_t t) {
    std::lock_guard<std::mutex> g(mu_);
    for (pthread_t u : targets_) {
      if (pthread_equal(u, t)) return;
    }
    targets_.push_back(t);
  }
  // remove: the thread is about to exit.
  void remove(pthread_t t) {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& u : targets_) {
      if (pthread_equal(u, t)) {
        u = targets_.back();
        targets_.pop_back();
        return;
      }
    }
  }

 private:
  std::mutex mu_;
  std::vector<pthread_t> targets_;  // guarded by mu_
  std::atomic<bool> stop_{false};
  struct sigaction old_ {};
  std::thread thread_;
};

// make_abandoned_afters: n batched after()s (64 us and up), dropped at once.
void make_abandoned_afters(int n, int salt) {
  for (int i = 0; i < n; ++i) (void)weft::after(std::chrono::microseconds(65 + (i + salt) % 40));
}

// The channel the join hook watches, and how often the hook ran.
std::atomic<weft::chan<clk::time_point>*> g_watched{nullptr};
std::atomic<int> g_hook_runs{0};

// wait_for_watched_to_fire: a join hook that holds the joining thread
// inside join's window until the batch it is joining has fired.
void wait_for_watched_to_fire() {
  weft::chan<clk::time_point>* c = g_watched.load(std::memory_order_acquire);
  if (c == nullptr) return;
  while (c->size() == 0) std::this_thread::yield();  // the poller fires it
  g_hook_runs.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

TEST_SUITE_BEGIN("timer_batch");

// B3, made deterministic: a plain thread's second after() reads the open
// batch, the batch fires while the thread is inside join's window, the CAS
// fails, and the thread starts a new batch. Before the fix, the new batch
// kept the link into the fired one and delivered to (and dropped a
// reference of) the first channel, which only the test still holds.
TEST_CASE("an after() whose join loses to the batch firing starts a clean batch") {
  for (unsigned w : {1u, 2u, 8u}) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    int hook_runs = 0;
    weft::run(
        [&] {
          std::thread t([&] {
            // Two after(1ms)s join one batch only if made within its 50 us
            // granule; a preempted thread tries again.
            for (int attempt = 0; attempt < 200 && g_hook_runs.load() == 0; ++attempt) {
              weft::chan<clk::time_point> first = weft::after(1ms);  // a new batch (or joins one)
              g_watched.store(&first, std::memory_order_release);
              weft::detail::set_batch_join_hook(&wait_for_watched_to_fire);
              weft::chan<clk::time_point> second = weft::after(1ms);
              weft::detail::set_batch_join_hook(nullptr);
              g_watched.store(nullptr, std::memory_order_release);
              (void)second.recv();  // its batch fires: it must reach `second` only
              CHECK(first.size() == 1);
              CHECK(second.size() == 0);
            }
          });
          weft::blocking([&] { t.join(); });
          hook_runs = g_hook_runs.exchange(0);
        },
        o);
    test::check_teardown();
    CHECK(hook_runs >= 1);
  }
}

// A thread computes an after() deadline, is preempted for longer than the
// duration, and its join then races with the batch firing (B3). Fibers on
// every worker and plain threads make after()s while their threads are
// interrupted at random points.
TEST_CASE("batched after()s stay intact when their threads are preempted at any point") {
  const int rounds = static_cast<int>(test::scaled(2000, 4));
  for (unsigned w : {1u, 2u, 8u}) {
    CAPTURE(w);
    interrupter irq;
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          weft::wait_group wg;
          for (int f = 0; f < 4; ++f) {
            wg.add(1);
            weft::go([&, f] {
              for (int r = 0; r < rounds; ++r) {
                irq.add(pthread_self());  // the worker running this fiber now
                make_abandoned_afters(32, f + r);
                weft::yield();
              }
              wg.done();
            });
          }
          std::vector<std::thread> plain;
          for (int t = 0; t < 2; ++t) {
            plain.emplace_back([&, t] {
              irq.add(pthread_self());
              for (int r = 0; r < rounds; ++r) make_abandoned_afters(32, t + r);
              irq.remove(pthread_self());
            });
          }
          wg.wait();
          weft::blocking([&] {
            for (auto& t : plain) t.join();
          });
          irq.stop();  // the workers exit after run() returns
        },
        o);
    test::check_teardown();
  }
}

TEST_SUITE_END();
