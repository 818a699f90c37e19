// poller.cpp: the poller thread's loop (see poller.hpp).

#include "netpoll/poller.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "netpoll/netpoll.hpp"
#include "runtime/scheduler.hpp"

namespace weft::detail {

std::int64_t now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void poller::start() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "weft: epoll_create1");
  evfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd_ < 0) {
    int e = errno;
    ::close(epfd_);
    throw std::system_error(e, std::generic_category(), "weft: eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // 0 = the eventfd
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev);
  netpoll_start(epfd_);
  stop_.store(false, std::memory_order_relaxed);
  thread_ = std::thread([this] { loop(); });
}

void poller::stop() {
  stop_.store(true, std::memory_order_release);
  // Force the write: wake_pending_ may be stale from before.
  const std::uint64_t one = 1;
  (void)!::write(evfd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

std::size_t poller::destroy() noexcept {
  lock_.lock();
  const std::size_t disposed = heap_.clear();
  lock_.unlock();
  netpoll_stop();
  if (evfd_ >= 0) ::close(evfd_);
  if (epfd_ >= 0) ::close(epfd_);
  evfd_ = epfd_ = -1;
  return disposed;
}

void poller::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  const std::uint64_t one = 1;
  (void)!::write(evfd_, &one, sizeof one);
}

void poller::add_timer_locked(timer* t) {
  heap_.push(t);
  earliest_.store(heap_.top()->when, std::memory_order_relaxed);
  if (t->when < sleep_until_) {
    sleep_until_ = t->when;
    wake();
  }
}

bool poller::cancel_timer_locked(timer* t) noexcept {
  if (t->index == timer::npos) return false;
  heap_.remove(t);
  earliest_.store(heap_.empty() ? INT64_MAX : heap_.top()->when, std::memory_order_relaxed);
  return true;
}

void poller::fire_due(std::int64_t now) noexcept {
  if (earliest_.load(std::memory_order_relaxed) > now || !lock_.try_lock()) return;
  fire_due_locked(now);
  lock_.unlock();
}

std::size_t poller::timers_pending() noexcept {
  lock_.lock();
  const std::size_t n = heap_.size();
  lock_.unlock();
  return n;
}

std::int64_t poller::fire_due_locked(std::int64_t now) noexcept {
  while (!heap_.empty()) {
    timer* t = heap_.top();
    if (t->when > now) {
      earliest_.store(t->when, std::memory_order_relaxed);
      return t->when;
    }
    heap_.remove(t);
    if (t->period > 0) {
      // Re-arm from the scheduled time, skipping ticks already missed.
      t->when += t->period;
      if (t->when <= now) t->when = now + t->period - (now - t->when) % t->period;
      heap_.push(t);
    }
    t->fire(t);  // may free t if it was not re-armed (one-shot, runtime-owned)
  }
  earliest_.store(INT64_MAX, std::memory_order_relaxed);
  return INT64_MAX;
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
  const int r = ::ppoll(&p, 1, &ts, nullptr);
  netpoll_poller_unrest();
  if (r > 0) drain_eventfd();
  if (netpoll_worker_polls() != polls) return 0;
  return ::epoll_wait(epfd_, events, max_events, 0);
}

void poller::drain_eventfd() noexcept {
  std::uint64_t v;
  (void)!::read(evfd_, &v, sizeof v);
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
    lock_.lock();
    const std::int64_t now = now_ns();
    const std::int64_t deadline = fire_due_locked(now);
    sleep_until_ = deadline;
    lock_.unlock();
    if (batch.n != 0) {
      inject(batch.fibers, batch.n);
      batch.n = 0;
    }
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
    // Woken fibers go into `batch`, injected at the top of the loop.
    if (k != 0) netpoll_ready_events(events, k);
  }
  set_ready_batch(nullptr);
}

}  // namespace weft::detail
