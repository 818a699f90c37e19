// runtime.cpp: run(), go(), and the runtime's lifetime.
//
// Lifetime
//   1. run() validates its options, claims the process-wide "active" flag,
//      builds the scheduler, starts the poller and the first worker with
//      the main fiber.
//   2. When main returns, the phase becomes `stopping` (switch.cpp W4):
//      running fibers go on until their next scheduling point, calls inside
//      blocking() finish, and the last worker to go idle wakes run().
//   3. run() stops accepting go() from foreign threads, waits for those in
//      flight, stops the poller and sysmon, and joins the workers.
//   4. Phase `final`: run()'s thread unwinds every fiber still alive (it
//      resumes each one; park() throws fiber_unwind into it), newest first
//      (U2), drops fibers that never started, and frees everything.
//
// Invariants
//   L1  g_sched is non-null exactly while a runtime exists; foreign threads
//       touch it only between claiming a foreign_inflight slot while
//       accepting is true and releasing the slot.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include "netpoll/netpoll.hpp"
#include "runtime/debug_internal.hpp"
#include "runtime/futex.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/sysmon.hpp"
#include "weft/debug.hpp"
#include "weft/detail/introspect.hpp"

namespace weft {
namespace detail {
namespace {

constexpr unsigned max_workers = 1024;
constexpr std::size_t default_stack = 64 * 1024;
constexpr std::size_t max_stack = std::size_t{1} << 30;

std::atomic<bool> g_active{false};       // a runtime exists (run() is between 1 and 4)
std::atomic<bool> g_accepting{false};    // foreign go() allowed (L1)
std::atomic<int> g_foreign_inflight{0};  // foreign go() calls between allocate and launch (L1)
teardown_report g_last_teardown{};

unsigned resolve_workers(unsigned w) {
  if (w == 0) {
    const char* env = std::getenv("WEFT_WORKERS");
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      errno = 0;
      const unsigned long v = std::strtoul(env, &end, 10);
      if (errno != 0 || end == env || *end != '\0' || v == 0 || env[0] == '-') {
        throw std::invalid_argument(std::string("weft::run: WEFT_WORKERS=\"") + env +
                                    "\" is not a positive integer");
      }
      if (v > max_workers) {
        throw std::invalid_argument("weft::run: WEFT_WORKERS=" + std::to_string(v) +
                                    " exceeds the limit of " + std::to_string(max_workers));
      }
      return static_cast<unsigned>(v);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : std::min(hw, max_workers);
  }
  if (w > max_workers) {
    throw std::invalid_argument("weft::run: options.workers = " + std::to_string(w) +
                                " exceeds the limit of " + std::to_string(max_workers));
  }
  return w;
}

options validate(options o) {
  o.workers = resolve_workers(o.workers);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (o.stack_size == 0) o.stack_size = default_stack;
  if (o.stack_size < page) {
    throw std::invalid_argument("weft::run: options.stack_size = " + std::to_string(o.stack_size) +
                                " is below one page (" + std::to_string(page) + " bytes)");
  }
  if (o.stack_size > max_stack) {
    throw std::invalid_argument("weft::run: options.stack_size = " + std::to_string(o.stack_size) +
                                " exceeds 1 GiB");
  }
  o.stack_size = (o.stack_size + page - 1) / page * page;
  if (o.blocking_handoff.count() <= 0) {
    throw std::invalid_argument("weft::run: options.blocking_handoff must be positive");
  }
  if (o.hog_handoff.count() <= 0) {
    throw std::invalid_argument("weft::run: options.hog_handoff must be positive");
  }
  return o;
}

std::vector<unsigned> coprimes_of(unsigned n) {
  std::vector<unsigned> out;
  for (unsigned i = 1; i <= n; ++i) {
    unsigned a = n, b = i;
    while (b != 0) {
      const unsigned t = a % b;
      a = b;
      b = t;
    }
    if (a == 1) out.push_back(i);
  }
  return out;
}

struct main_closure {
  int (*fn)(void*);
  void* arg;
};

const closure_ops main_ops{[](void* c) {
                             auto* mc = static_cast<main_closure*>(c);
                             g_sched->main_result = mc->fn(mc->arg);
                           },
                           [](void*) noexcept {}};

// ---- phase::final ----

void free_closure(fiber* f) noexcept {
  if (f->heap_closure) closure_free(f->closure);
  f->closure = nullptr;
  f->heap_closure = false;
}

struct unwinder {
  scheduler& s;
  machine fm;  // run()'s thread, acting as the only machine
  std::uint64_t unwound = 0;

