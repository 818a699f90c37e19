// sysmon.cpp: the monitor thread.
//
// Purpose
//   One fiber stuck in a blocking system call, or looping without a
//   scheduling point, must not freeze the other fibers that share its
//   worker. Go solves the first with syscall handoff and the second with
//   signal preemption; weft's Boost.Context fibers cannot be preempted
//   safely, so for hogs it moves the work instead of the hog.
//
// Design
//   Every tick sysmon looks at each processor:
//   * Blocking calls. weft::blocking marks its processor `syscall` and bumps
//     syscalltick (scheduler.cpp, enter_blocking). A processor seen in the
//     same call for longer than options::blocking_handoff is taken with one
//     CAS (syscall -> idle) and handed to another machine (handoff_p): its
//     queue keeps running. The blocked machine, on return, fails its own CAS
//     and finds another processor or parks as a spare (exit_blocking).
//     Like Go, a processor with nothing queued is left alone for up to 10 ms
//     while idle or spinning machines can take new work.
//   * Hogs. A processor whose schedtick has not moved for
//     options::hog_handoff while it runs a fiber is hogged. sysmon takes the
//     fibers queued on it with the run queue's thief protocol (safe against
//     the hog's machine touching its own queue, run_queue.hpp R1-R3), puts
//     them on the global queue, and makes sure some processor runs them: an
//     idle one, else a *spare* processor it lends (options::workers more
//     exist, dormant). The hog keeps its processor; it is the extra, like a
//     thread in a system call. A lent spare retires when it runs out of
//     work. A warning names the fiber and its start site: the first hog
//     from each site as it happens, later ones counted and summed up per
//     site when the run ends (report_hog).
//     Rejected: seizing the hog's processor as for blocking calls. The hog's
//     machine may be inside go() or ready() using its processor's caches at
//     any instant; making every such use safe against seizure would put a
//     handshake on every scheduler fast path. Lending needs none.
//     A thread the kernel descheduled (cores oversubscribed by other
//     processes, or more workers than cores) looks the same by schedtick;
//     its CPU time tells them apart (cpu_hog): only a thread that ran on a
//     CPU for hog_handoff / 2 since sysmon marked it half-way is a hog,
//     and it is reported only once that CPU time reaches hog_handoff and
//     50 ms: a hypervisor that stalls one memory access for up to ~10 ms
//     charges the stall to the thread's CPU clock (measured on a PVM
//     guest), and a fiber that merely touched a page looked like a hog. A
//     fiber that is not running on a CPU is not a hog: its queued fibers
//     are moved all the same, but it is not reported, lends no spare and
//     keeps sysmon on long ticks: more threads and more wakeups would only
//     crowd the CPU further. Nor is the runtime's own slow work (growing a
//     pool, waiting out a preempted lock holder, waking a long list of
//     waiters: processor::rtwork) counted against the fiber that needed it.
//   Before that, at hog_handoff / 2, sysmon flags the processor; the fiber
//   yields at its next channel, select, lock or go() operation
//   (preempt_point, Go's cooperative preemption), which settles most "hogs"
//   that do call into the runtime without any hand-off or warning. A flag
//   the fiber took counts as a switch even when the yield found nothing
//   else to run and the same fiber went on (schedtick did not move): it
//   offered its worker, so it is not a hog.
//   Tick length (Go's, made cheaper): 20 us after it acted, doubling while
//   nothing happens up to min(10 ms, hog_handoff / 2) while any processor
//   is busy, and no timed tick at all when every processor is idle (a
//   processor starting work then pokes it awake: only then, `idle_sleep`).
//   When its sleep is 1 ms or longer the `deep` flag lets
//   weft::blocking poke it, so a blocking call is handed off within about
//   blocking_handoff plus a tick even after a quiet period, while a loop of
//   short blocking calls costs one poke per ~2.5 ms, not one per call.
//
// Invariants
//   M1  Only sysmon moves a processor out of `syscall` other than its own
//       machine, and only by CAS; the machine's exit CAS decides the race.
//   M2  sysmon never writes a running processor's fields; it only steals
//       from its run queue as a thief.
//   M3  watch[] is sysmon's alone.

