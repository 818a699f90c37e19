// deadlock.cpp: "all fibers are asleep - deadlock!"
//
// Purpose
//   run() throws deadlock_error when no fiber can ever run again (API.md
//   "Diagnostics"), and never raises a false alarm.
//
// Design
//   The rule: no fiber running or runnable, none inside weft::blocking, no
//   timer pending, no fiber parked on the netpoller, no foreign
//   thread that could still act, and at least one fiber parked.
//   sysmon evaluates it when every processor is idle (it then ticks every
//   20 ms instead of sleeping until poked), in two steps:
//   1. the cheap conditions, read lock-free as hints: every active processor
//      idle, no machine running a fiber or spinning, the global queue empty,
//      no timer in the heap, no fiber waiting for I/O, some fiber alive;
//   2. a progress signature (switch counts, global-queue traffic, readies
//      and spawns from outside any processor, fibers started and finished)
//      must stay identical, with step 1 true throughout, for 20 ms, and no
//      foreign party may be alive. A wake-up in flight (the poller firing a
//      timer, a foreign thread readying a fiber) moves the signature within
//      microseconds, so a transient "all idle" is never reported.
//   Foreign parties: a thread the runtime did not create, other than run()'s
//   caller, counts while it is alive if it did not exist when the runtime
//   finished starting its threads (a snapshot of /proc/self/task), or if it
//   called into weft during this run (note_foreign_call, from go(), thread
//   waiters and readies). Pre-existing threads that never call in (a
//   sanitizer's or a library's background thread) are ignored, as API.md
//   says. /proc/self/task is read only in step 2.
//   Rejected: tracking thread creation by interposing pthread_create (fragile
//   with sanitizers and static linking; /proc answers the same question).
//
//   Partial deadlocks (a warning, the program goes on): Go misses every
//   deadlock while any socket is open. weft reports, even then, the fibers
//   it can *prove* stuck: fibers waiting for weft::mutexes in a cycle (A
//   waits for a lock B holds while B waits for one A holds), and fibers
//   waiting for a lock whose holder has finished. Every weft::mutex knows its
//   holder, and a lock is released only by its holder, which is itself
//   parked on a lock: nothing else can ever release them. Each fiber in the
//   chain must have waited at least a second (so no race with a hand-over in
//   flight). Channels, condition variables and wait groups are not judged:
//   C++ cannot tell which parties still hold a channel handle or will call
//   notify or done, so any verdict there could be a false alarm.
//
// Invariants
//   D1  dl_signature/dl_since are sysmon's alone.
//   D2  s.deadlocked and s.deadlock_message are written once, by sysmon,
//       before it stores all_idle (release); run() reads them after its
//       acquire load.

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "netpoll/netpoll.hpp"
#include "runtime/debug_internal.hpp"
#include "runtime/futex.hpp"
#include "runtime/scheduler.hpp"
#include "weft/sync.hpp"

namespace weft::detail {
namespace {

constexpr std::int64_t confirm_ns = 20 * 1000 * 1000;

// Which run this thread last registered itself for (0 = none).
thread_local std::uint64_t t_party_epoch = 0;
std::atomic<std::uint64_t> g_epoch{0};

std::vector<long> list_tids() {
  std::vector<long> out;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      out.push_back(std::strtol(e->d_name, nullptr, 10));
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool cheap_conditions(scheduler& s) {
  if (s.npidle.load(std::memory_order_acquire) != s.nactive.load(std::memory_order_acquire)) {
    return false;  // a processor runs fibers or sits in a blocking call
  }
  if (s.nm_running.load(std::memory_order_acquire) != 0) return false;
  if (s.nmspinning.load(std::memory_order_acquire) != 0) return false;
  if (s.gq.size_hint() != 0) return false;
  if (netpoll_parked() != 0) return false;  // I/O may still wake it (Go: netpollAnyWaiters)
  if (s.poll.timers_pending() != 0) return false;
  std::uint64_t started = s.shared_started.load(std::memory_order_relaxed), finished = 0;
  for (unsigned i = 0; i < s.np_total; ++i) {
    started += s.ps[i].started.get();
    finished += s.ps[i].finished.get();
  }
  return started > finished;  // someone is parked
}

std::uint64_t signature(scheduler& s) {
  std::uint64_t sig = s.gq.taken_hint() * 7 +
                      s.shared_readies.load(std::memory_order_relaxed) * 13 +
                      s.shared_started.load(std::memory_order_relaxed) * 17;
  for (unsigned i = 0; i < s.np_total; ++i) {
    const processor& p = s.ps[i];
    sig += p.schedtick.load(std::memory_order_relaxed) * 3 + p.started.get() * 5 +
           p.finished.get() * 11;
  }
  return sig;
}

bool foreign_party_alive(scheduler& s) {
  std::vector<long> runtime_tids;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    for (const machine* m : s.machines) runtime_tids.push_back(m->tid);
  }
  runtime_tids.push_back(s.poll.thread_tid());
  runtime_tids.push_back(s.sysmon.tid.load(std::memory_order_relaxed));
  std::vector<long> parties;
  {
    std::lock_guard<std::mutex> lk(s.party_mu);
    parties = s.party_tids;
  }
  for (long tid : list_tids()) {
    if (tid == s.run_caller_tid) continue;
    if (std::find(runtime_tids.begin(), runtime_tids.end(), tid) != runtime_tids.end()) continue;
    const bool old = std::binary_search(s.baseline_tids.begin(), s.baseline_tids.end(), tid);
    const bool called_in = std::find(parties.begin(), parties.end(), tid) != parties.end();
    if (!old || called_in) return true;
  }
  return false;
}

}  // namespace

void parties_begin(scheduler& s) {
  s.run_epoch = g_epoch.fetch_add(1, std::memory_order_relaxed) + 1;
  s.baseline_tids = list_tids();
  s.party_tids.clear();
}

void note_foreign_call() noexcept {
  scheduler* s = g_sched;
  if (s == nullptr || t_party_epoch == s->run_epoch) return;
  if (current_m() != nullptr) return;  // a runtime worker is not a foreign party
  t_party_epoch = s->run_epoch;
  try {
    std::lock_guard<std::mutex> lk(s->party_mu);
    s->party_tids.push_back(static_cast<long>(::gettid()));
  } catch (...) {
    t_party_epoch = 0;  // out of memory: try again next call
  }
}

deadlock_verdict deadlock_tick(scheduler& s, std::int64_t now) {
  if (!cheap_conditions(s)) {
    s.dl_since = 0;
    return deadlock_verdict::impossible;
  }
  const std::uint64_t sig = signature(s);
  if (s.dl_since == 0 || sig != s.dl_signature) {
    s.dl_signature = sig;
    s.dl_since = now;
    return deadlock_verdict::watching;
  }
  if (now - s.dl_since < confirm_ns) return deadlock_verdict::watching;
  if (foreign_party_alive(s)) {
    s.dl_since = now;  // look again later: the party may exit
    return deadlock_verdict::watching;
  }
  std::ostringstream msg;
  msg << "weft: all fibers are asleep - deadlock!\n\n";
  write_dump(s, msg, 1000);
  s.deadlock_message = msg.str();
  s.deadlocked = true;
  return deadlock_verdict::deadlocked;
}

}  // namespace weft::detail

