// signal.cpp: weft::signal::notify and stop (weft/signal.hpp).
//
// Design
//   A handler that records the signal in g_pending and writes one byte to
//   a non-blocking self-pipe (both async-signal-safe; the byte is only a
//   wakeup, so a full pipe loses nothing), and one dispatcher fiber that
//   waits on the pipe's read end through the netpoller, takes the pending
//   signals and sends each, without blocking, to the channels registered
//   for it. The dispatcher runs while registrations exist and a runtime
//   runs; notify starts it, it leaves when the last registration goes, and
//   shutdown unwinds it like any fiber (a later run's notify starts another).
//   Rejected: signalfd (the examples' former way). It only receives signals
//   that every thread of the process blocks, and a library cannot arrange
//   that once threads exist (the runtime's workers, the user's threads, a
//   library's): a thread with the signal unblocked would take its default
//   action and end the process. A handler works in whatever thread the
//   kernel picks.
//
// Invariants
//   G1  A signal's handler is installed iff it has at least one
//       registration; g_saved[sig] holds what it replaced. Both under g_mu.
//   G2  g_dispatching is true iff a dispatcher fiber exists; it is set by
//       the notify that starts one and cleared by the dispatcher when it
//       leaves, both under g_mu, so a registration never lacks one while a
//       runtime runs.
//   G3  Channels are sent to only under g_mu: once stop() has removed a
//       registration (under g_mu), its channel receives nothing more.
//
//   G4  g_mu is a weft::mutex, not a std::mutex: its holder may yield
//       (go() and select are preemption points), and a fiber that then
//       blocked its worker thread on a std::mutex held by a descheduled
//       fiber of the same worker would never let the holder run again (a
//       hang seen under load with one worker: notify yielding in go() while
//       the new dispatcher took the lock). Plain threads may take it too.
//
// Lock order: g_mu < channel lock. The handler takes no lock.

#include "weft/signal.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "runtime/sanitizers.hpp"
#include "runtime/sys.hpp"
#include "weft/net.hpp"
#include "weft/runtime.hpp"
#include "weft/select.hpp"
#include "weft/sync.hpp"

namespace weft::signal {
namespace {

constexpr int max_signal = 65;  // Linux: signals 1..64

struct registration {
  chan<int> ch;
  std::uint64_t mask;  // bit s-1 for signal s
};

// Written by the handler (relaxed: the pipe write publishes), taken by the
// dispatcher with exchange. Lock-free, so async-signal-safe.
std::atomic<bool> g_pending[max_signal];
static_assert(std::atomic<bool>::is_always_lock_free);
// The self-pipe: created once, kept for the life of the process (a handler
// may be writing to it at any moment). Written by notify under g_mu before
// the first handler is installed; read by the handler (relaxed: sigaction
// orders it).
std::atomic<int> g_pipe_rd{-1}, g_pipe_wr{-1};

weft::mutex g_mu;                      // G4
std::vector<registration> g_regs;      // guarded by g_mu
struct sigaction g_saved[max_signal];  // G1; guarded by g_mu
int g_users[max_signal] = {};          // registrations per signal; guarded by g_mu
bool g_dispatching = false;            // G2; guarded by g_mu

void on_signal(int sig) {
  const int saved = errno;
  if (sig > 0 && sig < max_signal) g_pending[sig].store(true, std::memory_order_relaxed);
  const char b = 1;
  (void)!detail::sys_write(g_pipe_wr.load(std::memory_order_relaxed), &b, 1);
  errno = saved;
}

bool notifiable(int sig) {
  if (sig <= 0 || sig >= max_signal || sig >= NSIG) return false;
  switch (sig) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
      return false;
    default:
      return true;
  }
}

void ensure_pipe() {
  if (g_pipe_rd.load(std::memory_order_relaxed) >= 0) return;
  int fds[2];
  if (detail::sys_pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::generic_category(), "weft::signal::notify: pipe2");
  }
  g_pipe_rd.store(fds[0], std::memory_order_relaxed);
  g_pipe_wr.store(fds[1], std::memory_order_relaxed);
}

