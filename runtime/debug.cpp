// debug.cpp: fiber dumps, the scheduler trace line, and the SIGQUIT dump.
//
// Design
//   Fiber records are type-stable (fiber_pool.hpp), so a dump walks every
//   record while the program runs and prints the live ones. A fiber may
//   wake while it is printed, so a line shows its state "at about this
//   time", as Go's goroutine dumps do; but a record may also be recycled
//   for another fiber meanwhile, and a line must never mix two fibers. So
//   take_snapshot reads a record's fields (all relaxed atomics) under its
//   seqlock (fiber.hpp F5) and retries, or skips the record, when it
//   changed hands during the read.
//   The SIGQUIT handler only sets a flag and pokes sysmon, which writes the
//   dump from its own thread (nothing here is async-signal-safe).

#include "weft/debug.hpp"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/debug_internal.hpp"
#include "runtime/scheduler.hpp"

namespace weft {
namespace detail {
namespace {

const char* reason_name(wait_reason r) {
  switch (r) {
    case wait_reason::chan_send:
      return "chan send";
    case wait_reason::chan_recv:
      return "chan recv";
    case wait_reason::select:
      return "select";
    case wait_reason::select_forever:
      return "select (no cases)";
    case wait_reason::mutex:
      return "mutex";
    case wait_reason::cond:
      return "condition_variable";
    case wait_reason::wait_group:
      return "wait_group";
    case wait_reason::sleep:
      return "sleep";
    case wait_reason::netpoll_read:
      return "netpoll read";
    case wait_reason::netpoll_write:
      return "netpoll write";
    case wait_reason::blocking_call:
      return "blocking";
    case wait_reason::none:
      break;
  }
  return "parked";
}

// A duration for humans: 850 ns, 12 us, 3 ms, 2.31 s, 4 min.
std::string human(std::int64_t ns) {
  char buf[32];
  if (ns < 0) ns = 0;
  if (ns < 1000) {
    std::snprintf(buf, sizeof buf, "%lld ns", static_cast<long long>(ns));
  } else if (ns < 1000000) {
    std::snprintf(buf, sizeof buf, "%lld us", static_cast<long long>(ns / 1000));
  } else if (ns < 1000000000) {
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ns / 1000000));
  } else if (ns < 120 * std::int64_t{1000000000}) {
    std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(ns) / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%lld min", static_cast<long long>(ns / 60000000000));
  }
  return buf;
}

// snapshot: what a dump line shows of one fiber, read consistently.
struct snapshot {
  std::uint64_t id;
  const char* file;
  std::uint32_t line;
  bool is_main;
  fiber_state state;
  wait_reason reason;
  const void* obj;
  std::int64_t note;
  std::int64_t since;
};

// take_snapshot: read f as one fiber (fiber.hpp F5). False when the record is not a
// live fiber (free or dead), or kept changing hands while we read it.
bool take_snapshot(const fiber& f, snapshot& out) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    // acquire: pairs with the release store in publish_identity, so the
    // identity fields read below are at least that incarnation's.
    const std::uint32_t before = f.seq.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;  // being handed out: not a fiber yet
    out.state = f.state.load(std::memory_order_relaxed);
    out.id = f.get_id();
    out.file = f.get_file();
    out.line = f.get_line();
    out.is_main = f.main_fiber();
    out.reason = f.reason.load(std::memory_order_relaxed);
    out.obj = f.wait_obj.load(std::memory_order_relaxed);
    out.note = f.wait_note.load(std::memory_order_relaxed);
    out.since = f.wait_since.load(std::memory_order_relaxed);
    // acquire: pairs with the release fence in begin_incarnation: if any
    // load above saw a later incarnation's value, `seq` has moved on.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (f.seq.load(std::memory_order_relaxed) == before) {
      return out.state != fiber_state::free && out.state != fiber_state::dead;
    }
  }
  return false;
}

// describe: the bracketed state of one fiber, e.g. "chan recv 0x55d0, 2.31 s".
std::string describe(const snapshot& f, std::int64_t now, std::int64_t now_coarse) {
  switch (f.state) {
    case fiber_state::runnable:
      return "runnable";
    case fiber_state::running:
      return f.reason == wait_reason::blocking_call ? "blocking" : "running";
    case fiber_state::parked:
      break;
    default:
      return "dead";
  }
  const wait_reason r = f.reason;
  const void* obj = f.obj;
  const std::int64_t note = f.note;
  const std::int64_t waited = now_coarse - f.since;
  char buf[96];
  switch (r) {
    case wait_reason::sleep:
      std::snprintf(buf, sizeof buf, "sleep until +%s", human(note - now).c_str());
      return buf;
    case wait_reason::netpoll_read:
    case wait_reason::netpoll_write:
      std::snprintf(buf, sizeof buf, "%s fd %lld", reason_name(r), static_cast<long long>(note));
      break;
    case wait_reason::select:
      std::snprintf(buf, sizeof buf, "select (%lld cases)", static_cast<long long>(note));
      break;
    case wait_reason::select_forever:
      std::snprintf(buf, sizeof buf, "%s", reason_name(r));
      break;
    case wait_reason::cond:
      if (note != 0) {
        std::snprintf(buf, sizeof buf, "condition_variable %p, timeout in %s", obj,
                      human(note - now).c_str());
        break;
      }
      [[fallthrough]];
    default:
      std::snprintf(buf, sizeof buf, "%s %p", reason_name(r), obj);
      break;
  }
  return std::string(buf) + ", " + human(waited);
}

