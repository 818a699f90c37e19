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
// Fork
//   A child forked while a runtime exists holds a copy of its memory but
//   only the forking thread: no worker, poller or sysmon, and the epoll set
//   is the parent's (the child's descriptor shares the open file), so an
//   epoll_wait in the child would steal the parent's edge-triggered events.
//   The child's atfork handler marks the child (g_forked), turns the copied
//   scheduler's phase to `forked` and its idle-processor count to zero (so
//   no wakeup starts a thread) and detaches netpoll from the epoll set.
//   From then on run() and go() throw std::logic_error, every runtime_pin
//   fails, a fiber's sleep or descriptor wait throws, and a fiber that needs
//   the scheduler (to park, yield or finish) ends in find_runnable, which
//   aborts with the same message; nothing in the child touches the parent's
//   epoll set or starts a thread. posix_spawn, system(), popen and vfork run
//   no atfork handler and share (and change) nothing: fork+exec keeps
//   working from a fiber. A child forked between runs may call run().
//
// Invariants
//   L1  g_sched is non-null exactly while a runtime exists. A runtime
//       thread (a worker, the poller, sysmon, run()'s thread while it
//       unwinds) may read it at any time: run() joins them all before it
//       clears g_sched. Every entry into weft from any other thread (a plain
//       thread) holds a runtime_pin for as long as it touches g_sched or
//       anything reached through it, or proves that no runtime exists (a
//       failed pin). A pin is a foreign_inflight slot claimed while
//       accepting is true; run() clears accepting and waits until no slot
//       is held (step 3) before it tears anything down. Happens-before:
//       run() writes g_sched before its seq_cst store of accepting = true,
//       which the pin's seq_cst load reads; the pin's release (seq_cst
//       fetch_sub) is read by run()'s seq_cst load that finds no slot held,
//       which precedes clearing g_sched and the delete. So g_sched stays a
//       plain pointer, free to read on every scheduling decision. One
//       exception, ready() from a plain thread once accepting is false: the
//       waker then holds the lock that the fiber's unwinding must take
//       (chan_core.hpp C5), and the runtime cannot finish before it.
//   U1  In phase final a fiber is resumed once per wake: a ready() lists
//       it (parked -> runnable) and the unwinder's sweep claims it
//       (parked or runnable -> running) under one lock, final_mu; a listed
//       fiber is the list's to resume, and a wake for a fiber the sweep
//       already resumed is spent (ready_final, switch.cpp). A wake for a
//       fiber that already finished means its waker read a dead waiter
//       (chan_core.hpp C5 broken): a WEFT_DCHECK, and counted in
//       teardown_report::late_wakes for the tests.
//   U2  Unwinding order: newest first (unwinder::run).
//   U3  In phase final a fiber that never started is dropped, never
//       resumed: go() from a destructor being unwound queues nothing
//       (ready_spawned, switch.cpp) and the sweep destroys its closure
//       unrun; enter() checks that the fiber has a context.
//   U4  No machine is started or woken once run() told the machines to
//       exit. Sysmon and the poller are joined before phase final, and
//       idle workers only go back to sleep. A plain thread's ready()
//       reads the phase inside scheduler::foreign_readies; run() stores
//       phase::final, then waits for that count to reach 0 before
//       wake_all_for_exit, so each such ready either sees final (and only
//       lists the fiber, U1) or has finished its wakep. (Otherwise a
//       thread preempted inside ready() could resume after join_machines
//       and start a worker on a scheduler about to be freed.) The count
//       guards the machines, not the scheduler's memory: a pin that keeps
//       g_sched alive around a whole foreign call (L1) nests outside it.
//   U5  The phase only moves forward: running -> stopping (main returned,
//       or sysmon's deadlock verdict) -> final (run()), all through
//       advance_phase. On a deadlock main is unwound in phase final like
//       any fiber, and its return must not put the phase back to
//       stopping: ready() would then queue the fibers that destructors
//       wake on processor 0 (and wake machines) instead of listing them
//       for the unwinder, which would never resume them.
//   U6  A fiber being unwound never waits for time or turns: only run()'s
//       thread runs fibers then, one at a time, and no timer fires (the
//       poller is stopped). So in its destructors yield() returns at once
//       and sleep_for/sleep_until return at once (switch.cpp, time.cpp).
//       Parked, they would wait for a wake that cannot come, and the
//       sweep would abort with "blocked in a destructor".

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include "runtime/debug_internal.hpp"
#include "runtime/futex.hpp"
#include "runtime/netpoll_contract.hpp"
#include "runtime/os_thread.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/sysmon.hpp"
#include "weft/debug.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/duration.hpp"
#include "weft/detail/introspect.hpp"
#include "weft/detail/perturb.hpp"

