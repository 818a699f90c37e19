// poller.cpp: the netpoller thread (see poller.hpp) and its side of
// runtime/netpoll_contract.hpp.

#include "netpoll/poller.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "netpoll/netpoll.hpp"
#include "runtime/os_thread.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/sys.hpp"
#include "runtime/timers.hpp"
#include "weft/detail/introspect.hpp"
#include "weft/detail/perturb.hpp"

namespace weft::detail {
namespace {

// The one netpoller; the runtime starts it once per run.
poller g_poller;

// The test hook (introspect.hpp); relaxed: a test sets it before the cycles
// it means to hold, and the hook synchronises with the test itself.
std::atomic<void (*)()> g_cycle_hook{nullptr};

}  // namespace

void set_poller_cycle_hook(void (*hook)()) noexcept {
  g_cycle_hook.store(hook, std::memory_order_relaxed);
}

void poller::start(unsigned nprocs_total, bool worker_poll) {
  epfd_ = sys_epoll_create(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "weft: epoll_create1");
  evfd_ = sys_eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd_ < 0) {
    int e = errno;
    sys_close(epfd_);
    epfd_ = -1;
    throw std::system_error(e, std::generic_category(), "weft: eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // 0 = the eventfd
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev);
  netpoll_start(epfd_, nprocs_total, worker_poll);
  stop_.store(false, std::memory_order_relaxed);
  // The object serves every run: forget the last run's thread and wakeup.
  tid_.store(0, std::memory_order_relaxed);
  wake_pending_.store(false, std::memory_order_relaxed);
  thread_ = start_os_thread([this] { loop(); });
}

void poller::stop() noexcept {
  stop_.store(true, std::memory_order_release);
  // Force the write: wake_pending_ may be stale from before.
  const std::uint64_t one = 1;
  (void)!sys_write(evfd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void poller::destroy() noexcept {
  netpoll_stop();
  if (evfd_ >= 0) sys_close(evfd_);
  if (epfd_ >= 0) sys_close(epfd_);
  evfd_ = epfd_ = -1;
}

void poller::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  const std::uint64_t one = 1;
  (void)!sys_write(evfd_, &one, sizeof one);
}

// wait_all: sleep until a descriptor event, a wake() or `deadline`.
int poller::wait_all(std::int64_t now, std::int64_t deadline, epoll_event* events) noexcept {
  if (deadline == INT64_MAX) return ::epoll_wait(epfd_, events, max_events, -1);
  const std::int64_t wait = deadline - now;
  if (have_pwait2_) {
    timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
    const int n = ::epoll_pwait2(epfd_, events, max_events, &ts, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    have_pwait2_ = false;
  }
  return ::epoll_wait(epfd_, events, max_events, static_cast<int>((wait + 999999) / 1000000));
}

// rest: workers are running and poll the descriptors themselves
// (netpoll.cpp, "Who polls"): sleep on the eventfd only, until a wake(),
// `deadline` or one tick. If no worker polled during the tick, poll once
// for them. Returns the descriptor events found.
int poller::rest(std::int64_t now, std::int64_t deadline, epoll_event* events) noexcept {
  const std::uint64_t polls = netpoll_worker_polls();
  std::int64_t wait = deadline == INT64_MAX ? netpoll_rest_tick : deadline - now;
  if (wait > netpoll_rest_tick) wait = netpoll_rest_tick;
  timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
  pollfd p{evfd_, POLLIN, 0};
  const int r = sys_ppoll(&p, 1, &ts);
  netpoll_poller_unrest();
  if (r > 0) drain_eventfd();
  if (netpoll_worker_polls() != polls) return 0;
  return ::epoll_wait(epfd_, events, max_events, 0);
}

void poller::drain_eventfd() noexcept {
  std::uint64_t v;
  (void)!sys_read(evfd_, &v, sizeof v);
  wake_pending_.store(false, std::memory_order_release);
}

void poller::loop() noexcept {
  // Sleep exactly as long as asked: the default 50 us timer slack would
  // delay every short sleep_for by up to that much.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  tid_.store(static_cast<long>(::gettid()), std::memory_order_relaxed);
  ready_batch batch;
  set_ready_batch(&batch);
  epoll_event events[max_events];
  while (!stop_.load(std::memory_order_acquire)) {
    if (void (*hook)() = g_cycle_hook.load(std::memory_order_relaxed)) hook();
    const std::int64_t now = now_ns();
    const std::int64_t deadline = g_timers.fire_for_sleep(now, &batch.n);  // T2, T3
    perturb(perturb_site::poller_inject);  // timers fired, their fibers not yet injected
    // Timer wakeups (the batch holds nothing else here) go ahead of the
    // global queue's backlog, so a sleeper is not late by a queue's length.
    if (batch.n != 0) {
      inject(batch.fibers, batch.n, true);
      batch.n = 0;
      g_timers.delivered();  // T3
    }
    // Whatever fired (also into a buffer, readying nobody) is no longer a
    // live timer: let an idle sysmon judge again (deadlock.cpp D3).
    deadlock_recheck();
    const int n =
        netpoll_poller_rest() ? rest(now, deadline, events) : wait_all(now, deadline, events);
    // Descriptor events carry a non-zero tag (netpoll.cpp); 0 is the eventfd.
    int k = 0;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == 0) {
        drain_eventfd();
      } else {
        events[k++] = events[i];
      }
    }
    // Woken fibers go to the back of the global queue (the progress
    // signature covers the moment between their ready and this inject).
    if (k != 0) {
      netpoll_ready_events(events, k);
      perturb(perturb_site::poller_inject);
      if (batch.n != 0) inject(batch.fibers, batch.n);
      batch.n = 0;
    }
  }
  set_ready_batch(nullptr);
}

// ---- runtime/netpoll_contract.hpp ----

void netpoll_thread_start(unsigned nprocs_total, bool worker_poll) {
  g_poller.start(nprocs_total, worker_poll);
}
void netpoll_thread_stop() noexcept { g_poller.stop(); }
void netpoll_thread_destroy() noexcept { g_poller.destroy(); }
long netpoll_thread_tid() noexcept { return g_poller.thread_tid(); }
void netpoll_wake() noexcept { g_poller.wake(); }

}  // namespace weft::detail
