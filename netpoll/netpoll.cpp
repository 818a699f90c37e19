// netpoll.cpp: waiting for readiness on descriptor records (poll_desc.cpp),
// deadlines, and dispatching epoll events to the waiters.
//
// Purpose
//   Fibers block on sockets the way goroutines do: an operation tries its
//   system call, and on EAGAIN parks on the descriptor's record until epoll
//   says the descriptor changed, its deadline passes or it is closed.
//
// Design (Go's netpoll.go, with the differences below)
//   * Registration: once per descriptor and run, edge-triggered, for
//     EPOLLIN|EPOLLOUT|EPOLLRDHUP; never re-armed. It happens lazily, the
//     first time a fiber must wait on the descriptor: descriptors used only
//     by plain threads, or never blocked on, cost no epoll_ctl at all, and a
//     descriptor created outside a run (or kept across runs) is registered
//     with the epoll set of the run that first waits on it.
//   * epoll's user data is (generation << 32 | fd), never 0 (0 is the
//     poller's eventfd); an event whose generation is not the record's
//     current one is stale (closed and reused descriptor) and dropped.
//   * Waiting (Go's netpollblock): the waiter announces itself with
//     slot_wait, re-checks closing and deadlines, then parks with a commit
//     (the park protocol's release function) that swaps slot_wait for the
//     fiber. A waker that finds slot_wait replaces it, the commit fails and
//     the fiber readies itself at once: readiness is never lost between
//     EAGAIN and parking, and a fiber is never readied before it is parked.
//   * Plain threads (and fibers inside weft::blocking) block in ppoll(2) on
//     the descriptor instead: they work with or without a runtime. close()
//     shuts the socket down when a thread waits on it, so ppoll returns;
//     a deadline changed by another party is seen within 100 ms.
//     Rejected: parking threads on the netpoller (a futex), because it ties
//     plain threads to the runtime's lifetime.
//
// Who polls
//   A worker that found nothing else to run polls epoll once without
//   blocking (one worker at a time, netpoll_poll_once from find_runnable),
//   runs the first fiber it woke itself and injects the rest. While any
//   worker runs, the poller thread rests on its eventfd (poller::rest) and
//   leaves the descriptors to the workers: a wakeup then costs no thread
//   switch and no cross-core handoff. The last worker to go idle wakes the
//   poller, which then waits on the descriptors and injects what it finds in
//   one batch. A resting poller still wakes every netpoll_rest_tick and
//   polls if no worker did in the meantime (workers busy running fibers).
//   Measured at 10,000 echo connections (perf/RESULTS.md, "Who polls
//   epoll"): with only the poller thread polling, 24% more CPU per message
//   and 20% less throughput.
//
// Invariants (N1-N3 and N7, about records, are poll_desc.cpp's)
//   N4  A slot holds a fiber only between a successful commit and the take()
//       that readies it; exactly one party takes it (CAS). At most one fiber
//       waits per direction (the direction lock).
//   N5  Whatever must wake a waiter (readiness, closing, a deadline passing,
//       its own timer, an interrupt: a context it waits with became done) is published before the
//       publisher looks at the slot, and the waiter checks them after announcing itself: both sides
//       seq_cst (a Dekker pair), so one of them sees the other.
//   N6  Deadline timers are armed only under the timers lock and while the
//       record is not closing; close() sets closing and then cancels them
//       under the same lock, so no timer of an old incarnation fires on a
//       new one. (A plain thread closing once run() stopped accepting them
//       cancels nothing: the timers go with the run (timer_service::clear), and one that fires
//       first finds no fiber in a slot, since none runs any more.)
//
// Lock order: direction lock < poll_cold::lk; direction lock < timers
// lock (runtime/timers.hpp). Timer callbacks run under the timers lock and take no lock
// of their own.

#include "netpoll/netpoll.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <system_error>

#include "runtime/debug_internal.hpp"
#include "runtime/fiber.hpp"
#include "runtime/machine.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/sys.hpp"
#include "runtime/timers.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/perturb.hpp"

