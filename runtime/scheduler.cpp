// scheduler.cpp: machines and processors: how machines find fibers to run,
// and how they sleep.
//
// Design
//   Go's scheduler (proc.go): processors with local queues and a `next`
//   slot, a global queue, stealing half from a random victim, idle machines
//   parked on a futex. A fiber that parks or yields switches directly to the
//   next fiber of its processor (switch.cpp); only when there is none does it
//   switch to its machine's g0, which looks further (global queue, theft) and
//   sleeps. This file: the idle lists, starting and stopping machines, the
//   spinning protocol, the g0 loop, sysmon's hooks and blocking(). switch.cpp
//   readies fibers and switches between them (its head: the park protocol,
//   W2-W4); sched_internal.hpp holds what both files use.
//
// Spinning ("Worker thread parking/unparking" in Go's proc.go)
//   A machine with a processor but no work becomes *spinning* while it looks
//   for work to steal. At most half the busy processors' worth of machines
//   spin. The rules that make wakeups impossible to lose:
//   K1  A submitter (ready, go, inject) publishes the fiber, executes
//       asym_light(), then wakes a machine only if some processor is idle
//       and no machine is spinning (wakep). A spinning machine will find it.
//   K2  A spinning machine that finds work stops spinning and calls wakep(),
//       so a burst of submissions fans out one machine at a time.
//   K3  A machine giving up puts its processor on the idle list (npidle++),
//       stops spinning (nmspinning--), executes asym_heavy(), and only then
//       re-checks every local queue and the global queue; if anything is
//       there it takes an idle processor back and starts over.
//   K4  Before K3, a spinning machine lingers (spins, still counted) for a
//       few tens of microseconds while others are busy (linger()).
//   K1 and K3 are the two halves of a Dekker handshake (asym_fence.hpp):
//   either the submitter sees the idle processor (and wakes someone), or
//   the idling machine sees the work. The submitter's side costs a compiler
//   barrier; the idler, about to sleep anyway, pays for a membarrier.
//   Rejected: waking a machine on every submission (a futex wake costs
//   microseconds and would dominate ping-pong at 2 workers), and polling.
//
// Invariants
//   W1  Only the machine holding a processor pushes to its queue, writes its
//       `next` slot or touches its caches (processor.hpp P1). Inside
//       blocking() a machine does not touch its processor at all.
//   W2-W4 (who resumes a fiber, machine::curg, the shutdown phases): switch.cpp.
//   S1  A machine told to exit never sleeps again: wake_all_for_exit sets
//       wake_exit in the machine's futex word, stopm consumes only
//       wake_woken, and every sleep (stopm) and every lap of find_runnable
//       looks at wake_exit. (A startm racing with shutdown, from a plain
//       thread's ready, wakes the same machine outside mu; were the exit a
//       wake that stopm consumes, the two wakes could merge into one and
//       the machine would sleep through join_machines.)

#include "runtime/scheduler.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <thread>

#include "runtime/asym_fence.hpp"
#include "runtime/futex.hpp"
#include "runtime/netpoll_contract.hpp"
#include "runtime/os_thread.hpp"
#include "runtime/sched_internal.hpp"
#include "weft/blocking.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/perturb.hpp"