  // resume: run f (parked or runnable) until it parks again or ends. A
  // fiber resumed for the first time here has park() throw fiber_unwind.
  bool resume(fiber* f, fiber_state expected) {
    if (!f->state.compare_exchange_strong(expected, fiber_state::running)) return false;
    if (!f->unwinding) ++unwound;
    f->unwinding = true;
    fm.curg = f;
    switch_to(fm.ts, fm.g0, f->ctx, {});
    return true;
  }

  // visit: one pass over a record. U1: a fiber on the readied list is left
  // to that list (resuming it here too would resume it twice). Returns true
  // if it made progress.
  bool visit(fiber* f, bool& live) {
    const fiber_state st = f->state.load(std::memory_order_acquire);
    if (st == fiber_state::free || st == fiber_state::dead) return false;
    live = true;
    {
      std::lock_guard<std::mutex> lk(s.final_mu);
      if (f->queued_final) return false;  // U1
    }
    if (f->ctx.fctx == nullptr && f->stack == nullptr) {
      // Never started: destroy the closure without running it.
      if (f->ops != nullptr) f->ops->drop(f->closure);
      free_closure(f);
      f->state.store(fiber_state::dead, std::memory_order_relaxed);
      s.fibers.release(fm.p->records, f);
      ++unwound;
      return true;
    }
    // Parked or queued before shutdown and not unwound yet. (An unwinding
    // fiber parked in a destructor waits for a ready, U1.)
    if (f->unwinding) return false;
    return resume(f, st);
  }

  fiber* pop_readied() {
    std::lock_guard<std::mutex> lk(s.final_mu);
    fiber* f = s.final_first;
    if (f != nullptr) {
      s.final_first = f->link;
      if (s.final_first == nullptr) s.final_last = nullptr;
      f->link = nullptr;
      f->queued_final = false;
    }
    return f;
  }

  void run() {
    set_current_m(&fm);
    fm.tid = static_cast<long>(::gettid());
    init_thread_slots(fm.ts);
    init_thread_context(fm.g0);
    altstack_install();
    fm.p = &s.ps[0];
    s.ps[0].m = &fm;
    for (unsigned i = 0; i < s.np_total; ++i) s.ps[i].runq.reset();
    s.gq.clear();
    // U2: newest first, and whatever that readies before the next one. A
    // fiber's stack often holds objects (mutexes, channels, wait groups)
    // that the fibers it started use; unwinding those first keeps the
    // objects alive for as long as anyone can still touch them.
    for (;;) {
      std::vector<fiber*> order;
      s.fibers.for_each_record([&](fiber* f) {
        const fiber_state st = f->state.load(std::memory_order_acquire);
        if (st != fiber_state::free && st != fiber_state::dead) order.push_back(f);
      });
      if (order.empty()) break;
      std::sort(order.begin(), order.end(),
                [](const fiber* a, const fiber* b) { return a->get_id() > b->get_id(); });
      bool progress = false;
      for (fiber* f : order) {
        bool live = false;
        if (visit(f, live)) progress = true;
        while (fiber* r = pop_readied()) {
          if (resume(r, fiber_state::runnable)) progress = true;
        }
      }
      if (!progress) report_stuck();
    }
    for (unsigned i = 0; i < s.np_total; ++i) {
      s.stacks.flush(s.ps[i].stacks);
      s.fibers.flush(s.ps[i].records);
    }
    altstack_remove();
    set_current_m(nullptr);
  }

