// blocking_pool.cpp: weft::blocking() when other fibers are waiting: the
// call runs on a pool thread while its fiber parks.
//
// Purpose
//   A burst of blocking calls (1,000 fibers calling a blocking client
//   library through blocking()) must neither abort at the thread cap nor
//   make timers and ready fibers wait half a second.
//
// Why they did (measured: 1,000 fibers x 100 hiredis SET/GET inside
// blocking(), 2 workers): every call ran on its worker's thread, so the
// fibers queued behind it moved on only when sysmon had retaken the
// processor and woken or created another thread for it, one processor per
// sysmon tick. sysmon, the poller and the workers were then 4 threads among
// ~1,000 runnable ones, so each of those hops waited its turn for a CPU,
// and a woken ticker sat behind the chain: 0.5-1.3 s late where one plain
// thread among 1,000 was ~0.2 s late. Each new call also cost a thread
// creation on sysmon's thread, and past WEFT_MAX_THREADS the process died.
//
// Design
//   * blocking(f) runs f inline, as before, when nothing else waits for
//     the worker (its queue and the global queue are empty and no other
//     offloaded call is in flight): a lone short call costs no thread hop,
//     and a long one is handed off by sysmon as before.
//   * Otherwise (offload) the call is queued here and the fiber parks; a
//     pool thread runs f, records errno and f's result or exception, and
//     readies the fiber. The worker goes straight on with the next fiber:
//     nothing waits for sysmon, and the runtime's own threads never block.
//   * Pool threads are created on demand by a spawner thread (never by a
//     worker: a thread creation takes milliseconds on a crowded machine),
//     reused, and limited so that machines + pool threads stay within
//     WEFT_MAX_THREADS: at the limit a call waits in the queue for a free
//     thread (its fiber stays parked).
//   * Pool threads run at a lower priority (nice +pool_nice): the runtime's
//     threads (workers, poller, sysmon) then win the CPU over a crowd of
//     threads returning from blocking calls, which is what keeps timers on
//     time. (An unprivileged thread cannot raise its priority back, which
//     is why calls run here, not on workers that would need it back.)
//   * An offloaded call counts in scheduler::nm_running from submission until
//     its fiber is readied: the deadlock detector and shutdown ("calls
//     inside blocking() finish") see it as a running fiber, as an inline
//     call is. So no fiber is unwound while a pool thread uses its stack.
//   Rejected: handing the processor off on entry (Go's entersyscallblock)
//   for every call with work queued: it keeps a thread hop per call on the
//   path of every queued fiber, among the same crowd of threads.
//
// Invariants
//   B1  A call is in exactly one place: the pending list (under mu), a pool
//       thread, or done; its fiber is parked from submit until the pool
//       thread unparks it, under the call's own lock (park protocol, and
//       chan_core.hpp C5: a plain thread wakes before it unlocks). The
//       fiber takes that lock once after park returns, before `c` (on its
//       stack) goes, so the pool thread's unlock never touches a dead
//       frame.
//   B2  helpers_ (threads started, under mu) + machines never exceed
//       max_threads; helpers_ only grows during a run and all are joined
//       by blocking_pool_stop.
//
// Lock order: pool mu < scheduler::mu (growing reads machines.size()); newm
// reads helpers without the pool's lock.

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <thread>
#include <vector>

#include "runtime/locks.hpp"
#include "runtime/os_thread.hpp"
#include "runtime/sched_internal.hpp"
#include "runtime/scheduler.hpp"
#include "weft/blocking.hpp"
#include "weft/detail/introspect.hpp"
#include "weft/detail/park.hpp"