void drain_pipe(int fd) noexcept {
  char buf[64];
  while (detail::sys_read(fd, buf, sizeof buf) > 0) {
  }
}

// deliver_pending: send every pending signal to its channels (G3).
void deliver_pending() {
  for (int sig = 1; sig < max_signal; ++sig) {
    if (!g_pending[sig].load(std::memory_order_relaxed)) continue;
    if (!g_pending[sig].exchange(false, std::memory_order_acquire)) continue;
    const std::uint64_t bit = std::uint64_t{1} << (sig - 1);
    for (const registration& r : g_regs) {
      if ((r.mask & bit) != 0) select(send_case(r.ch, sig), default_case());
    }
  }
}

void dispatch() {
  const int rd = g_pipe_rd.load(std::memory_order_relaxed);
  // G2, also when the runtime unwinds this fiber at shutdown.
  struct leave {
    bool cleared = false;
    ~leave() {
      if (cleared) return;
      std::lock_guard<weft::mutex> g(g_mu);
      g_dispatching = false;
    }
  } guard;
  for (;;) {
    {
      std::lock_guard<weft::mutex> g(g_mu);
      drain_pipe(rd);
      deliver_pending();
      if (g_regs.empty()) {
        g_dispatching = false;
        guard.cleared = true;
        return;
      }
    }
    net::wait_readable(rd);
  }
}

}  // namespace

chan<int> notify(std::initializer_list<int> signals) {
  std::uint64_t mask = 0;
  for (int sig : signals) {
    if (!notifiable(sig)) {
      throw std::invalid_argument("weft::signal::notify: signal " + std::to_string(sig) +
                                  " cannot be notified");
    }
    mask |= std::uint64_t{1} << (sig - 1);
  }
  chan<int> ch(signals.size() == 0 ? 1 : signals.size());
  std::lock_guard<weft::mutex> g(g_mu);
  ensure_pipe();
  if (!g_dispatching) {
    weft::go([] { dispatch(); });  // std::logic_error without a runtime: nothing changed yet
    g_dispatching = true;
  }
  g_regs.push_back({ch, mask});
  for (int sig = 1; sig < max_signal; ++sig) {
    if ((mask & (std::uint64_t{1} << (sig - 1))) == 0 || g_users[sig]++ != 0) continue;
    struct sigaction sa {};
    sa.sa_handler = &on_signal;
    sigemptyset(&sa.sa_mask);
#if WEFT_TSAN
    // No SA_RESTART under TSan: an idle runtime thread's futex wait must
    // return for TSan to run the handler (runtime/futex.hpp).
    sa.sa_flags = SA_ONSTACK;
#else
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
#endif
    if (::sigaction(sig, &sa, &g_saved[sig]) != 0) {
      const int e = errno;
      --g_users[sig];
      throw std::system_error(e, std::generic_category(), "weft::signal::notify: sigaction");
    }
  }
  return ch;
}

void stop(const chan<int>& ch) {
  std::lock_guard<weft::mutex> g(g_mu);
  bool removed = false;
  for (std::size_t i = 0; i < g_regs.size();) {
    if (g_regs[i].ch != ch) {
      ++i;
      continue;
    }
    const std::uint64_t mask = g_regs[i].mask;
    g_regs.erase(g_regs.begin() + static_cast<std::ptrdiff_t>(i));
    removed = true;
    for (int sig = 1; sig < max_signal; ++sig) {
      if ((mask & (std::uint64_t{1} << (sig - 1))) == 0) continue;
      if (--g_users[sig] == 0) ::sigaction(sig, &g_saved[sig], nullptr);  // G1
    }
  }
  if (removed && g_regs.empty() && g_dispatching) {
    const char b = 0;  // wake the dispatcher so that it leaves
    (void)!detail::sys_write(g_pipe_wr.load(std::memory_order_relaxed), &b, 1);
  }
}

}  // namespace weft::signal