namespace weft::detail {

scheduler* g_sched = nullptr;

namespace {

// ---- processors and machines under sched::mu ----

[[maybe_unused]] bool on_idle_list(const processor* p) noexcept WEFT_REQUIRES(g_sched->mu) {
  for (const processor* q = g_sched->pidle; q != nullptr; q = q->idle_link) {
    if (q == p) return true;
  }
  return false;
}

void pidle_put(processor* p) noexcept WEFT_REQUIRES(g_sched->mu) {
  WEFT_DCHECK(!on_idle_list(p), "processor.hpp P2: an idle processor is listed once");
  drop_preempt(p);  // before npidle counts it (introspect's idle_processors)
  p->status.store(p_status::idle, std::memory_order_relaxed);
  p->m = nullptr;
  p->idle_link = g_sched->pidle;
  g_sched->pidle = p;
  g_sched->npidle.fetch_add(1, std::memory_order_seq_cst);  // K3
}

processor* pidle_get() noexcept WEFT_REQUIRES(g_sched->mu) {
  processor* p = g_sched->pidle;
  if (p == nullptr) return nullptr;
  g_sched->pidle = p->idle_link;
  p->idle_link = nullptr;
  WEFT_DCHECK(p->status.load(std::memory_order_relaxed) == p_status::idle && p->m == nullptr,
              "processor.hpp P1/P2: a listed processor is idle and unheld");
  [[maybe_unused]] const int was = g_sched->npidle.fetch_sub(1, std::memory_order_seq_cst);
  WEFT_DCHECK(was > 0, "npidle counts the idle list");
  return p;
}

void acquire_p(machine* m, processor* p) noexcept {
  WEFT_DCHECK(m->p == nullptr && p->m == nullptr, "processor.hpp P1: one holder per processor");
  m->p = p;
  p->m = m;
  p->m_tid.store(m->tid.load(std::memory_order_relaxed), std::memory_order_relaxed);
  p->status.store(p_status::running, std::memory_order_release);
  sysmon_poke(*g_sched, nullptr);  // it may sleep untimed because every processor was idle
}

// release_p: the machine gives up its processor because it found no work
// (requires mu). A lent spare goes back to sleep instead of to the idle list.
void release_p(machine* m, processor* p) noexcept WEFT_REQUIRES(g_sched->mu) {
  m->p = nullptr;
  if (p->spare) {
    drop_preempt(p);
    g_sched->stacks.flush(p->stacks);
    g_sched->fibers.flush(p->records);
    p->m = nullptr;
    p->status.store(p_status::dead, std::memory_order_relaxed);
    g_sched->nactive.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  pidle_put(p);
}

void notewakeup(machine* m) noexcept {
  m->wake.fetch_or(machine::wake_woken, std::memory_order_release);  // pairs with stopm (S1)
  futex_wake(m->wake);
}

void machine_main(machine* m) noexcept;

void newm(processor* p, bool spinning) {
  auto* m = new machine();
  m->nextp = p;
  m->spinning = spinning;
  {
    os_lock lk(g_sched->mu);
    // blocking() waits for a pool thread at the limit (blocking_pool.cpp),
    // so only a runaway gets here: threads the runtime cannot account for.
    if (g_sched->machines.size() + blocking_pool_threads() >= g_sched->max_threads) {
      std::fprintf(stderr,
                   "weft: program exceeds the %zu-thread limit (WEFT_MAX_THREADS sets the "
                   "limit)\n",
                   g_sched->max_threads);
      std::abort();
    }
    m->id = static_cast<std::uint32_t>(g_sched->machines.size());
    WEFT_CHECK(m->id < (1u << 29), "newm: machine ids must fit a processor's status word (P3)");
    g_sched->machines.push_back(m);
  }
  m->rng = 0x9E3779B97F4A7C15ull * (m->id + 1);
  g_sched->live_threads.fetch_add(1, std::memory_order_relaxed);
  m->thread = start_os_thread([m] { machine_main(m); });
}

// signal_if_all_idle: shutdown waits for every machine to be idle and no
// fiber to run (requires mu).
void signal_if_all_idle() noexcept WEFT_REQUIRES(g_sched->mu) {
  if (g_sched->ph.load(std::memory_order_seq_cst) != phase::running &&
      g_sched->nmidle == g_sched->machines.size() && g_sched->nm_running.load() == 0) {
    g_sched->all_idle.store(1, std::memory_order_release);  // pairs with run()'s wait
    futex_wake(g_sched->all_idle);
  }
}

// stopm: park this machine until startm or shutdown hands it something.
void stopm(machine* m) noexcept {
  {
    os_lock lk(g_sched->mu);
    if (m->exiting()) return;  // S1: told to exit (under mu, so not listed idle again)
    m->idle_link = g_sched->midle;
    g_sched->midle = m;
    ++g_sched->nmidle;
    signal_if_all_idle();
  }
  // S1: consume only wake_woken; wake_exit stays set.
  while (m->wake.fetch_and(~machine::wake_woken, std::memory_order_acquire) == 0) {
    futex_wait(m->wake, 0);
  }
}

}  // namespace

// startm: run processor p (or any idle one) on an idle or new machine.
// `spinning`: the caller already counted the machine in nmspinning.
void startm(processor* p, bool spinning) noexcept {
  machine* m = nullptr;
  {
    os_lock lk(g_sched->mu);
    if (p == nullptr) p = pidle_get();
    if (p == nullptr) {
      if (spinning) g_sched->nmspinning.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    p->status.store(p_status::running, std::memory_order_relaxed);
    m = g_sched->midle;
    if (m != nullptr) {
      g_sched->midle = m->idle_link;
      --g_sched->nmidle;
    }
  }
  if (m == nullptr) {
    try {
      newm(p, spinning);
    } catch (...) {
      std::fputs("weft: cannot create a worker thread\n", stderr);
      std::abort();
    }
    return;
  }
  m->nextp = p;
  m->spinning = spinning;
  notewakeup(m);
}

// ---- run queues ----

// global_get: take a fair share of the global queue: run the first, queue
// the rest locally.
fiber* global_get(processor* p, std::size_t max) noexcept {
  const std::size_t sz = g_sched->gq.size_hint();
  if (sz == 0) return nullptr;
  std::size_t want = sz / g_sched->nprocs + 1;
  if (max != 0 && want > max) want = max;
  want = std::min<std::size_t>(want, local_queue_size / 2);
  fiber* batch[local_queue_size / 2];
  const std::size_t n = g_sched->gq.pop_many(batch, want);
  if (n == 0) return nullptr;
  if (n > 1) {
    const std::uint32_t fit = p->runq.push_many(batch + 1, static_cast<std::uint32_t>(n - 1));
    if (fit + 1 < n) g_sched->gq.push_many(batch + 1 + fit, n - 1 - fit);
  }
  return batch[0];
}

// ---- spinning ----

// wakep_slow: the rest of K1 (wakep, sched_internal.hpp): a processor is
// idle and no machine spins, so start one spinning.
void wakep_slow() noexcept {
  int expected = 0;
  if (!g_sched->nmspinning.compare_exchange_strong(expected, 1, std::memory_order_seq_cst)) return;
  startm(nullptr, true);
}

namespace {

void resetspinning(machine* m) noexcept {  // K2
  m->spinning = false;
  g_sched->nmspinning.fetch_sub(1, std::memory_order_seq_cst);
  wakep();
}

// ---- finding work (on g0) ----

// next_left_alone: only steal a victim's `next` if the victim is not
// switching: a processor that keeps switching (ping-pong through its `next`
// slot) runs that fiber in nanoseconds; comparing `next` itself would be
// fooled by the pair alternating in it.
bool next_left_alone(processor* v) noexcept {
  const std::uint64_t tick = v->schedtick.load(std::memory_order_relaxed);
  const std::int64_t until = now_ns() + 3000;
  while (v->schedtick.load(std::memory_order_relaxed) == tick && now_ns() < until) cpu_relax();
  return v->schedtick.load(std::memory_order_relaxed) == tick && v->runq.ring_looks_empty();
}

// small_ring_left_alone: a ring holding fewer than steal_min fibers is
// stolen only after the thief has watched it for up to 3 us without its
// owner taking from it and without it growing to steal_min. Each theft
// stalls the owner (the run queue's handshake, and the cache lines of its
// ring moving to the thief and back), and a busy producer, such as a fiber
// spawning in a loop, fills its ring faster than that: a thief that took
// half of whatever it found stole 4-6 fibers at a time, 150,000-270,000
// times per million spawns, and spawning at two workers ran at 320-500 ns
// per fiber instead of 130 (perf/RESULTS.md, "Small thefts").
// Returns true if the owner took from the ring (leave it to its owner).
constexpr std::uint32_t steal_min = 32;
bool small_ring_left_alone(processor* v) noexcept {
  const std::uint32_t head = v->runq.head_hint();
  const std::int64_t until = now_ns() + 3000;
  while (v->runq.head_hint() == head && v->runq.size() < steal_min && now_ns() < until) cpu_relax();
  return v->runq.head_hint() != head;
}

// steal_work: four passes over the other processors in a random order,
// taking half of a victim's ring. A ring of fewer than steal_min fibers is
// taken only by the last pass, and only if its owner leaves it alone for a
// few microseconds (small_ring_left_alone). Only the last pass may take a
// victim's `next` fiber, and only from a victim that has not switched for
// a few microseconds: otherwise its owner is about to run it (a channel
// handoff), and stealing it would move a ping-pong pair across cores (Go
// waits 3 us the same way).
fiber* steal_work(machine* m, processor* p) noexcept {
  const unsigned n = g_sched->np_total;
  fiber* buf[local_queue_size / 2];
  for (int pass = 0; pass < 4; ++pass) {
    // Perturbed: any pass may take a `next`, without waiting.
    const bool wild = perturb_on() && perturb_chance(4);
    const bool last = pass == 3 || wild;
    unsigned pos = m->rand() % n;
    const unsigned stride = g_sched->coprimes[m->rand() % g_sched->coprimes.size()];
    for (unsigned i = 0; i < n; ++i, pos = (pos + stride) % n) {
      processor* v = &g_sched->ps[pos];
      if (v == p) continue;
      bool take_next = false;
      if (!wild && !v->runq.ring_looks_empty() && v->runq.size() < steal_min &&
          (!last || small_ring_left_alone(v))) {
        continue;
      }
      if (v->runq.ring_looks_empty()) {
        fiber* nx = last ? v->runq.peek_next() : nullptr;
        if (nx == nullptr) continue;
        if (!wild && !next_left_alone(v)) continue;
        take_next = true;
      }
      perturb(perturb_site::steal);
      const std::uint32_t k = v->runq.steal(buf, take_next);
      if (k == 0) continue;
      p->steals.inc();
      if (k > 1) {
        // Our ring is empty unless perturbation made us steal early.
        const std::uint32_t fit = p->runq.push_many(buf, k - 1);
        if (fit + 1 < k) g_sched->gq.push_many(buf + fit, k - 1 - fit);
      }
      return buf[k - 1];
    }
  }
  return nullptr;
}

// any_work: K3's re-check, after asym_heavy().
bool any_work() noexcept {
  if (g_sched->gq.size_hint() != 0) return true;
  for (unsigned i = 0; i < g_sched->np_total; ++i) {
    if (!g_sched->ps[i].runq.looks_empty()) return true;
  }
  return false;
}

// linger: K4. A spinning machine that found nothing to steal keeps
// spinning (still counted in nmspinning) for up to linger_ns before it
// parks, while some other processor is busy and could hand it work.
// Submitters seeing a spinning machine do not wake another, so a producer
// that readies a fiber every few microseconds (ping-pong across workers, a
// pipeline) does not pay a futex wake (several microseconds, on the
// producer's own thread) each time. Go's spinning machines give up after a
// few steal passes; here a futex wake costs ~30x a context switch, which
// shifts the balance. The price is at most linger_ns of one core after a
// burst of work ends.
// It goes back to stealing only for work that its owner is not taking: a
// ring whose head has not moved for ~2 us, or the global queue. A fiber
// that a busy processor readied and is about to run (a select's sender, a
// pipeline stage) stays where it is: stealing it would cost the victim an
// IPI (asym_heavy) and the pair a cache-line round trip per message.
// Every 5 us it also polls the network (netpoll_poll_once): a server's
// work arrives through epoll, and a worker that only watched the queues
// spun for nothing (10% of http_hello's CPU under wrk) while the fibers it
// could have run waited for the next poll.
// Returns true when there is work to take.
bool linger(machine* m, processor* p) noexcept {
  constexpr std::int64_t linger_ns = 50 * 1000;
  constexpr std::int64_t stuck_ns = 2 * 1000;
  if (g_sched->nactive.load(std::memory_order_relaxed) -
          g_sched->npidle.load(std::memory_order_relaxed) <=
      1) {
    return false;  // nobody else is running: nothing will show up soon
  }
  const unsigned n = g_sched->np_total;
  std::uint32_t heads[64];
  std::int64_t seen[64];
  const unsigned watched = n < 64 ? n : 64;
  for (unsigned i = 0; i < watched; ++i) seen[i] = 0;
  constexpr std::int64_t poll_every_ns = 5 * 1000;
  const std::int64_t until = now_ns() + linger_ns;
  std::int64_t next_poll = until - linger_ns + poll_every_ns;
  for (;;) {
    for (int i = 0; i < 64; ++i) cpu_relax();
    if (m->exiting() || g_sched->ph.load(std::memory_order_relaxed) != phase::running) return true;
    if (g_sched->gq.size_hint() != 0 || !p->runq.looks_empty()) return true;
    const std::int64_t now = now_ns();
    for (unsigned i = 0; i < n; ++i) {
      const run_queue<local_queue_size>& q = g_sched->ps[i].runq;
      if (q.ring_looks_empty()) {
        if (i < watched) seen[i] = 0;
        continue;
      }
      if (i >= watched) return true;
      const std::uint32_t h = q.head_hint();
      if (seen[i] == 0 || heads[i] != h) {  // new, or its owner is taking from it
        heads[i] = h;
        seen[i] = now;
      } else if (now - seen[i] >= stuck_ns) {
        return true;  // queued and nobody takes it
      }
    }
    if (g_timers.earliest() <= now) {
      p->check_timers = true;
      return true;
    }
    if (now >= next_poll) {
      // Network work arrives through epoll, not the queues watched above:
      // look there too, so a server's spinning worker finds it itself.
      next_poll = now + poll_every_ns;
      if (fiber* f = netpoll_poll_once()) {
        // Only we push to our ring (W1), and it was empty above: it fits.
        if (!p->runq.push(f)) g_sched->gq.push(f);
        return true;
      }
    }
    if (now >= until) return false;
  }
}

// park_m: sleep until startm hands this machine a processor, or shutdown.
void park_m(machine* m) noexcept {
  stopm(m);
  if (m->nextp != nullptr) {
    acquire_p(m, m->nextp);
    m->nextp = nullptr;
  }
}

void stop_spinning(machine* m) noexcept {
  WEFT_DCHECK(m->spinning, "K3: only a spinning machine stops spinning");
  m->spinning = false;
  [[maybe_unused]] const int was = g_sched->nmspinning.fetch_sub(1, std::memory_order_seq_cst);
  WEFT_DCHECK(was > 0, "K1-K3: nmspinning counts the spinning machines");
}

// give_up_p: K3. Returns a fiber found on the global queue while giving up
// the processor; otherwise null, once this machine holds a processor again
// (work appeared) or has slept until handed one.
fiber* give_up_p(machine* m, processor* p) noexcept {
  {
    os_lock lk(g_sched->mu);
    if (g_sched->gq.size_hint() != 0) {
      if (fiber* f = global_get(p, 0)) return f;
    }
    release_p(m, p);
  }
  const bool was_spinning = m->spinning;
  // Idle but still spinning: the deadlock check must look again (D3).
  if (was_spinning) perturb(perturb_site::idle);
  if (was_spinning) stop_spinning(m);
  perturb(perturb_site::idle);  // the lost-wakeup window K3 closes
  asym_heavy();                 // K3: pairs with the submitters' asym_light in wakep
  if (any_work()) {
    processor* np = nullptr;
    {
      os_lock lk(g_sched->mu);
      np = pidle_get();
    }
    if (np != nullptr) {
      acquire_p(m, np);
      if (was_spinning) {
        m->spinning = true;
        g_sched->nmspinning.fetch_add(1, std::memory_order_seq_cst);
      }
      return nullptr;
    }
  }
  perturb(perturb_site::idle);
  netpoll_worker_idle();  // the last machine to sleep hands the descriptors to the poller
  park_m(m);
  return nullptr;
}

fiber* find_runnable(machine* m) noexcept {
  for (;;) {
    if (m->exiting()) return nullptr;
    processor* p = m->p;
    if (p == nullptr || g_sched->ph.load(std::memory_order_acquire) != phase::running) {
      // A fiber in a forked child parked, yielded or finished (runtime.cpp,
      // "Fork"): there is nothing here to run it or anything else.
      if (g_sched->ph.load(std::memory_order_relaxed) == phase::forked) forked_child_fatal();
      if (p != nullptr) {
        os_lock lk(g_sched->mu);
        release_p(m, p);
      }
      if (m->spinning) stop_spinning(m);
      park_m(m);
      continue;
    }
    fire_timers(p);
    if (perturb_on() && perturb_chance(8)) {
      // Perturbed: steal before looking at our own queue.
      if (fiber* f = steal_work(m, p)) return f;
    }
    if (fiber* f = pick_local(p)) return f;
    if (fiber* f = global_get(p, 0)) return f;
    // Steal, unless enough machines are already spinning.
    const int busy = g_sched->nactive.load(std::memory_order_relaxed) -
                     g_sched->npidle.load(std::memory_order_relaxed);
    if (m->spinning || 2 * g_sched->nmspinning.load(std::memory_order_relaxed) < busy) {
      if (!m->spinning) {
        m->spinning = true;
        g_sched->nmspinning.fetch_add(1, std::memory_order_seq_cst);
      }
      if (fiber* f = steal_work(m, p)) return f;
      if (linger(m, p)) continue;
    }
    // About to idle: poll the network once without blocking (one machine
    // at a time) and run what it woke here, with no cross-thread wakeup.
    if (fiber* f = netpoll_poll_once()) return f;
    if (fiber* f = give_up_p(m, p)) return f;
  }
}

void execute(machine* m, fiber* f) {
  if (m->spinning) resetspinning(m);
  g_sched->nm_running.fetch_add(1, std::memory_order_seq_cst);
  if (g_sched->ph.load(std::memory_order_seq_cst) != phase::running) {
    // W4 (switch.cpp): leave f queued-in-limbo; the final phase unwinds every record.
    g_sched->nm_running.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  prepare_run(m, m->p, f);
  switch_to(m->ts, m->g0, f->ctx, {});
  g_sched->nm_running.fetch_sub(1, std::memory_order_seq_cst);
}

void machine_main(machine* m) noexcept {
  set_current_m(m);
  m->tid.store(static_cast<long>(::gettid()), std::memory_order_relaxed);
  init_thread_slots(m->ts);
  init_thread_context(m->g0);
  altstack_install();
  if (m->nextp != nullptr) {
    acquire_p(m, m->nextp);
    m->nextp = nullptr;
  }
  while (fiber* f = find_runnable(m)) execute(m, f);
  altstack_remove();
  set_current_m(nullptr);
}

}  // namespace

// ---- public to the runtime ----

void start_first_machine(processor* p) {
  g_sched->nmspinning.store(0);
  newm(p, false);
}

void wake_all_for_exit() {
  os_lock lk(g_sched->mu);
  for (machine* m : g_sched->machines) {
    m->wake.fetch_or(machine::wake_exit, std::memory_order_release);  // S1; pairs with stopm
    futex_wake(m->wake);
  }
}

void join_machines() {
  std::vector<machine*> ms;
  {
    os_lock lk(g_sched->mu);
    ms.swap(g_sched->machines);
    g_sched->midle = nullptr;
    g_sched->nmidle = 0;
  }
  for (machine* m : ms) {
    m->thread.join();
    g_sched->live_threads.fetch_sub(1, std::memory_order_relaxed);
    delete m;
  }
}

// ---- used by the blocking pool ----

void running_done_offload() noexcept {
  // seq_cst: with the machines' stopm (which reads it under mu): either it
  // sees zero, or we see every machine idle and signal for it.
  if (g_sched->nm_running.fetch_sub(1, std::memory_order_seq_cst) != 1) return;
  if (g_sched->ph.load(std::memory_order_seq_cst) == phase::running) {
    // The fiber may have parked again already, with every processor idle:
    // sysmon, which found this call in flight, must judge again (D3).
    deadlock_recheck();
    return;
  }
  os_lock lk(g_sched->mu);
  signal_if_all_idle();
}

// ---- used by sysmon ----

void handoff_p(processor* p) noexcept {
  p->m = nullptr;
  p->current.store(nullptr, std::memory_order_relaxed);
  // Work waiting for it: run it on another machine.
  if (!p->runq.looks_empty() || g_sched->gq.size_hint() != 0) {
    startm(p, false);
    return;
  }
  // Nobody spinning or idle would catch new work: keep one machine looking.
  if (g_sched->nmspinning.load(std::memory_order_relaxed) +
          g_sched->npidle.load(std::memory_order_relaxed) ==
      0) {
    int expected = 0;
    if (g_sched->nmspinning.compare_exchange_strong(expected, 1, std::memory_order_seq_cst)) {
      startm(p, true);
      return;
    }
  }
  os_unique_lock lk(g_sched->mu);
  if (g_sched->gq.size_hint() != 0) {
    lk.unlock();
    startm(p, false);
    return;
  }
  pidle_put(p);
}

void drop_preempt(processor* p) noexcept {
  // exchange: the flagged fiber's preempt_slow may clear it concurrently;
  // one decrement per flag. Relaxed like the flag's other accesses
  // (park.hpp): the counter is a hint for the fast path.
  if (p->preempt.load(std::memory_order_relaxed) &&
      p->preempt.exchange(false, std::memory_order_relaxed)) {
    g_preempt_requests.fetch_sub(1, std::memory_order_relaxed);
  }
}

bool lend_spare() noexcept {
  {
    os_lock lk(g_sched->mu);
    processor* spare = nullptr;
    for (unsigned i = g_sched->nprocs; i < g_sched->np_total; ++i) {
      if (g_sched->ps[i].status.load(std::memory_order_relaxed) == p_status::dead) {
        spare = &g_sched->ps[i];
        break;
      }
    }
    if (spare == nullptr) return false;
    g_sched->nactive.fetch_add(1, std::memory_order_relaxed);
    pidle_put(spare);
  }
  startm(nullptr, false);
  return true;
}

void wake_idle() noexcept {
  if (g_sched->npidle.load(std::memory_order_relaxed) > 0) startm(nullptr, false);
}

void flush_idle_stack_caches() noexcept {
  os_lock lk(g_sched->mu);
  for (processor* p = g_sched->pidle; p != nullptr; p = p->idle_link)
    g_sched->stacks.flush(p->stacks);
}

void retire_idle_spares() noexcept {
  if (g_sched->nactive.load(std::memory_order_relaxed) <= static_cast<int>(g_sched->nprocs)) return;
  os_lock lk(g_sched->mu);
  processor** link = &g_sched->pidle;
  while (processor* p = *link) {
    if (!p->spare) {
      link = &p->idle_link;
      continue;
    }
    // Idle: nobody holds it, so its caches are ours to flush under mu.
    *link = p->idle_link;
    p->idle_link = nullptr;
    g_sched->npidle.fetch_sub(1, std::memory_order_seq_cst);
    g_sched->stacks.flush(p->stacks);
    g_sched->fibers.flush(p->records);
    p->status.store(p_status::dead, std::memory_order_relaxed);
    g_sched->nactive.fetch_sub(1, std::memory_order_relaxed);
  }
}

// ---- blocking ----

blocking_entry enter_blocking() noexcept {
  machine* m = current_m();
  if (m == nullptr || m->curg == nullptr || m->in_blocking || m->p == nullptr) {
    return blocking_entry::direct;
  }
  processor* p = m->p;
  // Other fibers wait for this worker (its queue, the global queue, or
  // calls already offloaded): run the call on a pool thread instead. The
  // lone call, the common case, pays for the three loads.
  if ((!p->runq.looks_empty() || g_offload_in_flight.load(std::memory_order_relaxed) != 0 ||
       g_sched->gq.size_hint() != 0) &&
      !m->curg->unwinding && g_sched->ph.load(std::memory_order_relaxed) == phase::running) {
    return blocking_entry::offload;
  }
  m->in_blocking = true;
  m->curg->reason.store(wait_reason::blocking_call, std::memory_order_relaxed);  // for dumps
  p->syscalltick.store(p->syscalltick.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
  // release: sysmon's CAS (acquire) sees this processor's state as of now.
  p->status.store_word(status_word::syscall_of(m->id), std::memory_order_release);
  sysmon_poke(*g_sched, p);  // a long-sleeping monitor would notice this call too late
  perturb(perturb_site::blocking);
  return blocking_entry::entered;
}

void exit_blocking() noexcept {
  machine* m = current_m();
  processor* p = m->p;
  m->in_blocking = false;
  m->curg->reason.store(wait_reason::none, std::memory_order_relaxed);
  perturb(perturb_site::blocking);  // a return late enough for sysmon to retake the processor
  // P3: succeeds only if this call's own `syscall` word is still there.
  // acq_rel: pairs with sysmon's CAS on the same word; whichever comes
  // first decides who owns the processor.
  if (p->status.cas(status_word::syscall_of(m->id), p_status::running, std::memory_order_acq_rel)) {
    WEFT_CHECK(p->m == m,
               "exit_blocking: the processor kept through a blocking call names another holder");
    return;  // fast path: nobody took the processor
  }
  // sysmon handed the processor to another machine.
  m->p = nullptr;
  processor* np = nullptr;
  if (g_sched->ph.load(std::memory_order_acquire) == phase::running) {
    os_lock lk(g_sched->mu);
    np = pidle_get();
  }
  if (np != nullptr) {
    acquire_p(m, np);
    np->current.store(m->curg, std::memory_order_relaxed);
    return;
  }
  // No processor: queue this fiber globally and park the machine as a spare.
  fiber* self = m->curg;
  transition(self, fiber_state::running, fiber_state::runnable);
  leave_for_g0(m);
  switch_to(m->ts, self->ctx, m->g0,
            {[](void* f) {
               if (g_sched->ph.load(std::memory_order_relaxed) != phase::running) return;
               g_sched->gq.push(static_cast<fiber*>(f));
               wakep();
             },
             self});
}

}  // namespace weft::detail