  [[noreturn]] void report_stuck() {
    s.fibers.for_each_record([&](fiber* f) {
      const fiber_state st = f->state.load(std::memory_order_acquire);
      if (st == fiber_state::free || st == fiber_state::dead) return;
      std::fprintf(stderr,
                   "weft: fiber %llu (started at %s:%u) blocked in a destructor while being "
                   "unwound at shutdown\n",
                   static_cast<unsigned long long>(f->get_id()), f->get_file(), f->get_line());
    });
    std::abort();
  }
};

void wait_all_idle(scheduler& s) {
  while (s.all_idle.load(std::memory_order_acquire) == 0) futex_wait(s.all_idle, 0);
}

}  // namespace

int run_main(int (*main_fn)(void*), void* arg, const options& opts_in, const char* file,
             unsigned line) {
  const options opts = validate(opts_in);
  bool expected = false;
  if (!g_active.compare_exchange_strong(expected, true)) {
    throw std::logic_error("weft::run: a runtime is already running in this process");
  }
  struct release_active {
    ~release_active() { g_active.store(false); }
  } release_guard;

  install_overflow_handler();
  asym_fence_init();
  auto* s = new scheduler();
  s->opts = opts;
  s->nprocs = opts.workers;
  s->np_total = 2 * opts.workers;  // the second half: spares sysmon lends to cover hogs
  s->ps = new processor[s->np_total];
  s->coprimes = coprimes_of(s->np_total);
  s->stacks.init(opts.stack_size);
  for (unsigned i = 0; i < s->np_total; ++i) {
    s->ps[i].index = i;
    s->ps[i].spare = i >= opts.workers;
  }
  s->nactive.store(static_cast<int>(opts.workers), std::memory_order_relaxed);
  // Processors 1..n-1 start idle; processor 0 runs main.
  for (unsigned i = opts.workers; i-- > 1;) {
    processor* p = &s->ps[i];
    p->status.store(p_status::idle, std::memory_order_relaxed);
    p->idle_link = s->pidle;
    s->pidle = p;
  }
  s->npidle.store(static_cast<int>(opts.workers) - 1);
  g_sched = s;

  main_closure mc{main_fn, arg};
  fiber* mainf = s->fibers.acquire(s->ps[0].records);
  mainf->id.store(next_fiber_id(&s->ps[0]), std::memory_order_relaxed);
  mainf->is_main = true;
  static_assert(sizeof(main_closure) <= fiber::inline_size);
  mainf->closure = ::new (mainf->inline_) main_closure(mc);
  mainf->ops = &main_ops;
  mainf->set_site(file, line);
  mainf->state.store(fiber_state::runnable, std::memory_order_relaxed);
  s->ps[0].started.inc();
  s->ps[0].runq.push(mainf);

  s->run_caller_tid = static_cast<long>(::gettid());
  s->started_ns = now_ns();
  if (const char* v = std::getenv("WEFT_MAX_THREADS")) {
    const long n = std::strtol(v, nullptr, 10);
    if (n <= 0)
      throw std::invalid_argument(std::string("weft::run: WEFT_MAX_THREADS=\"") + v +
                                  "\" is not a positive integer");
    s->max_threads = static_cast<std::size_t>(n);
  }
  if (const char* v = std::getenv("WEFT_SCHEDTRACE")) {
    const long ms = std::strtol(v, nullptr, 10);
    if (ms > 0) s->schedtrace_ns = ms * 1000000;
  }
  sigquit_install();
  s->poll.start();
  sysmon_start(*s);
  // The runtime's service threads exist now, and no user code has run yet:
  // any other thread already running is not a party to deadlocks unless it
  // calls in (deadlock.cpp). Workers are recognised by their machines.
  parties_begin(*s);
  g_accepting.store(true, std::memory_order_seq_cst);
  start_first_machine(&s->ps[0]);

  // 2. Wait for main to return and every worker to go idle.
  wait_all_idle(*s);

  // 3. Stop accepting foreign go(); wait for those in flight.
  g_accepting.store(false, std::memory_order_seq_cst);
  while (g_foreign_inflight.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  sysmon_stop(*s);
  s->poll.stop();
  s->ph.store(phase::final, std::memory_order_seq_cst);
  wake_all_for_exit();
  join_machines();

  // 4. Unwind what is left, then free everything.
  unwinder u{*s, {}};
  u.run();
  teardown_report rep{};
  rep.fibers_unwound = u.unwound;
  // Runtime-owned timers (after, ticker) still queued are disposed, not
  // leaked: only the others count as pending.
  const std::size_t queued = s->poll.timers_pending();
  rep.timers_disposed = s->poll.destroy();
  rep.timers_pending = queued - rep.timers_disposed;
  rep.stacks_out = s->stacks.stacks_out();
  rep.fiber_records_live = s->fibers.total() - s->fibers.free_shared();
  rep.threads_alive = s->live_threads.load();
  g_last_teardown = rep;

  sigquit_remove();
  std::exception_ptr exc = s->main_exception;
  const int result = s->main_result;
  const bool deadlocked = s->deadlocked;
  std::string deadlock_message = std::move(s->deadlock_message);
  s->stacks.destroy();
  s->fibers.destroy();
  g_sched = nullptr;
  delete[] s->ps;
  delete s;
  if (deadlocked) throw deadlock_error(deadlock_message);
  if (exc) std::rethrow_exception(exc);
  return result;
}

// ---- go ----

fiber* allocate_fiber(std::size_t size, std::size_t align, void** storage) {
  machine* m = current_m();
  fiber* f = nullptr;
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    f = g_sched->fibers.acquire(m->p->records);
    f->id.store(next_fiber_id(m->p), std::memory_order_relaxed);
  } else {
    if (m == nullptr) {
      g_foreign_inflight.fetch_add(1, std::memory_order_seq_cst);
      if (!g_accepting.load(std::memory_order_seq_cst)) {
        g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst);
        throw std::logic_error(g_active.load()
                                   ? "weft::go: the runtime is shutting down"
                                   : "weft::go: no runtime is running (call it inside weft::run)");
      }
      note_foreign_call();
    }
    try {
      f = g_sched->fibers.acquire_shared();
    } catch (...) {
      if (m == nullptr) g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst);
      throw;
    }
    f->id.store(next_fiber_id(nullptr), std::memory_order_relaxed);
  }
  if (size <= fiber::inline_size && align <= alignof(std::max_align_t)) {
    f->closure = f->inline_;
  } else {
    try {
      f->closure = closure_alloc(size, align);
    } catch (...) {
      discard_fiber(f);
      throw;
    }
    f->heap_closure = true;
  }
  *storage = f->closure;
  return f;
}