namespace weft::detail {
namespace {

struct waiting_fiber {
  const fiber* f;
  std::uint64_t owner;  // the holder of the mutex it waits for (0: unknown)
};

std::vector<std::uint64_t> g_reported;  // fiber ids already reported; sysmon only

}  // namespace

void partial_deadlock_tick(scheduler& s, std::int64_t) {
  if (g_mutex_waiters.load(std::memory_order_relaxed) == 0) return;
  const std::int64_t now_coarse = coarse_now_ns();
  constexpr std::int64_t min_wait = 1000000000;
  std::unordered_map<std::uint64_t, waiting_fiber> waiting;
  std::unordered_map<std::uint64_t, const fiber*> alive;
  s.fibers.for_each_record([&](fiber* f) {
    const fiber_state st = f->state.load(std::memory_order_acquire);
    if (st == fiber_state::free || st == fiber_state::dead) return;
    alive.emplace(f->get_id(), f);
    if (st != fiber_state::parked ||
        f->reason.load(std::memory_order_relaxed) != wait_reason::mutex)
      return;
    if (now_coarse - f->wait_since.load(std::memory_order_relaxed) < min_wait) return;
    waiting.emplace(f->get_id(),
                    waiting_fiber{f, mutex_owner(f->wait_obj.load(std::memory_order_relaxed))});
  });
  std::vector<std::uint64_t> stuck;
  std::string finished_note;
  for (const auto& [id, wf] : waiting) {
    // Follow "waits for a lock held by" from id; each fiber waits for one lock.
    std::vector<std::uint64_t> path{id};
    std::uint64_t cur = id;
    for (;;) {
      const std::uint64_t owner = waiting.at(cur).owner;
      if (owner == 0) break;  // held by a plain thread (or just released): unknown
      if (std::find(path.begin(), path.end(), owner) != path.end()) {
        if (owner == id) stuck.insert(stuck.end(), path.begin(), path.end());  // a cycle through id
        break;
      }
      if (waiting.count(owner) == 0) {
        if (alive.count(owner) == 0) {  // the holder has finished: nobody can unlock it
          stuck.insert(stuck.end(), path.begin(), path.end());
          finished_note += "(the lock fiber " + std::to_string(cur) +
                           " waits for is held by fiber " + std::to_string(owner) +
                           ", which has finished)\n";
        }
        break;
      }
      path.push_back(owner);
      cur = owner;
    }
  }
  std::sort(stuck.begin(), stuck.end());
  stuck.erase(std::unique(stuck.begin(), stuck.end()), stuck.end());
  std::vector<std::uint64_t> fresh;
  for (std::uint64_t id : stuck) {
    if (std::find(g_reported.begin(), g_reported.end(), id) == g_reported.end())
      fresh.push_back(id);
  }
  if (fresh.empty()) return;
  g_reported.insert(g_reported.end(), fresh.begin(), fresh.end());
  std::ostringstream out;
  out << "weft: warning: " << stuck.size()
      << " fibers are deadlocked on weft::mutex (the rest of the program goes on):\n";
  const std::int64_t now = now_ns();
  for (std::uint64_t id : stuck) out << describe_fiber(*alive.at(id), now, now_coarse) << "\n";
  out << finished_note;
  std::fputs(out.str().c_str(), stderr);
}

void partial_deadlock_reset() { g_reported.clear(); }

}  // namespace weft::detail