namespace weft::detail {
namespace {

constexpr int pool_nice = 10;

struct offload_call {
  void (*run)(void*) = nullptr;
  void* arg = nullptr;
  int err = 0;  // errno after run, for the fiber
  waiter w;
  spinlock lk;  // park's release; the pool thread takes it once before it unparks (B1)
  offload_call* next = nullptr;
};

struct pool {
  os_mutex mu;
  std::condition_variable cv;        // pool threads wait here for calls
  std::condition_variable spawn_cv;  // the spawner waits here
  // All guarded by mu, except helpers.
  std::thread spawner WEFT_GUARDED_BY(mu);           // started by the first call of a run
  offload_call* head WEFT_GUARDED_BY(mu) = nullptr;  // pending calls, FIFO
  offload_call* tail WEFT_GUARDED_BY(mu) = nullptr;
  unsigned idle WEFT_GUARDED_BY(mu) = 0;     // threads waiting for a call
  unsigned callers WEFT_GUARDED_BY(mu) = 0;  // threads that run calls (all but the spawner)
  unsigned busy WEFT_GUARDED_BY(mu) = 0;     // threads running a call
  unsigned pending WEFT_GUARDED_BY(mu) = 0;  // calls queued, not yet taken
  // Threads started this run (B2): written under mu, read without it by
  // newm's limit check (which holds scheduler::mu: lock order).
  std::atomic<unsigned> helpers{0};
  bool stopping WEFT_GUARDED_BY(mu) = false;
  std::vector<std::thread> threads WEFT_GUARDED_BY(mu);
  std::vector<long> tids WEFT_GUARDED_BY(mu);
};

pool g_pool;
// Calls offloaded this run (introspect.hpp); relaxed: a statistic.
std::atomic<std::uint64_t> g_offloaded{0};
// The test hook (introspect.hpp); relaxed: set while no call is offloaded,
// and a call's submission orders it before the pool thread's load.
std::atomic<void (*)()> g_done_hook{nullptr};

void helper_main() {
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), pool_nice);
  os_unique_lock lk(g_pool.mu);
  g_pool.tids.push_back(static_cast<long>(::gettid()));
  for (;;) {
    while (g_pool.head == nullptr && !g_pool.stopping) {
      ++g_pool.idle;
      g_pool.cv.wait(lk.native());
      --g_pool.idle;
    }
    if (g_pool.head == nullptr) return;  // stopping, nothing left
    offload_call* c = g_pool.head;
    g_pool.head = c->next;
    if (g_pool.head == nullptr) g_pool.tail = nullptr;
    --g_pool.pending;
    ++g_pool.busy;
    lk.unlock();
    errno = c->err;  // the fiber's, as if the call ran on its thread
    c->run(c->arg);
    c->err = errno;
    lk.lock();
    --g_pool.busy;  // free again: the fiber's next call may count on us
    lk.unlock();
    // B1: the fiber is parked once its lock is free (park released it).
    // Unparked under the lock (C5); after the unlock `c` (on the fiber's
    // stack) may be gone. Readied first, then uncounted, so it is never
    // seen neither running nor runnable.
    c->lk.lock();
    unpark(c->w);
    c->lk.unlock();
    if (void (*hook)() = g_done_hook.load(std::memory_order_relaxed)) hook();
    g_offload_in_flight.fetch_sub(1, std::memory_order_relaxed);
    running_done_offload();
    lk.lock();
  }
}

// may_grow: B2.
bool may_grow() WEFT_REQUIRES(g_pool.mu) {
  std::size_t machines = 0;
  {
    os_lock lk(g_sched->mu);
    machines = g_sched->machines.size();
  }
  // Keep room for a machine per processor besides.
  return machines + g_pool.helpers.load(std::memory_order_relaxed) + g_sched->np_total + 1 <
         g_sched->max_threads;
}

// spawner_main: starts pool threads while calls wait and every pool thread
// not running a call already has one to take. Thread creation costs
// milliseconds on a crowded machine: done here, at the pool's priority, it
// never holds up a worker (and the fibers and timers behind it).
void spawner_main() {
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), pool_nice);
  os_unique_lock lk(g_pool.mu);
  g_pool.tids.push_back(static_cast<long>(::gettid()));
  for (;;) {
    while (!g_pool.stopping && !(g_pool.pending > g_pool.callers - g_pool.busy && may_grow())) {
      g_pool.spawn_cv.wait(lk.native());
    }
    if (g_pool.stopping) return;
    ++g_pool.callers;
    g_pool.helpers.fetch_add(1, std::memory_order_relaxed);
    g_sched->live_threads.fetch_add(1, std::memory_order_relaxed);
    lk.unlock();
    std::thread t;
    try {
      t = start_os_thread(helper_main);
    } catch (...) {
    }
    lk.lock();
    if (t.joinable()) {
      g_pool.threads.push_back(std::move(t));
    } else {  // out of threads for now: the running ones take the calls
      --g_pool.callers;
      g_pool.helpers.fetch_sub(1, std::memory_order_relaxed);
      g_sched->live_threads.fetch_sub(1, std::memory_order_relaxed);
      if (g_pool.callers == 0) {
        lk.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        lk.lock();
      } else {
        g_pool.spawn_cv.wait(lk.native());
      }
    }
  }
}