#include "runtime/sysmon.hpp"

#include <malloc.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "runtime/debug_internal.hpp"
#include "runtime/futex.hpp"
#include "runtime/os_thread.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/sys.hpp"
#include "weft/detail/introspect.hpp"
#include "weft/detail/spinlock.hpp"
#include "weft/sync.hpp"

namespace weft::detail {
namespace {

constexpr std::int64_t us = 1000;
constexpr std::int64_t ms = 1000 * us;
constexpr std::int64_t min_tick = 20 * us;
constexpr std::int64_t deep_tick = 1 * ms;
constexpr int grace_ticks = 50;                 // short ticks kept after an action, as Go does
constexpr std::int64_t spin_window = 100 * us;  // spin rather than sleep this close to a deadline
constexpr std::int64_t deadlock_tick_ns = 20 * ms;  // idle ticks while a deadlock is possible

// The scavenger's tick (stack_pool.hpp): 1 s, as Go's background scavenger
// paces itself in seconds. Tests shorten it (set_scavenge_tick).
std::atomic<std::int64_t> g_scavenge_tick_ns{1000 * ms};

struct tick_result {
  bool acted = false;                 // took a processor or moved a hog's queue
  bool probing = false;               // a blocking call is being timed: tick again soon
  std::int64_t deadline = INT64_MAX;  // earliest time a timed call becomes due
  bool busy = false;                  // some processor runs fibers or sits in a blocking call
  int hogged = 0;                     // processors running a hog
  bool moved = false;                 // fibers were moved off a hog onto the global queue
};

// Hog warnings: the first hog from each start site (file:line) is reported
// as it happens; later ones from the same site, and any from sites beyond
// the first max_hog_sites, are counted and summed up in one line each when
// the run ends (report_hog_summary). A loop that spawns hogs prints a few
// lines, not one per fiber.
constexpr std::size_t max_hog_sites = 16;

void report_hog(sysmon_state& sm, const fiber* f, std::int64_t ran_ns, std::size_t moved,
                const options& o) {
  for (sysmon_state::hog_site& h : sm.hog_sites) {
    if (h.line == f->get_line() && std::strcmp(h.file, f->get_file()) == 0) {
      ++h.more;
      return;
    }
  }
  if (sm.hog_sites.size() == max_hog_sites) {
    ++sm.hogs_unlisted;
    return;
  }
  sm.hog_sites.push_back(sysmon_state::hog_site{f->get_file(), f->get_line(), 0});
  std::fprintf(stderr,
               "weft: fiber %llu (started at %s:%u) has run for %lld ms without parking or "
               "yielding; %zu fiber(s) queued behind it moved to another thread "
               "(options::hog_handoff = %lld ms)\n",
               static_cast<unsigned long long>(f->get_id()), f->get_file(), f->get_line(),
               static_cast<long long>(ran_ns / ms), moved,
               static_cast<long long>(o.hog_handoff.count()));
}

void report_hog_summary(sysmon_state& sm) {
  for (const sysmon_state::hog_site& h : sm.hog_sites) {
    if (h.more == 0) continue;
    std::fprintf(stderr,
                 "weft: %llu more hog(s) by fibers started at %s:%u (the first is reported "
                 "above)\n",
                 static_cast<unsigned long long>(h.more), h.file, h.line);
  }
  if (sm.hogs_unlisted != 0) {
    std::fprintf(stderr,
                 "weft: %llu more hog(s) by fibers started at other sites (only %zu sites are "
                 "named)\n",
                 static_cast<unsigned long long>(sm.hogs_unlisted), max_hog_sites);
  }
  sm.hog_sites.clear();
  sm.hogs_unlisted = 0;
}

// thread_cpu_ns: CPU time (ns) that thread `tid` of this process has run,
// user and system, up to now, or -1 if unknown. One clock_gettime on the
// thread's CPU-time clock (the id pthread_getcpuclockid gives on Linux):
// exact for a running thread, where /proc's schedstat lags by up to a
// scheduler tick, and no file to open and parse.
std::int64_t thread_cpu_ns(long tid) noexcept {
  if (tid <= 0) return -1;
  const auto clock = static_cast<clockid_t>((~static_cast<unsigned long>(tid) << 3) | 6);
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return -1;
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// A blocking call that poked the monitor awake: which processor, which call
// (syscalltick) and when it started. Filled from sysmon_state after a poke.
struct poke_info {
  const processor* p = nullptr;
  std::uint32_t tick = 0;
  std::int64_t at = 0;
};

// check_syscall: M1. Returns true if the processor was taken.
bool check_syscall(scheduler& s, processor* p, p_watch& w, std::int64_t now, const poke_info& poke,
                   tick_result& r) {
  r.busy = true;
  const std::int64_t handoff = std::chrono::nanoseconds(s.opts.blocking_handoff).count();
  const std::uint32_t t = p->syscalltick.load(std::memory_order_relaxed);
  if (t != w.syscalltick) {
    w.syscalltick = t;
    if (poke.p == p && poke.tick == t) {
      w.syscall_seen = std::min(poke.at, now);  // the call that poked us: time it now
    } else {
      // Seen for the first time on a timed tick: it may be one of many
      // short calls; only if it is still there next tick is it worth timing.
      w.syscall_seen = now;
      return false;
    }
  }
  r.probing = true;
  const std::int64_t in_call = now - w.syscall_seen;
  if (in_call < handoff) {
    r.deadline = std::min(r.deadline, w.syscall_seen + handoff);
    return false;
  }
  if (p->runq.looks_empty() && s.gq.size_hint() == 0 &&
      s.nmspinning.load(std::memory_order_relaxed) + s.npidle.load(std::memory_order_relaxed) > 0 &&
      in_call < 10 * ms) {
    return false;  // nothing stranded, and others can take new work
  }
  // acq_rel: acquire the blocked machine's last writes to the processor
  // (its release store of `syscall`); the new holder inherits them. The
  // CAS is from the tagged word (P3); the syscalltick re-check only keeps a
  // new call by the same machine from being taken on the old one's timing.
  const std::uint32_t word = p->status.load_word(std::memory_order_relaxed);
  if ((word & 3) != static_cast<std::uint32_t>(p_status::syscall) ||
      p->syscalltick.load(std::memory_order_relaxed) != t ||
      !p->status.cas(word, p_status::idle, std::memory_order_acq_rel)) {
    return false;  // the call returned meanwhile (M1)
  }
  handoff_p(p);
  s.sysmon.handoffs.fetch_add(1, std::memory_order_relaxed);
  r.acted = true;
  return true;
}

// hog_report_floor_ns: the least CPU time past the half-way mark that gets
// a hog reported. Measured with weft-bench parked beside the loaded suite
// (load 4-14): a fiber that only parks was charged 10+ ms of CPU in one
// run, in 3 runs of 10, by the host's stalls; relieving it is harmless,
// reporting it is a false alarm. 50 ms takes several such stalls inside
// one run of a fiber that does microseconds of work.
constexpr std::int64_t hog_report_floor_ns = 50'000'000;

// cpu_since_mark: a processor whose fiber has not switched for hog_handoff
// is either running a hog or held by a thread that is not on a CPU: the
// kernel descheduled it (cores oversubscribed by other processes, or more
// workers than cores). schedtick cannot tell them apart; the thread's CPU
// time can. Returns the CPU time (ns) the holder's thread ran since sysmon
// marked it half-way; -1 if another thread holds the processor now (measure
// afresh); INT64_MAX if CPU time is unknown (judge by wall time alone).
std::int64_t cpu_since_mark(const processor* p, p_watch& w) noexcept {
  if (w.mark_tid == 0) return INT64_MAX;
  if (w.mark_tid != p->m_tid.load(std::memory_order_relaxed)) {
    w.cpu_mark = -1;
    return -1;
  }
  const std::int64_t cpu = thread_cpu_ns(w.mark_tid);
  return cpu < 0 ? INT64_MAX : cpu - w.cpu_mark;
}

void check_running(scheduler& s, processor* p, p_watch& w, std::int64_t now, tick_result& r) {
  r.busy = true;
  const std::uint64_t t = p->schedtick.load(std::memory_order_relaxed);
  const std::uint32_t rt = p->rtwork.load(std::memory_order_relaxed);
  const std::uint32_t head = p->runq.head_hint();
  const fiber* nx = p->runq.peek_next();
  // A request that is gone while the processor still runs was taken by
  // the fiber at a preemption point (preempt_slow): it offered its worker,
  // and if it kept running, nothing else was runnable there (a spawning
  // loop whose fibers other workers steal). That is a scheduling point
  // too, not a hog: nobody waited for it.
  const bool answered = w.asked && !p->preempt.load(std::memory_order_relaxed);
  if (t != w.schedtick || rt != w.rtwork || (rt & 1) != 0 || w.schedtick_seen == 0 || answered) {
    // It switched (a request is moot), or the runtime did its own work
    // (processor::rtwork): the fiber's time counts from now.
    drop_preempt(p);
    w.schedtick = t;
    w.rtwork = rt;
    w.schedtick_seen = now;
    w.hog_reported = false;
    w.cpu_mark = -1;
    w.moved = 0;
    w.runq_head = head;
    w.next = nx;
    w.asked = false;
    return;
  }
  const std::int64_t ran = now - w.schedtick_seen;
  const std::int64_t hog = std::chrono::nanoseconds(s.opts.hog_handoff).count();
  if (ran < hog / 2) return;
  fiber* f = p->current.load(std::memory_order_relaxed);
  if (f == nullptr) return;  // its machine is on g0, about to pick or park
  if (!p->preempt.load(std::memory_order_relaxed)) {
    // Ask it to yield at its next channel or lock operation (park.hpp).
    p->preempt.store(true, std::memory_order_relaxed);
    g_preempt_requests.fetch_add(1, std::memory_order_relaxed);
  }
  w.asked = true;
  if (w.cpu_mark < 0) {
    w.mark_tid = p->m_tid.load(std::memory_order_relaxed);
    w.cpu_mark = thread_cpu_ns(w.mark_tid);
    if (w.cpu_mark < 0) w.cpu_mark = 0, w.mark_tid = 0;  // unknown: judge by schedtick alone
  }
  if (ran < hog) return;
  // A hog: its thread ran on a CPU for hog_handoff / 2 since the mark (so
  // for at least that long in all). Its queue is moved and a spare lent.
  // It is reported only once that is a full hog_handoff, and at least
  // hog_report_floor_ns: on a host that stalls a memory access (a
  // hypervisor's page-table fault), a thread's CPU clock runs on for up to
  // ~10 ms per stall while the fiber makes no progress, and a fiber that
  // merely touched a few pages was reported.
  const std::int64_t cpu = cpu_since_mark(p, w);
  const bool is_hog = cpu >= hog / 2;
  if (is_hog) ++r.hogged;
  // Stuck work: queued fibers nobody took since the last look. A queue that
  // other workers are stealing from is being served; leave it be. Stuck
  // work is moved whether or not the holder is on a CPU.
  const bool stuck =
      !p->runq.looks_empty() && head == w.runq_head && (nx == nullptr || nx == w.next);
  w.runq_head = head;
  w.next = nx;
  std::size_t moved = 0;
  if (stuck) {
    // M2: take what is queued behind it, as a thief.
    fiber* buf[local_queue_size / 2];
    while (const std::uint32_t k = p->runq.steal(buf, true)) {
      s.gq.push_many(buf, k);
      moved += k;
    }
    w.runq_head = p->runq.head_hint();
    w.next = p->runq.peek_next();
    w.moved += moved;
  }
  // Reported once per episode, and only a hog that kept others waiting.
  if (cpu >= std::max(hog, hog_report_floor_ns) && !w.hog_reported && w.moved != 0 &&
      p->schedtick.load(std::memory_order_relaxed) == t) {
    report_hog(s.sysmon, f, ran, w.moved, s.opts);
    s.sysmon.hogs.fetch_add(1, std::memory_order_relaxed);
    w.hog_reported = true;
  }
  if (moved == 0) return;
  s.sysmon.handoffs.fetch_add(1, std::memory_order_relaxed);
  // A hog keeps sysmon on short ticks for a while; a thread off the CPU
  // does not: 20 us ticks on a crowded CPU would crowd it further.
  if (is_hog) r.acted = true;
  r.moved = true;
}

tick_result check_all(scheduler& s, std::int64_t now, const poke_info& poke) {
  tick_result r;
  for (unsigned i = 0; i < s.np_total; ++i) {
    processor* p = &s.ps[i];
    p_watch& w = s.sysmon.watch[i];
    switch (p->status.load(std::memory_order_acquire)) {
      case p_status::syscall:
        check_syscall(s, p, w, now, poke, r);
        break;
      case p_status::running:
        check_running(s, p, w, now, r);
        break;
      default:
        break;
    }
    if (p->status.load(std::memory_order_relaxed) != p_status::running) {
      // Its fiber is gone (idle, blocking call, retired): a request set on
      // an earlier look races with it going (F8's leak); and when it runs
      // again its time counts from then, not from its last switch.
      drop_preempt(p);
      w.schedtick_seen = 0;
    }
  }
  // Work on the global queue that nobody is taking while some processor is
  // hogged (or that we just moved there): make sure a processor runs it,
  // lending a spare when every processor is busy.
  const std::uint64_t taken = s.gq.taken_hint();
  const bool gq_stuck = s.gq.size_hint() != 0 && taken == s.sysmon.gq_taken;
  s.sysmon.gq_taken = taken;
  if (r.hogged > 0 && (r.moved || gq_stuck)) {
    if (s.npidle.load(std::memory_order_relaxed) > 0) {
      wake_idle();
    } else {
      lend_spare();
    }
  } else if (r.moved) {
    wake_idle();  // moved from a descheduled worker: an idle processor may take it
  }
  if (r.hogged == 0) retire_idle_spares();
  return r;
}

// sleep_for_ns: sleep ns (or until poked, if ns < 0). Returns true if poked.
bool sleep_for_ns(sysmon_state& sm, std::int64_t ns) {
  if (ns >= 0) {
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    futex_wait(sm.wake, 0, &ts);
  } else {
    futex_wait(sm.wake, 0);  // until poked
  }
  // `deep` stays as it was: a poke that arrives while this tick runs then
  // finds it set, stores `wake`, and the next sleep returns at once.
  return sm.wake.exchange(0, std::memory_order_acquire) != 0;  // pairs with poke's release
}

// diagnostics: the deadlock check (when idle), the scheduler trace and the
// SIGQUIT dump. Returns the longest it may sleep before its next duty.
std::int64_t diagnostics(scheduler& s, bool idle, std::int64_t& next_trace,
                         std::int64_t& next_second) {
  const std::int64_t now = now_ns();
  if (sigquit_take()) {
    std::ostringstream out;
    out << "weft: SIGQUIT\n";
    write_dump(s, out, SIZE_MAX);
    std::fputs(out.str().c_str(), stderr);
  }
  std::int64_t cap = INT64_MAX;
  // Once a second: look for fibers stuck on lock cycles.
  if (now >= next_second) {
    next_second = now + 1000 * ms;
    partial_deadlock_tick(s, now);
  }
  if (g_mutex_waiters.load(std::memory_order_relaxed) != 0) {
    cap = next_second - now;  // keep looking while fibers wait for locks
  }
  const sysmon_state& sm = s.sysmon;
  if (sm.trace_every_ns > 0) {
    if (now >= next_trace) {
      std::fputs(schedtrace_line(s, now - sm.started_ns).c_str(), stderr);
      next_trace = now + sm.trace_every_ns;
    }
    cap = std::min(cap, next_trace - now);
  }
  if (idle && s.ph.load(std::memory_order_acquire) == phase::running) {
    switch (deadlock_tick(s, now)) {
      case deadlock_verdict::deadlocked:
        // D2: hand the verdict to run(): stop, and wake it as the last idle
        // machine would (every machine is idle).
        advance_phase(s, phase::stopping);  // U5
        s.all_idle.store(1, std::memory_order_release);
        futex_wake(s.all_idle);
        break;
      case deadlock_verdict::watching:
        cap = std::min(cap, deadlock_tick_ns);  // e.g. for a foreign party to exit
        break;
      case deadlock_verdict::impossible:
        break;
    }
  }
  return cap;
}

// scavenger: the memory scavenger's tick (stack_pool.hpp): give back the
// pages of free stacks and fiber records that stayed unused for a few
// ticks. Off the hot path, and on sysmon's thread only (S3, P3). Returns
// the longest sysmon may sleep: while warm free stacks or records above the
// floors exist it must tick even when every processor is idle, or a
// burst's memory would stay until the next burst.
std::int64_t scavenger(scheduler& s, std::int64_t& next_tick) {
  const std::int64_t now = now_ns();
  if (now >= next_tick) {
    next_tick = now + g_scavenge_tick_ns.load(std::memory_order_relaxed);
    flush_idle_stack_caches();
    const bool released = s.stacks.scavenge() + s.fibers.scavenge() != 0;
#if defined(__GLIBC__)
    // The pool's own lists grew with the burst (8 bytes per record) and
    // were freed into glibc's heaps, which keep freed memory until trimmed.
    if (released) ::malloc_trim(0);
#else
    (void)released;
#endif
  }
  return s.stacks.scavenge_pending() || s.fibers.scavenge_pending() ? next_tick - now : INT64_MAX;
}

void loop(scheduler& s) {
  ::prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // 20 us ticks must not become 70 us
  sysmon_state& sm = s.sysmon;
  sm.tid.store(static_cast<long>(::gettid()), std::memory_order_relaxed);
  std::int64_t next_trace = now_ns();
  std::int64_t next_second = now_ns();
  std::int64_t next_scavenge = now_ns();
  partial_deadlock_reset();
  const std::int64_t max_tick = std::max(
      min_tick,
      std::min<std::int64_t>(10 * ms, std::chrono::nanoseconds(s.opts.hog_handoff).count() / 2));
  // Coarse (and `deep`, so blocking calls poke) until something needs timing.
  std::int64_t delay = max_tick;
  int grace = 0;
  poke_info poke;
  while (!sm.stop.load(std::memory_order_acquire)) {
    const std::int64_t now = coarse_now_ns();
    const tick_result r = check_all(s, now, poke);
    poke = poke_info{};
    if (r.deadline != INT64_MAX && r.deadline - now_ns() < spin_window) {
      // A blocking call becomes due within microseconds: a timed sleep
      // would oversleep by tens of microseconds on a VM, so spin.
      while (now_ns() < r.deadline && !sm.stop.load(std::memory_order_relaxed)) cpu_relax();
      continue;
    }
    if (r.acted) {
      delay = min_tick;
      grace = grace_ticks;
    } else if (r.probing) {
      delay = min_tick;
    } else if (grace > 0) {
      --grace;
    } else {
      delay = std::min(delay * 2, max_tick);
    }
    const bool idle =
        !r.busy && s.nactive.load(std::memory_order_relaxed) <= static_cast<int>(s.nprocs);
    // seq_cst: published before the futex re-checks `wake`, so a poke
    // racing with this store is either seen by the futex or not needed.
    sm.deep.store(idle || delay >= deep_tick, std::memory_order_seq_cst);
    sm.idle_sleep.store(idle, std::memory_order_seq_cst);
    // deadlock.cpp D3: idle_sleep before the deadlock check reads its
    // conditions; pairs with the fence in deadlock_recheck.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::int64_t sleep_ns = idle ? -1 : delay;
    if (r.deadline != INT64_MAX) {
      sleep_ns = std::max<std::int64_t>(0, r.deadline - now_ns() - spin_window / 2);
    }
    const std::int64_t cap =
        std::min(diagnostics(s, idle, next_trace, next_second), scavenger(s, next_scavenge));
    if (cap != INT64_MAX && (sleep_ns < 0 || sleep_ns > cap))
      sleep_ns = std::max<std::int64_t>(0, cap);
    sm.untimed.store(sleep_ns < 0, std::memory_order_relaxed);
    const bool poked = sleep_for_ns(sm, sleep_ns);
    sm.untimed.store(false, std::memory_order_relaxed);
    if (!poked) continue;
    // Poked. By a blocking call: time that call now (it is handed off within
    // about blocking_handoff; if it was short, the doubling resumes). By a
    // processor starting work: coarse ticks suffice (hogs take 10 ms, and
    // blocking calls will poke).
    const auto poked_p = sm.poke_p.exchange(0, std::memory_order_acquire);
    if (poked_p != 0) {
      poke.p = &s.ps[poked_p - 1];
      poke.tick = sm.poke_tick.load(std::memory_order_relaxed);
      poke.at = sm.poked_at.load(std::memory_order_relaxed);
      delay = min_tick;
    } else {
      delay = max_tick;
    }
  }
}

}  // namespace

void sysmon_start(scheduler& s) {
  s.sysmon.watch.assign(s.np_total, p_watch{});
  s.sysmon.stop.store(false, std::memory_order_relaxed);
  s.sysmon.thread = start_os_thread([&s] { loop(s); });
}

void sysmon_stop(scheduler& s) {
  s.sysmon.stop.store(true, std::memory_order_release);
  s.sysmon.wake.store(1, std::memory_order_release);
  futex_wake(s.sysmon.wake);
  if (s.sysmon.thread.joinable()) s.sysmon.thread.join();
  report_hog_summary(s.sysmon);  // joined: its state is ours now (M3)
}

void set_scavenge_tick(std::chrono::milliseconds tick) noexcept {
  g_scavenge_tick_ns.store(tick.count() > 0 ? tick.count() * ms : 1000 * ms,
                           std::memory_order_relaxed);
}

std::uint64_t sysmon_handoffs(scheduler& s) noexcept {
  return s.sysmon.handoffs.load(std::memory_order_relaxed);
}

void deadlock_recheck() noexcept {
  sysmon_state& sm = g_sched->sysmon;
  // D3 (deadlock.cpp): the caller's condition changed before this fence;
  // sysmon stores idle_sleep before its own. One of the two sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sm.idle_sleep.load(std::memory_order_relaxed)) sysmon_poke(*g_sched, nullptr);
}

void sysmon_poke(scheduler& s, const processor* blocked) noexcept {
  sysmon_state& sm = s.sysmon;
  // A blocking call needs a look within blocking_handoff; a processor that
  // starts work only when sysmon would otherwise sleep indefinitely.
  if (!(blocked != nullptr ? sm.deep : sm.idle_sleep).load(std::memory_order_relaxed)) return;
  if (blocked != nullptr) {
    // The mailbox: published by the release store of poke_p; the monitor's
    // acquire exchange of poke_p pairs with it. A later poke may overwrite
    // an unread one: that call is then timed from its first sighting.
    sm.poked_at.store(now_ns(), std::memory_order_relaxed);
    sm.poke_tick.store(blocked->syscalltick.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
    sm.poke_p.store(blocked->index + 1, std::memory_order_release);
  }
  // Only the first poke of a sleep pays for the system call; while `wake` is
  // 1 the monitor's next futex_wait returns at once, so none is lost.
  if (sm.wake.exchange(1, std::memory_order_acq_rel) == 0) futex_wake(sm.wake);
}

}  // namespace weft::detail
