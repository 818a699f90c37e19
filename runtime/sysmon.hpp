#pragma once
// sysmon.hpp: the monitor thread's state (sysmon.cpp has the design).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace weft::detail {

struct scheduler;
struct fiber;

// What sysmon remembers about one processor between ticks. Owned by the
// sysmon thread; nobody else reads it.
struct p_watch {
  std::uint64_t schedtick = 0;
  std::int64_t schedtick_seen = 0;  // when schedtick last changed (ns)
  std::uint32_t syscalltick = 0;
  std::int64_t syscall_seen = 0;  // when this blocking call was first seen (ns)
  bool hog_reported = false;      // the current hog was already reported
  std::uint32_t rtwork = 0;       // processor::rtwork at the previous look
  std::size_t moved = 0;          // fibers moved off the current suspect so far
  std::uint32_t runq_head = 0;    // run queue progress at the previous look
  const fiber* next = nullptr;    // run queue `next` at the previous look
  bool asked = false;             // sysmon set processor::preempt in this episode
  // A suspected hog's thread: its CPU time (ns) when the suspicion began
  // (-1: not measured yet), and which thread it was (0: CPU time unknown).
  std::int64_t cpu_mark = -1;
  long mark_tid = 0;
};

struct sysmon_state {
  std::thread thread;
  // Futex word: the thread sleeps while it is 0; pokes exchange in 1.
  std::atomic<std::uint32_t> wake{0};
  // True while the thread's ticks are long (1 ms or more, or none at all).
  // Written only by the thread, before it sleeps (seq_cst, so the futex's
  // re-check of `wake` cannot miss a poke); read by weft::blocking's fast
  // path (relaxed), which pokes the thread so a long call is noticed within
  // blocking_handoff, not a tick later.
  std::atomic<bool> deep{false};
  // True while it sleeps because every processor was idle (no timed tick,
  // or only a diagnostics one). A processor starting work (acquire_p) pokes
  // only then: pokes on every acquire while ticks were merely `deep` cost a
  // busy server a futex wake per idle-to-busy transition and kept sysmon
  // at 10-20% of a core. Written like `deep`.
  std::atomic<bool> idle_sleep{false};
  std::atomic<bool> stop{false};
  std::atomic<long> tid{0};  // the thread's OS id (set by it at start), for deadlock.cpp
  // The blocking call that last poked the monitor: processor index + 1 (0 =
  // none), its syscalltick, and when it started (ns, no later than this).
  // Written by the poker, poke_p last (release); the monitor takes poke_p
  // with an acquire exchange and then reads the other two.
  std::atomic<std::uint32_t> poke_p{0};
  std::atomic<std::uint32_t> poke_tick{0};
  std::atomic<std::int64_t> poked_at{0};
  std::vector<p_watch> watch;  // sysmon thread only
  // Hog warnings already printed, by start site, with how many more hogs
  // each site had since (sysmon.cpp, report_hog). Sysmon thread only, and
  // sysmon_stop's caller after the join.
  struct hog_site {
    const char* file;
    std::uint32_t line;
    std::uint64_t more;
  };
  std::vector<hog_site> hog_sites;
  std::uint64_t hogs_unlisted = 0;  // hogs from sites beyond the named ones
  std::uint64_t gq_taken = 0;       // global queue progress at the previous tick; sysmon only
  // WEFT_SCHEDTRACE: the interval (0 = off) and when run() started; set by
  // run() before sysmon starts, then read-only.
  std::int64_t trace_every_ns = 0;
  std::int64_t started_ns = 0;
  // Statistics, written by the sysmon thread, read by stats().
  std::atomic<std::uint64_t> handoffs{0};  // processors taken from blocking calls and hogs
  std::atomic<std::uint64_t> hogs{0};      // hog episodes reported (report_hog)
  // True while the thread sleeps with no timed end (every processor idle,
  // nothing to time): it wakes only when poked. Written by the thread
  // around that sleep; relaxed, for tests (introspect.hpp).
  std::atomic<bool> untimed{false};
};

void sysmon_start(scheduler& s);
void sysmon_stop(scheduler& s);
std::uint64_t sysmon_handoffs(scheduler& s) noexcept;

struct processor;

// sysmon_poke: wake the monitor if it is in a long sleep. Cheap when it is
// not (one relaxed load). `blocked`: the processor whose machine just
// entered weft::blocking, or null when a processor is starting work.
void sysmon_poke(scheduler& s, const processor* blocked) noexcept;

}  // namespace weft::detail