// submit: queue the call; an idle pool thread takes it, or the spawner
// starts one. Throws only when the spawner cannot be started (then nothing
// is queued and the caller runs the call itself).
void submit(offload_call* c) {
  os_lock lk(g_pool.mu);
  if (!g_pool.spawner.joinable()) {
    g_pool.spawner = start_os_thread(spawner_main);
    g_pool.helpers.fetch_add(1, std::memory_order_relaxed);
    g_sched->live_threads.fetch_add(1, std::memory_order_relaxed);
  }
  if (g_pool.tail != nullptr) {
    g_pool.tail->next = c;
  } else {
    g_pool.head = c;
  }
  g_pool.tail = c;
  ++g_pool.pending;
  // Threads not running a call each take a queued one (one that just
  // finished is about to look); beyond them, the spawner adds threads.
  if (g_pool.idle > 0) g_pool.cv.notify_one();
  if (g_pool.pending > g_pool.callers - g_pool.busy) g_pool.spawn_cv.notify_one();
}

[[gnu::noinline]] int thread_errno() noexcept { return errno; }
[[gnu::noinline]] void set_thread_errno(int e) noexcept { errno = e; }

}  // namespace

std::atomic<int> g_offload_in_flight{0};

void offload(void (*run)(void*), void* arg) {
  offload_call c;
  c.run = run;
  c.arg = arg;
  c.err = thread_errno();
  c.w.prepare();
  g_sched->nm_running.fetch_add(1, std::memory_order_seq_cst);
  g_offload_in_flight.fetch_add(1, std::memory_order_relaxed);
  g_offloaded.fetch_add(1, std::memory_order_relaxed);
  c.lk.lock();
  try {
    submit(&c);
  } catch (...) {  // no thread could be started: run it here
    c.lk.unlock();
    g_offload_in_flight.fetch_sub(1, std::memory_order_relaxed);
    g_sched->nm_running.fetch_sub(1, std::memory_order_seq_cst);
    run(arg);
    return;
  }
  // Not unwound while the call runs (nm_running holds shutdown back), so
  // park returns (or throws) only after the pool thread is done with `c`.
  park(c.w, c.lk, wait_reason::blocking_call, &c);
  // B1: the pool thread may still be releasing c.lk after its unpark.
  c.lk.lock();
  c.lk.unlock();
  set_thread_errno(c.err);
}

void set_offload_done_hook(void (*hook)()) noexcept {
  g_done_hook.store(hook, std::memory_order_relaxed);
}

std::uint64_t blocking_calls_offloaded() noexcept {
  return g_offloaded.load(std::memory_order_relaxed);
}

void blocking_pool_tids(std::vector<long>& out) {
  os_lock lk(g_pool.mu);
  out.insert(out.end(), g_pool.tids.begin(), g_pool.tids.end());
}

std::size_t blocking_pool_threads() noexcept {
  return g_pool.helpers.load(std::memory_order_relaxed);
}

void blocking_pool_stop() noexcept {
  std::vector<std::thread> ts;
  {
    os_lock lk(g_pool.mu);
    g_pool.stopping = true;
    g_pool.cv.notify_all();
    g_pool.spawn_cv.notify_all();
  }
  {
    os_unique_lock lk(g_pool.mu);
    if (g_pool.spawner.joinable()) {
      std::thread sp = std::move(g_pool.spawner);
      lk.unlock();
      sp.join();  // it starts no thread once stopping is set
      g_sched->live_threads.fetch_sub(1, std::memory_order_relaxed);
      lk.lock();
    }
    ts.swap(g_pool.threads);
  }
  for (std::thread& t : ts) {
    t.join();
    g_sched->live_threads.fetch_sub(1, std::memory_order_relaxed);
  }
  os_lock lk(g_pool.mu);
  g_pool.stopping = false;
  g_pool.helpers.store(0, std::memory_order_relaxed);
  g_pool.idle = 0;
  g_pool.busy = 0;
  g_pool.callers = 0;
  g_pool.pending = 0;
  g_pool.tids.clear();
  g_offloaded.store(0, std::memory_order_relaxed);
}

}  // namespace weft::detail