struct row {
  std::uint64_t id;
  std::string text;
};

std::atomic<bool> g_sigquit_pending{false};
struct sigaction g_old_sigquit;
bool g_sigquit_installed = false;

void on_sigquit(int) {
  g_sigquit_pending.store(true, std::memory_order_relaxed);
  if (scheduler* s = g_sched) {
    s->sysmon.wake.store(1, std::memory_order_release);
    futex_wake(s->sysmon.wake);
  }
}

std::string describe_line(const snapshot& f, std::int64_t now, std::int64_t now_coarse) {
  std::string text = "fiber " + std::to_string(f.id) + " [" + describe(f, now, now_coarse) +
                     "]: started at " + f.file + ":" + std::to_string(f.line);
  if (f.is_main) text += " (main)";
  return text;
}

}  // namespace

std::string describe_fiber(const fiber& f, std::int64_t now, std::int64_t now_coarse) {
  snapshot snap;
  if (!take_snapshot(f, snap)) return "fiber " + std::to_string(f.get_id()) + " [gone]";
  return describe_line(snap, now, now_coarse);
}

std::size_t write_dump(scheduler& s, std::ostream& out, std::size_t limit) {
  const std::int64_t now = now_ns();
  const std::int64_t now_coarse = coarse_now_ns();
  std::vector<row> rows;
  s.fibers.for_each_resident_record([&](fiber* f) {
    snapshot snap;
    if (take_snapshot(*f, snap)) rows.push_back(row{snap.id, describe_line(snap, now, now_coarse)});
  });
  std::sort(rows.begin(), rows.end(), [](const row& a, const row& b) { return a.id < b.id; });
  out << "weft: " << rows.size() << " fibers, " << s.nprocs << " workers, "
      << s.live_threads.load(std::memory_order_relaxed) + 2 << " threads\n";
  std::size_t n = 0;
  for (const row& r : rows) {
    if (n == limit) {
      out << "... and " << rows.size() - n << " more\n";
      break;
    }
    out << r.text << '\n';
    ++n;
  }
  return rows.size();
}

std::string schedtrace_line(scheduler& s, std::int64_t since_start_ns) {
  std::string local;
  std::uint64_t runnable = s.gq.size_hint();
  for (unsigned i = 0; i < s.np_total; ++i) {
    const processor& p = s.ps[i];
    if (p.status.load(std::memory_order_relaxed) == p_status::dead) continue;
    const std::uint32_t n = p.runq.size();
    runnable += n;
    if (!local.empty()) local += ' ';
    local += std::to_string(n);
  }
  unsigned idle_threads;
  std::size_t threads;
  {
    os_lock lk(s.mu);
    idle_threads = s.nmidle;
    threads = s.machines.size() + 2;
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "weft: SCHED %lldms: workers=%u idleprocs=%d threads=%zu spinningthreads=%d "
                "idlethreads=%u runqueue=%zu [%s] runnable=%llu handoffs=%llu\n",
                static_cast<long long>(since_start_ns / 1000000), s.nprocs,
                s.npidle.load(std::memory_order_relaxed), threads,
                s.nmspinning.load(std::memory_order_relaxed), idle_threads, s.gq.size_hint(),
                local.c_str(), static_cast<unsigned long long>(runnable),
                static_cast<unsigned long long>(s.sysmon.handoffs.load(std::memory_order_relaxed)));
  return buf;
}

void sigquit_install() {
  struct sigaction sa {};
  sa.sa_handler = &on_sigquit;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  g_sigquit_installed = ::sigaction(SIGQUIT, &sa, &g_old_sigquit) == 0;
}

void sigquit_remove() {
  if (!g_sigquit_installed) return;
  ::sigaction(SIGQUIT, &g_old_sigquit, nullptr);
  g_sigquit_installed = false;
}

bool sigquit_take() { return g_sigquit_pending.exchange(false, std::memory_order_relaxed); }

std::uint64_t fibers_parked_now() noexcept {
  runtime_pin pin;  // L1
  if (!pin) return 0;
  std::uint64_t n = 0;
  g_sched->fibers.for_each_resident_record([&](fiber* f) {
    if (f->state.load(std::memory_order_relaxed) == fiber_state::parked) ++n;
  });
  return n;
}

}  // namespace detail

void dump_fibers(std::ostream& out) {
  // Hold a foreign_inflight slot so the runtime cannot be torn down under
  // the walk (runtime.cpp L1).
  detail::runtime_pin pin;
  if (!pin) {
    out << "weft: no runtime running\n";
    return;
  }
  detail::write_dump(*detail::g_sched, out, SIZE_MAX);
}

}  // namespace weft