void launch_fiber(fiber* f, const closure_ops* ops, const char* file, unsigned line) noexcept {
  f->ops = ops;
  f->set_site(file, line);
  machine* m = current_m();
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    m->p->started.inc();
  } else {
    g_sched->shared_started.fetch_add(1, std::memory_order_relaxed);
  }
  ready_spawned(f);
  if (m == nullptr) g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst);
}

void discard_fiber(fiber* f) noexcept {
  if (f->heap_closure) {
    closure_free(f->closure);
    f->heap_closure = false;
  }
  machine* m = current_m();
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    g_sched->fibers.release(m->p->records, f);
  } else {
    g_sched->fibers.release_shared(f);
  }
  if (m == nullptr) g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst);
}

teardown_report last_teardown() noexcept { return g_last_teardown; }

runtime_pin::runtime_pin() noexcept {
  g_foreign_inflight.fetch_add(1, std::memory_order_seq_cst);
  ok_ = g_sched != nullptr && g_accepting.load(std::memory_order_seq_cst);
}

runtime_pin::~runtime_pin() { g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst); }

long worker_tid() noexcept {
  machine* m = current_m();
  return m != nullptr ? m->tid : 0;
}

}  // namespace detail

// ---- public ----

void yield() { detail::yield_current(); }

std::uint64_t this_fiber_id() noexcept {
  detail::fiber* f = detail::current_fiber();
  return f != nullptr ? f->get_id() : 0;
}

bool in_fiber() noexcept { return detail::current_fiber() != nullptr; }

runtime_stats stats() noexcept {
  runtime_stats r{};
  detail::runtime_pin pin;  // the runtime cannot be torn down under us (L1)
  if (!pin) return r;
  detail::scheduler* s = detail::g_sched;
  std::uint64_t started = s->shared_started.load(std::memory_order_relaxed);
  std::uint64_t finished = 0, runnable = s->gq.size_hint();
  for (unsigned i = 0; i < s->np_total; ++i) {
    detail::processor& p = s->ps[i];
    started += p.started.get();
    finished += p.finished.get();
    r.context_switches += p.schedtick.load(std::memory_order_relaxed);
    r.steals += p.steals.get();
    runnable += p.runq.size();
  }
  r.fibers_started = started;
  r.fibers_alive = started >= finished ? started - finished : 0;
  r.fibers_runnable = runnable;
  r.workers = s->nprocs;
  // Worker threads plus the poller and sysmon.
  r.threads = s->live_threads.load(std::memory_order_relaxed) + 2;
  {
    std::lock_guard<std::mutex> lk(s->mu);
    r.idle_threads = s->nmidle;
  }
  const std::uint64_t running = static_cast<std::uint64_t>(s->nm_running.load());
  const std::uint64_t busy = runnable + running;
  r.fibers_parked = r.fibers_alive > busy ? r.fibers_alive - busy : 0;
  r.handoffs = detail::sysmon_handoffs(*s);
  r.netpoll_wakeups = detail::netpoll_wakeups();
  return r;
}

}  // namespace weft
