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

#include "runtime/scheduler.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <thread>

#include "netpoll/netpoll.hpp"
#include "runtime/asym_fence.hpp"
#include "runtime/futex.hpp"
#include "runtime/sched_internal.hpp"

namespace weft::detail {

scheduler* g_sched = nullptr;

namespace {

// ---- processors and machines under sched::mu ----

void pidle_put(processor* p) noexcept {  // requires mu
  p->status.store(p_status::idle, std::memory_order_relaxed);
  p->m = nullptr;
  p->idle_link = S().pidle;
  S().pidle = p;
  S().npidle.fetch_add(1, std::memory_order_seq_cst);  // K3
}

processor* pidle_get() noexcept {  // requires mu
  processor* p = S().pidle;
  if (p == nullptr) return nullptr;
  S().pidle = p->idle_link;
  p->idle_link = nullptr;
  S().npidle.fetch_sub(1, std::memory_order_seq_cst);
  return p;
}

void acquire_p(machine* m, processor* p) noexcept {
  m->p = p;
  p->m = m;
  p->m_tid.store(m->tid, std::memory_order_relaxed);
  p->status.store(p_status::running, std::memory_order_release);
  sysmon_poke(S(), nullptr);  // it may sleep untimed because every processor was idle
}

// release_p: the machine gives up its processor because it found no work
// (requires mu). A lent spare goes back to sleep instead of to the idle list.
void release_p(machine* m, processor* p) noexcept {
  m->p = nullptr;
  if (p->spare) {
    S().stacks.flush(p->stacks);
    S().fibers.flush(p->records);
    p->m = nullptr;
    p->status.store(p_status::dead, std::memory_order_relaxed);
    S().nactive.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  pidle_put(p);
}

void notewakeup(machine* m) noexcept {
  m->wake.store(1, std::memory_order_release);  // pairs with the acquire in stopm
  futex_wake(m->wake);
}

void machine_main(machine* m) noexcept;

void newm(processor* p, bool spinning) {
  auto* m = new machine();
  m->nextp = p;
  m->spinning = spinning;
  {
    std::lock_guard<std::mutex> lk(S().mu);
    if (S().machines.size() >= S().max_threads) {
      std::fprintf(stderr,
                   "weft: program exceeds the %zu-thread limit (fibers stuck in weft::blocking "
                   "each hold a thread; WEFT_MAX_THREADS sets the limit)\n",
                   S().max_threads);
      std::abort();
    }
    m->id = static_cast<std::uint32_t>(S().machines.size());
    S().machines.push_back(m);
  }
  m->rng = 0x9E3779B97F4A7C15ull * (m->id + 1);
  S().live_threads.fetch_add(1, std::memory_order_relaxed);
  m->thread = std::thread(machine_main, m);
}

// stopm: park this machine until startm or shutdown hands it something.
void stopm(machine* m) noexcept {
  {
    std::lock_guard<std::mutex> lk(S().mu);
    m->idle_link = S().midle;
    S().midle = m;
    ++S().nmidle;
    if (S().ph.load(std::memory_order_seq_cst) != phase::running &&
        S().nmidle == S().machines.size() && S().nm_running.load() == 0) {
      S().all_idle.store(1, std::memory_order_release);  // pairs with run()'s wait
      futex_wake(S().all_idle);
    }
  }
  while (m->wake.load(std::memory_order_acquire) == 0) futex_wait(m->wake, 0);
  m->wake.store(0, std::memory_order_relaxed);
}

}  // namespace

// startm: run processor p (or any idle one) on an idle or new machine.
// `spinning`: the caller already counted the machine in nmspinning.
void startm(processor* p, bool spinning) noexcept {
  machine* m = nullptr;
  {
    std::lock_guard<std::mutex> lk(S().mu);
    if (p == nullptr) p = pidle_get();
    if (p == nullptr) {
      if (spinning) S().nmspinning.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    p->status.store(p_status::running, std::memory_order_relaxed);
    m = S().midle;
    if (m != nullptr) {
      S().midle = m->idle_link;
      --S().nmidle;
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
  const std::size_t sz = S().gq.size_hint();
  if (sz == 0) return nullptr;
  std::size_t want = sz / S().nprocs + 1;
  if (max != 0 && want > max) want = max;
  want = std::min<std::size_t>(want, local_queue_size / 2);
  fiber* batch[local_queue_size / 2];
  const std::size_t n = S().gq.pop_many(batch, want);
  if (n == 0) return nullptr;
  if (n > 1) {
    const std::uint32_t fit = p->runq.push_many(batch + 1, static_cast<std::uint32_t>(n - 1));
    if (fit + 1 < n) S().gq.push_many(batch + 1 + fit, n - 1 - fit);
  }
  return batch[0];
}

// ---- spinning ----

// wakep_slow: the rest of K1 (wakep, sched_internal.hpp): a processor is
// idle and no machine spins, so start one spinning.
void wakep_slow() noexcept {
  int expected = 0;
  if (!S().nmspinning.compare_exchange_strong(expected, 1, std::memory_order_seq_cst)) return;
  startm(nullptr, true);
}

namespace {

void resetspinning(machine* m) noexcept {  // K2
  m->spinning = false;
  S().nmspinning.fetch_sub(1, std::memory_order_seq_cst);
  wakep();
}

// ---- finding work (on g0) ----

// steal_work: four passes over the other processors in a random order,
// taking half of a victim's ring. Only the last pass may take a victim's
// `next` fiber, and only from a victim that has not switched for a few
// microseconds: otherwise its owner is about to run it (a channel handoff),
// and stealing it would move a ping-pong pair across cores (Go waits 3 us
// the same way).
fiber* steal_work(machine* m, processor* p) noexcept {
  const unsigned n = S().np_total;
  fiber* buf[local_queue_size / 2];
  for (int pass = 0; pass < 4; ++pass) {
    const bool last = pass == 3;
    unsigned pos = m->rand() % n;
    const unsigned stride = S().coprimes[m->rand() % S().coprimes.size()];
    for (unsigned i = 0; i < n; ++i, pos = (pos + stride) % n) {
      processor* v = &S().ps[pos];
      if (v == p) continue;
      bool take_next = false;
      if (v->runq.ring_looks_empty()) {
        fiber* nx = last ? v->runq.peek_next() : nullptr;
        if (nx == nullptr) continue;
        // Only if the victim is not switching: a processor that keeps
        // switching (ping-pong through its `next` slot) runs that fiber in
        // nanoseconds; comparing `next` itself would be fooled by the pair
        // alternating in it.
        const std::uint64_t tick = v->schedtick.load(std::memory_order_relaxed);
        const std::int64_t until = now_ns() + 3000;
        while (v->schedtick.load(std::memory_order_relaxed) == tick && now_ns() < until)
          cpu_relax();
        if (v->schedtick.load(std::memory_order_relaxed) != tick || !v->runq.ring_looks_empty())
          continue;
        take_next = true;
      }
      const std::uint32_t k = v->runq.steal(buf, take_next);
      if (k == 0) continue;
      p->steals.inc();
      if (k > 1) p->runq.push_many(buf, k - 1);  // our ring is empty: they fit
      return buf[k - 1];
    }
  }
  return nullptr;
}

// any_work: K3's re-check, after asym_heavy().
bool any_work() noexcept {
  if (S().gq.size_hint() != 0) return true;
  for (unsigned i = 0; i < S().np_total; ++i) {
    if (!S().ps[i].runq.looks_empty()) return true;
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
  if (S().nactive.load(std::memory_order_relaxed) - S().npidle.load(std::memory_order_relaxed) <=
      1) {
    return false;  // nobody else is running: nothing will show up soon
  }
  const unsigned n = S().np_total;
  std::uint32_t heads[64];
  std::int64_t seen[64];
  const unsigned watched = n < 64 ? n : 64;
  for (unsigned i = 0; i < watched; ++i) seen[i] = 0;
  constexpr std::int64_t poll_every_ns = 5 * 1000;
  const std::int64_t until = now_ns() + linger_ns;
  std::int64_t next_poll = until - linger_ns + poll_every_ns;
  for (;;) {
    for (int i = 0; i < 64; ++i) cpu_relax();
    if (m->exiting || S().ph.load(std::memory_order_relaxed) != phase::running) return true;
    if (S().gq.size_hint() != 0 || !p->runq.looks_empty()) return true;
    const std::int64_t now = now_ns();
    for (unsigned i = 0; i < n; ++i) {
      const run_queue<local_queue_size>& q = S().ps[i].runq;
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
    if (S().poll.earliest() <= now) {
      p->check_timers = true;
      return true;
    }
    if (now >= next_poll) {
      // Network work arrives through epoll, not the queues watched above:
      // look there too, so a server's spinning worker finds it itself.
      next_poll = now + poll_every_ns;
      if (fiber* f = netpoll_poll_once()) {
        // Only we push to our ring (W1), and it was empty above: it fits.
        if (!p->runq.push(f)) S().gq.push(f);
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
  m->spinning = false;
  S().nmspinning.fetch_sub(1, std::memory_order_seq_cst);
}

// give_up_p: K3. Returns a fiber found on the global queue while giving up
// the processor; otherwise null, once this machine holds a processor again
// (work appeared) or has slept until handed one.
fiber* give_up_p(machine* m, processor* p) noexcept {
  {
    std::lock_guard<std::mutex> lk(S().mu);
    if (S().gq.size_hint() != 0) {
      if (fiber* f = global_get(p, 0)) return f;
    }
    release_p(m, p);
  }
  const bool was_spinning = m->spinning;
  if (was_spinning) stop_spinning(m);
  asym_heavy();  // K3: pairs with the submitters' asym_light in wakep
  if (any_work()) {
    processor* np = nullptr;
    {
      std::lock_guard<std::mutex> lk(S().mu);
      np = pidle_get();
    }
    if (np != nullptr) {
      acquire_p(m, np);
      if (was_spinning) {
        m->spinning = true;
        S().nmspinning.fetch_add(1, std::memory_order_seq_cst);
      }
      return nullptr;
    }
  }
  netpoll_worker_idle();  // the last machine to sleep hands the descriptors to the poller
  park_m(m);
  return nullptr;
}

fiber* find_runnable(machine* m) noexcept {
  for (;;) {
    if (m->exiting) return nullptr;
    processor* p = m->p;
    if (p == nullptr || S().ph.load(std::memory_order_acquire) != phase::running) {
      if (p != nullptr) {
        std::lock_guard<std::mutex> lk(S().mu);
        release_p(m, p);
      }
      if (m->spinning) stop_spinning(m);
      park_m(m);
      continue;
    }
    fire_timers(p);
    if (fiber* f = pick_local(p)) return f;
    if (fiber* f = global_get(p, 0)) return f;
    // Steal, unless enough machines are already spinning.
    const int busy =
        S().nactive.load(std::memory_order_relaxed) - S().npidle.load(std::memory_order_relaxed);
    if (m->spinning || 2 * S().nmspinning.load(std::memory_order_relaxed) < busy) {
      if (!m->spinning) {
        m->spinning = true;
        S().nmspinning.fetch_add(1, std::memory_order_seq_cst);
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
  S().nm_running.fetch_add(1, std::memory_order_seq_cst);
  if (S().ph.load(std::memory_order_seq_cst) != phase::running) {
    // W4 (switch.cpp): leave f queued-in-limbo; the final phase unwinds every record.
    S().nm_running.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  prepare_run(m, m->p, f);
  switch_to(m->ts, m->g0, f->ctx, {});
  S().nm_running.fetch_sub(1, std::memory_order_seq_cst);
}

void machine_main(machine* m) noexcept {
  set_current_m(m);
  m->tid = static_cast<long>(::gettid());
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
  S().nmspinning.store(0);
  newm(p, false);
}

void wake_all_for_exit() {
  std::lock_guard<std::mutex> lk(S().mu);
  for (machine* m : S().machines) {
    m->exiting = true;
    notewakeup(m);
  }
}

void join_machines() {
  std::vector<machine*> ms;
  {
    std::lock_guard<std::mutex> lk(S().mu);
    ms.swap(S().machines);
    S().midle = nullptr;
    S().nmidle = 0;
  }
  for (machine* m : ms) {
    m->thread.join();
    S().live_threads.fetch_sub(1, std::memory_order_relaxed);
    delete m;
  }
}

// ---- used by sysmon ----

void handoff_p(processor* p) noexcept {
  p->m = nullptr;
  p->current.store(nullptr, std::memory_order_relaxed);
  // Work waiting for it: run it on another machine.
  if (!p->runq.looks_empty() || S().gq.size_hint() != 0) {
    startm(p, false);
    return;
  }
  // Nobody spinning or idle would catch new work: keep one machine looking.
  if (S().nmspinning.load(std::memory_order_relaxed) + S().npidle.load(std::memory_order_relaxed) ==
      0) {
    int expected = 0;
    if (S().nmspinning.compare_exchange_strong(expected, 1, std::memory_order_seq_cst)) {
      startm(p, true);
      return;
    }
  }
  std::unique_lock<std::mutex> lk(S().mu);
  if (S().gq.size_hint() != 0) {
    lk.unlock();
    startm(p, false);
    return;
  }
  pidle_put(p);
}

bool lend_spare() noexcept {
  {
    std::lock_guard<std::mutex> lk(S().mu);
    processor* spare = nullptr;
    for (unsigned i = S().nprocs; i < S().np_total; ++i) {
      if (S().ps[i].status.load(std::memory_order_relaxed) == p_status::dead) {
        spare = &S().ps[i];
        break;
      }
    }
    if (spare == nullptr) return false;
    S().nactive.fetch_add(1, std::memory_order_relaxed);
    pidle_put(spare);
  }
  startm(nullptr, false);
  return true;
}

void wake_idle() noexcept {
  if (S().npidle.load(std::memory_order_relaxed) > 0) startm(nullptr, false);
}

void retire_idle_spares() noexcept {
  if (S().nactive.load(std::memory_order_relaxed) <= static_cast<int>(S().nprocs)) return;
  std::lock_guard<std::mutex> lk(S().mu);
  processor** link = &S().pidle;
  while (processor* p = *link) {
    if (!p->spare) {
      link = &p->idle_link;
      continue;
    }
    // Idle: nobody holds it, so its caches are ours to flush under mu.
    *link = p->idle_link;
    p->idle_link = nullptr;
    S().npidle.fetch_sub(1, std::memory_order_seq_cst);
    S().stacks.flush(p->stacks);
    S().fibers.flush(p->records);
    p->status.store(p_status::dead, std::memory_order_relaxed);
    S().nactive.fetch_sub(1, std::memory_order_relaxed);
  }
}

// ---- blocking ----

bool enter_blocking() noexcept {
  machine* m = current_m();
  if (m == nullptr || m->curg == nullptr || m->in_blocking || m->p == nullptr) return false;
  processor* p = m->p;
  m->in_blocking = true;
  m->curg->reason.store(wait_reason::blocking_call, std::memory_order_relaxed);  // for dumps
  p->syscalltick.store(p->syscalltick.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
  // release: sysmon's CAS (acquire) sees this processor's state as of now.
  p->status.store(p_status::syscall, std::memory_order_release);
  sysmon_poke(S(), p);  // a long-sleeping monitor would notice this call too late
  return true;
}

void exit_blocking() noexcept {
  machine* m = current_m();
  processor* p = m->p;
  m->in_blocking = false;
  m->curg->reason.store(wait_reason::none, std::memory_order_relaxed);
  p_status expected = p_status::syscall;
  if (p->status.compare_exchange_strong(expected, p_status::running, std::memory_order_acq_rel)) {
    return;  // fast path: nobody took the processor
  }
  // sysmon handed the processor to another machine.
  m->p = nullptr;
  processor* np = nullptr;
  if (S().ph.load(std::memory_order_acquire) == phase::running) {
    std::lock_guard<std::mutex> lk(S().mu);
    np = pidle_get();
  }
  if (np != nullptr) {
    acquire_p(m, np);
    np->current.store(m->curg, std::memory_order_relaxed);
    return;
  }
  // No processor: queue this fiber globally and park the machine as a spare.
  fiber* self = m->curg;
  self->state.store(fiber_state::runnable, std::memory_order_relaxed);
  leave_for_g0(m);
  switch_to(m->ts, self->ctx, m->g0,
            {[](void* f) {
               if (S().ph.load(std::memory_order_relaxed) != phase::running) return;
               S().gq.push(static_cast<fiber*>(f));
               wakep();
             },
             self});
}

}  // namespace weft::detail