namespace weft {
namespace detail {
namespace {

constexpr unsigned max_workers = 1024;
constexpr std::size_t default_stack = 64 * 1024;
constexpr std::size_t max_stack = std::size_t{1} << 30;
constexpr std::uint64_t default_max_threads = 10000;   // Go's default
constexpr std::uint64_t max_threads_limit = 4194304;   // PID_MAX_LIMIT
constexpr std::uint64_t max_schedtrace_ms = 86400000;  // a day

std::atomic<bool> g_active{false};       // a runtime exists (run() is between 1 and 4)
std::atomic<bool> g_accepting{false};    // plain threads may enter (L1)
std::atomic<int> g_foreign_inflight{0};  // runtime_pins held, and foreign go() calls in flight (L1)
teardown_report g_last_teardown{};

// The WEFT_* environment. A variable set to the empty string counts as
// unset. Every value is checked before anything is built, so a bad one
// fails run() with nothing to undo.
const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

[[noreturn]] void bad_env(const char* name, const char* value, const std::string& why) {
  throw std::invalid_argument(std::string("weft::run: ") + name + "=\"" + value + "\" " + why);
}

// env_integer: `name` as a decimal integer from lo to hi (digits only), or
// `unset` when it is not set.
std::uint64_t env_integer(const char* name, std::uint64_t lo, std::uint64_t hi,
                          std::uint64_t unset) {
  const char* v = env_value(name);
  if (v == nullptr) return unset;
  const char* end = v + std::strlen(v);
  std::uint64_t n = 0;
  const auto [ptr, ec] = std::from_chars(v, end, n);
  if (ec != std::errc() || ptr != end || n < lo || n > hi) {
    bad_env(name, v, "is not an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return n;
}

unsigned resolve_workers(unsigned w) {
  if (w == 0) {
    const unsigned hw = std::thread::hardware_concurrency();
    return static_cast<unsigned>(
        env_integer("WEFT_WORKERS", 1, max_workers, hw == 0 ? 1 : std::min(hw, max_workers)));
  }
  if (w > max_workers) {
    throw std::invalid_argument("weft::run: options.workers = " + std::to_string(w) +
                                " exceeds the limit of " + std::to_string(max_workers));
  }
  return w;
}

// settings: run()'s options and environment, validated.
struct settings {
  options opts;
  std::size_t max_threads;     // WEFT_MAX_THREADS
  std::int64_t schedtrace_ns;  // WEFT_SCHEDTRACE, 0 = off
  bool sigquit_dump;           // WEFT_SIGQUIT=dump
  bool worker_poll;            // WEFT_NETPOLL_WORKER_POLL
};

settings validate(options o) {
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
  // sysmon works in nanoseconds: longer hand-off times saturate (never, in effect).
  const std::chrono::nanoseconds never(never_ns);
  o.blocking_handoff =
      std::min(o.blocking_handoff, std::chrono::duration_cast<std::chrono::microseconds>(never));
  o.hog_handoff =
      std::min(o.hog_handoff, std::chrono::duration_cast<std::chrono::milliseconds>(never));
  settings st{o, 0, 0, false, true};
  // The limit counts worker threads, so it must at least allow one per
  // processor; no Linux process can have more than PID_MAX_LIMIT threads.
  st.max_threads =
      env_integer("WEFT_MAX_THREADS", o.workers, max_threads_limit, default_max_threads);
  st.schedtrace_ns =
      static_cast<std::int64_t>(env_integer("WEFT_SCHEDTRACE", 0, max_schedtrace_ms, 0)) * 1000000;
  if (const char* v = env_value("WEFT_SIGQUIT")) {
    if (std::strcmp(v, "dump") != 0) bad_env("WEFT_SIGQUIT", v, "is not dump");
    st.sigquit_dump = true;
  }
  st.worker_poll = env_integer("WEFT_NETPOLL_WORKER_POLL", 0, 1, 1) == 1;
  return st;
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

  // enter: run f, which this thread has claimed (state running), until it
  // parks again or ends. A fiber entered for the first time here has
  // park() throw fiber_unwind.
  void enter(fiber* f) {
    // fiber.hpp F3 (U3): only a fiber that has started has a context to resume.
    if (f->ctx.fctx == nullptr) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "fiber %llu (started at %s:%u) has no context",
                    static_cast<unsigned long long>(f->get_id()), f->get_file(), f->get_line());
      check_failed(__FILE__, __LINE__, "the unwinder resumes only a fiber that has started", msg);
    }
    if (!f->unwinding) ++unwound;
    f->unwinding = true;
    fm.curg = f;
    switch_to(fm.ts, fm.g0, f->ctx, {});
  }

  // visit: one pass over a record. U1: a fiber on the readied list is left
  // to that list (resuming it here too would resume it twice); the check
  // and the claim happen under final_mu, where ready() lists a fiber
  // (ready_final, switch.cpp). Returns true if it made progress.
  bool visit(fiber* f, bool& live) {
    fiber_state st = f->state.load(std::memory_order_acquire);
    if (st == fiber_state::free || st == fiber_state::dead) return false;
    live = true;
    if (f->ctx.fctx == nullptr && f->stack == nullptr) {
      // Never started (U3; never listed): destroy the closure without running it.
      if (f->ops != nullptr) f->ops->drop(f->closure);
      free_closure(f);
      transition(f, fiber_state::runnable, fiber_state::dead);
      s.fibers.release(fm.p->records, f);
      ++unwound;
      return true;
    }
    // Parked or queued before shutdown and not unwound yet. (An unwinding
    // fiber parked in a destructor waits for a ready, U1.)
    if (f->unwinding) return false;
    {
      os_lock lk(s.final_mu);
      if (f->queued_final) return false;  // U1
      if (!f->state.compare_exchange_strong(st, fiber_state::running, std::memory_order_relaxed)) {
        return false;
      }
    }
    enter(f);
    return true;
  }

  // pop_readied: take the oldest readied fiber and claim it (U1: nobody
  // else changes the state of a listed fiber).
  fiber* pop_readied() {
    os_lock lk(s.final_mu);
    fiber* f = s.final_first;
    if (f != nullptr) {
      s.final_first = f->link;
      if (s.final_first == nullptr) s.final_last = nullptr;
      f->link = nullptr;
      f->queued_final = false;
      fiber_state st = fiber_state::runnable;
      const bool claimed =
          f->state.compare_exchange_strong(st, fiber_state::running, std::memory_order_relaxed);
      WEFT_CHECK(claimed, "U1: a readied fiber is resumed once");
    }
    return f;
  }

  void run() {
    set_current_m(&fm);
    fm.tid.store(static_cast<long>(::gettid()), std::memory_order_relaxed);
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
    // Resident records only: a record on a page the scavenger released is
    // free (fiber_pool.hpp P1), and reading it would fault the page back in
    // (here: allocate it): 42 MB after the 200,000-fiber memory test. Exact
    // here, not just a snapshot: every thread that could take a record is
    // gone but this one, which runs no fiber while it walks.
    for (;;) {
      std::vector<fiber*> order;
      s.fibers.for_each_resident_record([&](fiber* f) {
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
          enter(r);
          progress = true;
        }
        perturb(perturb_site::unwind);  // let foreign threads act between two unwinds
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
    s.fibers.for_each_resident_record([&](fiber* f) {
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

const char* const forked_message =
    "the runtime cannot be used in a forked child; call run() again after exec";

// on_fork_child: the atfork child handler ("Fork"). Async-signal-safe:
// plain stores into the child's copy of the runtime.
void on_fork_child() noexcept {
  if (!g_active.load(std::memory_order_relaxed)) return;
  g_forked.store(true, std::memory_order_relaxed);
  if (scheduler* s = g_sched) {
    s->ph.store(phase::forked, std::memory_order_relaxed);
    s->npidle.store(0, std::memory_order_relaxed);
  }
  netpoll_forked();
}

}  // namespace

std::atomic<bool> g_forked{false};

void throw_forked_child(const char* api) {
  throw std::logic_error(std::string(api) + ": " + forked_message);
}

void forked_child_fatal() noexcept {
  std::fprintf(stderr, "weft: %s\n", forked_message);
  std::abort();
}

int run_main(int (*main_fn)(void*), void* arg, const options& opts_in, const char* file,
             unsigned line) {
  static const int atfork = ::pthread_atfork(nullptr, nullptr, &on_fork_child);
  (void)atfork;
  if (forked_child()) throw_forked_child("weft::run");
  const settings st = validate(opts_in);
  const options& opts = st.opts;
  bool expected = false;
  if (!g_active.compare_exchange_strong(expected, true)) {
    throw std::logic_error("weft::run: a runtime is already running in this process");
  }
  struct release_active {
    ~release_active() { g_active.store(false); }
  } release_guard;
  WEFT_CHECK(g_sched == nullptr, "a runtime that no longer runs left its scheduler behind (L1)");

  install_overflow_handler();
  asym_fence_init();
  perturb_init();
  // Until a worker runs, a failure (no memory, no descriptor or thread to
  // be had) undoes what was built, and g_sched is null again (L1).
  struct unbuild {
    scheduler* s;
    bool sigquit = false, poller = false, sysmon = false;
    ~unbuild() {
      if (s == nullptr) return;
      if (sysmon) sysmon_stop(*s);
      if (poller) {
        netpoll_thread_stop();
        g_timers.clear();
        netpoll_thread_destroy();
      }
      if (sigquit) sigquit_remove();
      g_sched = nullptr;
      s->stacks.destroy();
      s->fibers.destroy();
      delete[] s->ps;
      delete s;
    }
  } build{new scheduler()};
  scheduler* s = build.s;
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
  // Processors 1..n-1 start idle; processor 0 runs main. (No other
  // thread exists yet; the lock is for the analysis, and costs nothing.)
  {
    os_lock lk(s->mu);
    for (unsigned i = opts.workers; i-- > 1;) {
      processor* p = &s->ps[i];
      p->status.store(p_status::idle, std::memory_order_relaxed);
      p->idle_link = s->pidle;
      s->pidle = p;
    }
  }
  s->npidle.store(static_cast<int>(opts.workers) - 1);
  s->max_threads = st.max_threads;
  s->sysmon.trace_every_ns = st.schedtrace_ns;
  g_timers.begin_run();
  g_sched = s;

  main_closure mc{main_fn, arg};
  fiber* mainf = s->fibers.acquire(s->ps[0].records);
  mainf->id.store(next_fiber_id(&s->ps[0]), std::memory_order_relaxed);
  mainf->is_main.store(true, std::memory_order_relaxed);
  static_assert(sizeof(main_closure) <= fiber::inline_size);
  mainf->closure = ::new (mainf->inline_) main_closure(mc);
  mainf->ops = &main_ops;
  mainf->set_site(file, line);
  mainf->publish_identity();  // F5
  transition(mainf, fiber_state::free, fiber_state::runnable);
  s->ps[0].started.inc();
  s->ps[0].runq.push(mainf);

  s->dl.run_caller_tid = static_cast<long>(::gettid());
  s->sysmon.started_ns = now_ns();
  if (st.sigquit_dump) {
    sigquit_install();
    build.sigquit = true;
  }
  build.poller = true;  // stop() and destroy() undo a partial start() too
  netpoll_thread_start(s->np_total, st.worker_poll);
  sysmon_start(*s);
  build.sysmon = true;
  // The runtime's service threads exist now, and no user code has run yet:
  // any other thread already running is not a party to deadlocks unless it
  // calls in (deadlock.cpp). Workers are recognised by their machines.
  parties_begin(*s);
  perturb_run_begin();
  build.s = nullptr;
  g_accepting.store(true, std::memory_order_seq_cst);
  start_first_machine(&s->ps[0]);

  // 2. Wait for main to return and every worker to go idle.
  wait_all_idle(*s);

  // 3. Stop accepting foreign go(); wait for those in flight.
  g_accepting.store(false, std::memory_order_seq_cst);
  parties_end();
  while (g_foreign_inflight.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  sysmon_stop(*s);
  perturb_run_end();
  netpoll_thread_stop();
  const phase was = advance_phase(*s, phase::final);
  WEFT_CHECK(was == phase::stopping, "U5: phase final follows stopping");
  // U4: a plain thread's ready() that read an earlier phase finishes (its
  // wakep may still start a machine) before the machines are told to exit.
  while (s->foreign_readies.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  wake_all_for_exit();
  join_machines();
  // No thread is left to honour or withdraw a preemption request.
  for (unsigned i = 0; i < s->np_total; ++i) drop_preempt(&s->ps[i]);
  WEFT_DCHECK(g_preempt_requests.load(std::memory_order_relaxed) == 0,
              "run: preemption requests counted without a flagged processor");
  blocking_pool_stop();

  // 4. Unwind what is left, then free everything.
  unwinder u{*s, {}};
  u.run();
  teardown_report rep{};
  rep.fibers_unwound = u.unwound;
  {
    os_lock lk(s->final_mu);  // every thread that could take it is gone
    rep.late_wakes = s->late_wakes;
  }
  // Runtime-owned timers (after, ticker) still queued are disposed, not
  // leaked: only the others count as pending.
  const std::size_t queued = g_timers.pending();
  rep.timers_disposed = g_timers.clear();
  netpoll_thread_destroy();
  rep.timers_pending = queued - rep.timers_disposed;
  rep.stacks_out = s->stacks.stacks_out();
  rep.fiber_records_live = s->fibers.total() - s->fibers.free_shared();
  rep.threads_alive = s->live_threads.load();
  g_last_teardown = rep;

  sigquit_remove();
  std::exception_ptr exc = s->main_exception;
  const int result = s->main_result;
  const bool deadlocked = s->dl.deadlocked;
  std::string deadlock_message = std::move(s->dl.message);
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
  if (forked_child()) throw_forked_child("weft::go");
  machine* m = current_m();
  fiber* f = nullptr;
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    if (m->p->records.count != 0) {
      f = g_sched->fibers.acquire(m->p->records);
    } else {
      runtime_work rw(m->p);  // the pool's lock, and perhaps a new chunk
      f = g_sched->fibers.acquire(m->p->records);
    }
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
  f->publish_identity();  // F5: before the fiber can be seen running
  machine* m = current_m();
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    m->p->started.inc();
  } else {
    g_sched->shared_started.fetch_add(1, std::memory_order_relaxed);
  }
  ready_spawned(f);
  if (m == nullptr) {
    g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  if (perturb_on()) perturb_yield_point();  // sometimes let the new fiber (or others) run first
  // A loop spawning fibers is a loop without scheduling points: let it
  // yield here when sysmon asks (park.hpp), like a channel operation.
  preempt_point();
  // Spawn backlog: a spawner that outruns the workers running what it
  // spawns makes every queued fiber's record live at once (a million
  // spawns, a million records: 220 MB of fresh pages, each page a fault).
  // When its ring spills into a global queue of spawn_backlog_max fibers
  // after it has spawned more than a ring's worth since it was switched
  // in, it yields to the global queue's tail, and its worker runs what it
  // queued (its ring, then the global queue) before it spawns more. Only
  // such a fiber: one that starts a few children and then waits for them
  // (skynet's nodes) must not yield to them, or they run first and park
  // holding stacks, which costs more than records (perf/RESULTS.md,
  // "Spawn backlog").
  m = current_m();
  processor* p = m->p;
  if (p == nullptr || m->in_blocking || m->curg == nullptr) return;
  const std::uint64_t tick = p->schedtick.load(std::memory_order_relaxed);
  if (p->spawn_tick != tick) {
    p->spawn_tick = tick;
    p->spawn_run = 0;
  }
  ++p->spawn_run;
  if (p->spawn_backlog) {
    p->spawn_backlog = false;
    if (p->spawn_run > local_queue_size) {
      try {
        yield_behind_global();
      } catch (...) {
        // Shutdown: the unwind resurfaces at this fiber's next park, as
        // after a preemption (park.cpp).
      }
    }
  }
}

void discard_fiber(fiber* f) noexcept {
  f->publish_identity();  // F5: the incarnation ends unused
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
  if (current_m() != nullptr) {
    ok_ = !forked_child();  // a runtime thread: the runtime outlives it (L1)
    return;
  }
  // seq_cst: the Dekker pair with run()'s store of accepting = false and its
  // load of the slot count (L1); a successful load also orders run()'s
  // earlier write of g_sched before our reads of it.
  g_foreign_inflight.fetch_add(1, std::memory_order_seq_cst);
  counted_ = true;
  ok_ = g_accepting.load(std::memory_order_seq_cst) && !forked_child();
}

runtime_pin::~runtime_pin() {
  if (counted_) g_foreign_inflight.fetch_sub(1, std::memory_order_seq_cst);
}

long worker_tid() noexcept {
  machine* m = current_m();
  return m != nullptr ? m->tid.load(std::memory_order_relaxed) : 0;
}

unsigned idle_processors() noexcept {
  scheduler* s = g_sched;
  return s != nullptr ? static_cast<unsigned>(s->npidle.load(std::memory_order_acquire)) : 0;
}

bool runtime_threads_entered() noexcept {
  // O1: entered first. Equal counts then mean no thread was created between
  // the two loads, and every thread created before them has entered.
  const std::uint64_t entered = g_os_threads_entered.load(std::memory_order_acquire);
  return entered == g_os_threads_started.load(std::memory_order_relaxed);
}

bool sysmon_sleeps_untimed() noexcept {
  runtime_pin pin;  // L1
  return pin && g_sched->sysmon.untimed.load(std::memory_order_relaxed);
}

std::uint64_t hogs_reported() noexcept {
  runtime_pin pin;  // L1
  return pin ? g_sched->sysmon.hogs.load(std::memory_order_relaxed) : 0;
}

memory_report memory() noexcept {
  scheduler* s = g_sched;
  if (s == nullptr) return {};
  return memory_report{s->stacks.stacks_out(), s->stacks.warm_free(), s->stacks.cold_free(),
                       s->fibers.cold_free()};
}

bool holds_own_processor() noexcept {
  machine* m = current_m();
  if (m == nullptr || m->p == nullptr || m->in_blocking) return false;
  const processor* p = m->p;
  return p->m == m &&
         p->m_tid.load(std::memory_order_relaxed) == m->tid.load(std::memory_order_relaxed) &&
         p->current.load(std::memory_order_relaxed) == m->curg &&
         p->status.load(std::memory_order_relaxed) == p_status::running;
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
    detail::os_lock lk(s->mu);
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