namespace weft::detail {
namespace {

constexpr std::uint32_t reg_busy = std::uint32_t{1} << 31;
constexpr std::int64_t thread_slice_ns = 100'000'000;
// The running run's epoll set and epoch (0 = no run; epochs stay below
// reg_busy). Written by netpoll_start/stop on run()'s thread while no
// fiber runs; read relaxed by fibers of that run (ordered by the thread
// starts) and with acquire by plain threads, which tolerate a stale value.
std::atomic<int> g_epfd{-1};
std::atomic<std::uint32_t> g_epoch{0};
std::uint32_t g_epoch_counter = 0;  // run()'s thread only
// Registered descriptors and wakeups (relaxed: statistics, and a hint for
// netpoll_poll_once).
std::atomic<std::int64_t> g_registered{0};
std::atomic<std::uint64_t> g_wakeups{0};
// Fibers parked on the netpoller, one counter per processor: a fiber
// counts itself on the processor it parks from and uncounts itself on the
// one it resumes on, so only a processor's holder writes its counter
// (relaxed load + store) and the sum is exact. Allocated by netpoll_start,
// one per processor including the spares (np_total).
struct alignas(64) proc_count {
  std::atomic<std::int64_t> v{0};
};
proc_count* g_parked = nullptr;
unsigned g_nparked = 0;
// One worker polls at a time: exchange(acquire) to enter, store(release)
// to leave, so the next poller sees the previous one's slot updates.
std::atomic<bool> g_polling{false};
bool g_worker_poll = true;  // written by netpoll_start only
// The poller rests ("Who polls"). seq_cst, with scheduler::npidle: the two
// halves of a Dekker pair between the resting poller and the last worker
// going idle (netpoll_poller_rest / netpoll_worker_idle).
std::atomic<bool> g_poller_resting{false};
// Worker polls so far (relaxed: the poller only compares two readings).
std::atomic<std::uint64_t> g_worker_polls{0};

// wake: ready a fiber taken from a slot. In the final phase of shutdown
// the unwinder resumes every parked fiber itself, so one woken by a close
// in some destructor is left to it: readying it as well would put it in
// the unwinder's list of readied fibers *and* let its sweep over all
// records resume it, and a fiber finished by the sweep is then taken from
// the list a second time (runtime.cpp, unwinder::finish).
void wake(fiber* f) noexcept {
  if (in_final_phase()) return;
  ready(f);
}

// take: Go's netpollunblock. Remove a parked fiber from a slot (and return
// it), recording readiness if `ioready`. N4, N5. `publish`: write the slot
// even if it is slot_ready already, so that the reader that consumes it
// (its acquire CAS reads from this one) sees what the caller stored before.
fiber* take(std::atomic<std::uintptr_t>& slot, bool ioready, bool publish = false) noexcept {
  std::uintptr_t old = slot.load(std::memory_order_seq_cst);
  for (;;) {
    if (old == slot_ready) {
      if (!publish || slot.compare_exchange_weak(old, slot_ready, std::memory_order_seq_cst)) {
        return nullptr;
      }
      continue;
    }
    if (old == slot_empty && !ioready) return nullptr;
    const std::uintptr_t nv = ioready ? slot_ready : slot_empty;
    if (slot.compare_exchange_weak(old, nv, std::memory_order_seq_cst)) {
      // slot_wait: nobody parked yet; its commit will fail and resume it.
      if (old <= slot_wait) return nullptr;
      auto* f = reinterpret_cast<fiber*>(old);
      WEFT_DCHECK(f->state.load(std::memory_order_relaxed) == fiber_state::parked,
                  "netpoll N4: a fiber in a slot is parked");
      return f;
    }
  }
}

// collect: the fibers one epoll event wakes (up to two).
std::size_t collect(const epoll_event& ev, fiber** out) noexcept {
  const int fd = static_cast<int>(static_cast<std::uint32_t>(ev.data.u64));
  const std::uint32_t gen = static_cast<std::uint32_t>(ev.data.u64 >> 32);
  poll_desc* rec = pd_lookup(fd);  // N1
  if (rec == nullptr) return 0;
  poll_desc& pd = *rec;
  const std::uint64_t s = pd.state.load(std::memory_order_acquire);
  // Stale (closed, or a later incarnation): drop. A record closed and
  // reclaimed right after this check gets a spurious readiness at worst,
  // which its next operation absorbs with one EAGAIN.
  if ((s & pd_active) == 0 || static_cast<std::uint32_t>(s >> 32) != gen) return 0;
  std::size_t n = 0;
  const bool hup = (ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  if (hup) pd.hup.store(true, std::memory_order_relaxed);  // published by take()'s CAS
  if (hup || (ev.events & EPOLLIN) != 0) {
    if (fiber* f = take(pd.slot[dir_read], true, hup)) out[n++] = f;
  }
  if ((ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) {
    if (fiber* f = take(pd.slot[dir_write], true)) out[n++] = f;
  }
  return n;
}

// ensure_registered: add the descriptor to this run's epoll set once. A
// CAS on reg_epoch elects the registering party; others wait the one
// system call out.
void ensure_registered(poll_desc& pd, std::uint32_t epoch) {
  std::uint32_t r = pd.reg_epoch.load(std::memory_order_acquire);  // pairs with the release below
  while (r != epoch) {
    if (r == (epoch | reg_busy)) {
      weft::yield();
      r = pd.reg_epoch.load(std::memory_order_acquire);
      continue;
    }
    if (!pd.reg_epoch.compare_exchange_weak(r, epoch | reg_busy, std::memory_order_acquire)) {
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (pd.state.load(std::memory_order_relaxed) & pd_gen_mask) |
                  static_cast<std::uint32_t>(pd.fd);
    const int epfd = g_epfd.load(std::memory_order_relaxed);
    int rc = ::epoll_ctl(epfd, EPOLL_CTL_ADD, pd.fd, &ev);
    // EEXIST: this open file is still in the set under an older tag (a
    // borrowed registration whose removal failed): retag it.
    if (rc != 0 && errno == EEXIST) rc = ::epoll_ctl(epfd, EPOLL_CTL_MOD, pd.fd, &ev);
    if (rc != 0) {
      const int e = errno;
      pd.reg_epoch.store(r, std::memory_order_relaxed);
      throw std::system_error(e, std::generic_category(), "weft::net: epoll_ctl");
    }
    g_registered.fetch_add(1, std::memory_order_relaxed);
    pd.reg_epoch.store(epoch, std::memory_order_release);
    return;
  }
}

void deadline_fired(timer* t) {
  auto* pd = static_cast<poll_desc*>(t->arg);
  const int dir =
      t == &pd->cold.load(std::memory_order_relaxed)->dl_timer[dir_write] ? dir_write : dir_read;
  if (fiber* f = take(pd->slot[dir], false)) ready(f);  // the poller's batch
}

// arm: make the deadline timer of `dir` match deadline[dir] (N6). Any
// thread; the caller made sure the cold part exists.
void arm(poll_desc& pd, int dir) noexcept {
  // L1 (runtime.cpp): a plain thread setting a deadline holds the runtime
  // while it uses the poller. A failed pin: no run, or one that no longer
  // runs fibers; plain threads compare deadlines themselves, and the next
  // run arms the timer when a fiber first waits (fiber_wait).
  const runtime_pin pin;
  if (!pin) return;
  const std::uint32_t e = g_epoch.load(std::memory_order_acquire);
  WEFT_DCHECK(e != 0, "a pinned runtime has an epoll set until it is destroyed");
  poll_cold& c = *pd.cold.load(std::memory_order_acquire);
  fiber* f = nullptr;
  {
    timer_service::locked timers(g_timers);
    if (!pd_closing(pd)) {
      timer& t = c.dl_timer[dir];
      timers.cancel(&t);
      const std::int64_t when = pd.deadline[dir].load(std::memory_order_seq_cst);
      if (when != no_deadline) {
        if (when <= now_ns()) {
          f = take(pd.slot[dir], false);  // N5 with the waiter's recheck
        } else {
          t.when = when;
          t.period = 0;
          t.fire = &deadline_fired;
          t.arg = &pd;
          timers.add(&t);
        }
      }
      c.timer_epoch[dir].store(e, std::memory_order_relaxed);
    }
  }
  if (f != nullptr) wake(f);
}

// cancel_timers: N6. The caller holds a successful runtime_pin (L1).
void cancel_timers(poll_desc& pd) noexcept {
  poll_cold* c = pd.cold.load(std::memory_order_acquire);
  if (c == nullptr) return;
  timer_service::locked timers(g_timers);
  timers.cancel(&c->dl_timer[dir_read]);
  timers.cancel(&c->dl_timer[dir_write]);
}

// own_timer: a per-call deadline (wait_readable's, dial's, accept's
// back-off). Cancelled by its destructor, also when the fiber is unwound.
struct own_timer {
  timer t;
  poll_desc* pd = nullptr;
  int dir = 0;
  std::atomic<bool> fired{false};

  own_timer(poll_desc& p, int d, std::int64_t when) : pd(&p), dir(d) {
    t.when = when;
    t.arg = this;
    t.fire = [](timer* tm) {
      auto* self = static_cast<own_timer*>(tm->arg);
      self->fired.store(true, std::memory_order_seq_cst);  // N5
      if (fiber* f = take(self->pd->slot[self->dir], false)) ready(f);
    };
    g_timers.add(&t);
  }
  ~own_timer() { g_timers.cancel(&t); }
};

// parked_add: count a fiber parked on the netpoller (or resumed, -1) on
// the calling machine's processor.
void parked_add(std::int64_t d) noexcept {
  std::atomic<std::int64_t>& v = g_parked[current_processor_index()].v;
  v.store(v.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}

struct commit_arg {
  std::atomic<std::uintptr_t>* slot;
  fiber* self;
  waiter* w;
  bool committed;  // written by commit() before the fiber can be resumed
};

// commit: the park's release function, run once the fiber's context is
// saved. If a waker replaced slot_wait meanwhile, resume at once.
void commit(void* p) {
  auto* a = static_cast<commit_arg*>(p);
  a->committed = true;
  parked_add(1);
  perturb(perturb_site::park_commit);  // readiness may arrive before the commit
  std::uintptr_t expected = slot_wait;
  // seq_cst: N5 (a waker's take() must see either slot_wait or the fiber).
  if (a->slot->compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(a->self),
                                       std::memory_order_seq_cst)) {
    return;  // `a` may be gone from here on: the fiber can run elsewhere
  }
  a->committed = false;
  parked_add(-1);
  unpark(*a->w);
}

bool should_stop(const poll_desc& pd, int dir, bool use_pd_deadline, const own_timer* ot,
                 const std::atomic<bool>* interrupt) {
  if (pd_closing(pd)) return true;
  if (use_pd_deadline && netpoll_timed_out(pd, dir)) return true;
  // seq_cst: N5, with the store before netpoll_interrupt's take().
  if (interrupt != nullptr && interrupt->load(std::memory_order_seq_cst)) return true;
  return ot != nullptr && ot->fired.load(std::memory_order_seq_cst);
}

// park_on: steps 1-4 of fiber_wait (Go's netpollblock).
void park_on(poll_desc& pd, int dir, bool use_pd_deadline, const own_timer* ot,
             const std::atomic<bool>* interrupt) {
  std::atomic<std::uintptr_t>& slot = pd.slot[dir];
  // 1. Consume pending readiness, or announce that we are about to park.
  std::uintptr_t v = slot.load(std::memory_order_acquire);
  for (;;) {
    if (v == slot_ready) {
      if (slot.compare_exchange_weak(v, slot_empty, std::memory_order_acquire)) return;
    } else if (v == slot_empty) {
      if (slot.compare_exchange_weak(v, slot_wait, std::memory_order_seq_cst)) break;
    } else {
      pd_fatal("two fibers wait on one direction of a descriptor", pd.fd);
    }
  }
  // 2. N5: re-check what would wake us, now that wakers can see slot_wait.
  perturb(perturb_site::park_commit);
  if (should_stop(pd, dir, use_pd_deadline, ot, interrupt)) {
    slot.exchange(slot_empty, std::memory_order_acq_rel);
    return;
  }
  // 3. Park; commit() publishes us in the slot once our context is saved.
  waiter w;
  w.prepare();
  commit_arg a{&slot, w.fiber_, &w, false};
  try {
    park(w, &commit, &a, dir == dir_read ? wait_reason::netpoll_read : wait_reason::netpoll_write,
         &pd);
  } catch (...) {
    // Unwound at shutdown: leave the slot unless a waker already took us.
    std::uintptr_t me = reinterpret_cast<std::uintptr_t>(a.self);
    slot.compare_exchange_strong(me, slot_empty, std::memory_order_acq_rel);
    if (a.committed) parked_add(-1);
    throw;
  }
  if (a.committed) parked_add(-1);
  // 4. Woken by take(): the slot is slot_ready or slot_empty; consume it,
  // since the caller retries its system call next.
  slot.exchange(slot_empty, std::memory_order_acq_rel);
}

void fiber_wait(poll_desc& pd, int dir, std::int64_t own_deadline, bool use_pd_deadline,
                const std::atomic<bool>* interrupt) {
  if (forked_child()) throw_forked_child("weft::net");  // the epoll set is the parent's
  fire_timers_before_wait();
  const std::uint32_t e = g_epoch.load(std::memory_order_relaxed);
  if (pd.reg_epoch.load(std::memory_order_acquire) != e) ensure_registered(pd, e);
  if (use_pd_deadline && pd.deadline[dir].load(std::memory_order_relaxed) != no_deadline &&
      pd_cold(pd).timer_epoch[dir].load(std::memory_order_relaxed) != e) {
    arm(pd, dir);  // set outside this run: its timer is not in our heap yet
  }
  if (own_deadline == no_deadline) {
    park_on(pd, dir, use_pd_deadline, nullptr, interrupt);
    return;
  }
  if (own_deadline <= now_ns()) return;
  const own_timer ot(pd, dir, own_deadline);
  park_on(pd, dir, use_pd_deadline, &ot, interrupt);
}

void thread_wait(poll_desc& pd, int dir, std::int64_t own_deadline, bool use_pd_deadline,
                 const std::atomic<bool>* interrupt) {
  poll_cold& c = pd_cold(pd);
  c.thread_waiters.fetch_add(1, std::memory_order_seq_cst);  // Dekker with pd_close
  struct leave {
    poll_cold& c;
    ~leave() { c.thread_waiters.fetch_sub(1, std::memory_order_relaxed); }
  } guard{c};
  for (;;) {
    if (pd_closing(pd)) return;
    if (interrupt != nullptr && interrupt->load(std::memory_order_seq_cst)) return;
    std::int64_t until = own_deadline;
    if (use_pd_deadline) {
      const std::int64_t d = pd.deadline[dir].load(std::memory_order_relaxed);
      if (d < until) until = d;
    }
    const std::int64_t now = now_ns();
    if (until <= now) return;
    const std::int64_t wait = until - now < thread_slice_ns ? until - now : thread_slice_ns;
    timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
    pollfd p{pd.fd, static_cast<short>(dir == dir_read ? (POLLIN | POLLRDHUP) : POLLOUT), 0};
    if (sys_ppoll(&p, 1, &ts) != 0) return;  // ready, hung up, error, or EINTR
  }
}

}  // namespace

// ---- for poll_desc.cpp ----

void netpoll_closing(poll_desc& pd) noexcept {
  // L1: a plain thread closing a descriptor holds the runtime while it uses
  // the poller and readies waiters. A failed pin: no run (no timer and no
  // fiber can be here), or run() stopped accepting plain threads, after
  // which the timers die with the run and a fiber taken from a slot is
  // left parked for the unwinder, as wake() does in phase::final.
  const runtime_pin pin;
  if (pin) cancel_timers(pd);  // N6
  for (int d = 0; d < 2; ++d) {
    fiber* f = take(pd.slot[d], false);
    if (f != nullptr && pin) wake(f);
  }
}

void netpoll_forget(poll_desc& pd, bool borrowed) noexcept {
  // L1: g_epfd and the registration count belong to the run the pin holds;
  // without one the run's epoll set is gone or about to go, with everything
  // registered in it.
  const runtime_pin pin;
  const std::uint32_t e = pin ? g_epoch.load(std::memory_order_acquire) : 0;
  if (e != 0 && pd.reg_epoch.load(std::memory_order_acquire) == e) {
    if (borrowed) {
      epoll_event ev{};
      ::epoll_ctl(g_epfd.load(std::memory_order_relaxed), EPOLL_CTL_DEL, pd.fd, &ev);
    }
    g_registered.fetch_sub(1, std::memory_order_relaxed);
  }
  pd.reg_epoch.store(0, std::memory_order_relaxed);
}

// ---- waiting ----

bool in_parkable_fiber() noexcept {
  machine* m = current_m();
  return m != nullptr && m->curg != nullptr && !m->in_blocking;
}

void netpoll_wait(poll_desc& pd, int dir, std::int64_t own_deadline, bool use_pd_deadline,
                  const std::atomic<bool>* interrupt) {
  if (in_parkable_fiber()) {
    fiber_wait(pd, dir, own_deadline, use_pd_deadline, interrupt);
  } else {
    thread_wait(pd, dir, own_deadline, use_pd_deadline, interrupt);
  }
}

void netpoll_interrupt(poll_desc& pd, int dir) noexcept {
  if (fiber* f = take(pd.slot[dir], false)) wake(f);  // N5 with should_stop
}

void netpoll_set_deadline(poll_desc& pd, int dir, std::int64_t when) {
  pd_cold(pd);                                              // the timer lives there
  pd.deadline[dir].store(when, std::memory_order_seq_cst);  // N5
  arm(pd, dir);
}

bool netpoll_timed_out(const poll_desc& pd, int dir) noexcept {
  const std::int64_t d = pd.deadline[dir].load(std::memory_order_seq_cst);
  return d != no_deadline && d <= now_ns();
}

// ---- the runtime's side ----

void netpoll_start(int epfd, unsigned nprocs_total, bool worker_poll) noexcept {
  if (++g_epoch_counter >= reg_busy) g_epoch_counter = 1;
  g_worker_poll = worker_poll;
  g_nparked = nprocs_total;  // spare processors sysmon lends to a hog too
  g_parked = new proc_count[g_nparked];
  g_registered.store(0, std::memory_order_relaxed);
  g_wakeups.store(0, std::memory_order_relaxed);
  g_epfd.store(epfd, std::memory_order_relaxed);
  g_epoch.store(g_epoch_counter, std::memory_order_release);
}

void netpoll_forked() noexcept {
  g_epoch.store(0, std::memory_order_relaxed);
  g_epfd.store(-1, std::memory_order_relaxed);
  g_worker_poll = false;
  g_registered.store(0, std::memory_order_relaxed);
}

void netpoll_stop() noexcept {
  g_epoch.store(0, std::memory_order_release);
  g_epfd.store(-1, std::memory_order_relaxed);
  g_registered.store(0, std::memory_order_relaxed);
  delete[] g_parked;
  g_parked = nullptr;
  g_nparked = 0;
}

std::size_t netpoll_ready_events(const epoll_event* ev, int n) noexcept {
  std::size_t woken = 0;
  for (int i = 0; i < n; ++i) {
    fiber* fs[2];
    const std::size_t k = collect(ev[i], fs);
    for (std::size_t j = 0; j < k; ++j) ready(fs[j]);
    woken += k;
  }
  if (woken != 0) g_wakeups.fetch_add(woken, std::memory_order_relaxed);
  return woken;
}

fiber* netpoll_poll_once() noexcept {
  if (!g_worker_poll || g_registered.load(std::memory_order_relaxed) <= 0) return nullptr;
  if (g_polling.load(std::memory_order_relaxed) ||
      g_polling.exchange(true, std::memory_order_acquire)) {
    return nullptr;
  }
  constexpr int max_events = 128;
  epoll_event ev[max_events];
  fiber* fs[2 * max_events];
  std::size_t k = 0;
  g_worker_polls.fetch_add(1, std::memory_order_relaxed);
  const int n = ::epoll_wait(g_epfd.load(std::memory_order_relaxed), ev, max_events, 0);
  for (int i = 0; i < n; ++i) {
    if (ev[i].data.u64 != 0) k += collect(ev[i], fs + k);  // 0: the poller's eventfd
  }
  g_polling.store(false, std::memory_order_release);
  if (k == 0) return nullptr;
  g_wakeups.fetch_add(k, std::memory_order_relaxed);
  for (std::size_t i = 0; i < k; ++i) {
    transition(fs[i], fiber_state::parked, fiber_state::runnable);
  }
  if (k > 1) inject(fs + 1, k - 1);
  return fs[0];
}

bool netpoll_poller_rest() noexcept {
  if (!g_worker_poll) return false;
  g_poller_resting.store(true, std::memory_order_seq_cst);
  // seq_cst: Dekker with netpoll_worker_idle. Either the last worker going
  // idle sees us resting and wakes us, or we see every processor idle here
  // and wait on the descriptors ourselves.
  if (all_processors_idle()) {
    g_poller_resting.store(false, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void netpoll_poller_unrest() noexcept { g_poller_resting.store(false, std::memory_order_relaxed); }

std::uint64_t netpoll_worker_polls() noexcept {
  return g_worker_polls.load(std::memory_order_relaxed);
}

void netpoll_worker_idle() noexcept {
  // The caller's processor is on the idle list already (npidle, seq_cst).
  if (g_poller_resting.load(std::memory_order_seq_cst) && all_processors_idle()) {
    netpoll_wake();
  }
}

std::int64_t netpoll_registered() noexcept { return g_registered.load(std::memory_order_relaxed); }

std::int64_t netpoll_parked() noexcept {
  std::int64_t n = 0;
  for (unsigned i = 0; i < g_nparked; ++i) n += g_parked[i].v.load(std::memory_order_relaxed);
  return n;
}

std::uint64_t netpoll_wakeups() noexcept { return g_wakeups.load(std::memory_order_relaxed); }

}  // namespace weft::detail
