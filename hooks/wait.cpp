// wait.cpp: the hooked waits: poll, ppoll and select (what client libraries
// wait in), the sleeps, and getaddrinfo (common.hpp holds the design note).

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <vector>
#include <weft/blocking.hpp>
#include <weft/time.hpp>

#include "hooks/common.hpp"
#include "hooks/libc.hpp"

namespace weft::hooks {
namespace {

constexpr std::int64_t ns_per_s = 1000000000;

// deadline_after: now + ns, saturating; `ns` < 0 means none.
std::int64_t deadline_after(std::int64_t ns) noexcept {
  if (ns < 0) return hook_no_deadline;
  const std::int64_t now = weft::detail::hook_now();
  return ns >= hook_no_deadline - now ? hook_no_deadline : now + ns;
}

bool valid(const timespec& ts) noexcept {
  return ts.tv_sec >= 0 && ts.tv_nsec >= 0 && ts.tv_nsec < ns_per_s;
}

std::int64_t ns_of(const timespec& ts) noexcept {
  if (ts.tv_sec >= (hook_no_deadline - ts.tv_nsec) / ns_per_s) return hook_no_deadline;
  return static_cast<std::int64_t>(ts.tv_sec) * ns_per_s + ts.tv_nsec;
}

// sleep_ns: park the fiber for ns nanoseconds (forever when none).
void sleep_ns(std::int64_t ns) {
  if (ns == hook_no_deadline) {
    weft::sleep_until(std::chrono::steady_clock::time_point::max());
  } else {
    weft::sleep_for(std::chrono::nanoseconds(ns));
  }
}

// poll_until: poll's behaviour in a fiber, after a zero-timeout look found
// nothing ready.
int poll_until(pollfd* fds, nfds_t n, std::int64_t deadline) {
  if (n == 0) {  // poll as a sleep
    sleep_ns(deadline == hook_no_deadline ? deadline : deadline - weft::detail::hook_now());
    return 0;
  }
  return wait_ready(fds, n, deadline);
}

}  // namespace
}  // namespace weft::hooks

using weft::hooks::libc;

extern "C" {

int weft_hooks_wait_anchor = 0;  // see weft_hooks_io_anchor

int poll(pollfd* fds, nfds_t n, int timeout) {
  if (timeout == 0 || !weft::hooks::in_fiber()) return libc().poll(fds, n, timeout);
  const int r = libc().poll(fds, n, 0);
  if (r != 0) return r;
  return weft::hooks::poll_until(
      fds, n, weft::hooks::deadline_after(timeout < 0 ? -1 : std::int64_t{timeout} * 1000000));
}

int ppoll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* sigmask) {
  // With a signal mask the caller waits for signals too, which a parked
  // fiber cannot: libc's call, blocking the thread.
  if (sigmask != nullptr || !weft::hooks::in_fiber() ||
      (timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0)) {
    return libc().ppoll(fds, n, timeout, sigmask);
  }
  if (timeout != nullptr && !weft::hooks::valid(*timeout)) {
    weft::hooks::set_errno(EINVAL);
    return -1;
  }
  static const timespec zero{0, 0};
  const int r = libc().ppoll(fds, n, &zero, nullptr);
  if (r != 0) return r;
  return weft::hooks::poll_until(
      fds, n, weft::hooks::deadline_after(timeout == nullptr ? -1 : weft::hooks::ns_of(*timeout)));
}

int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  using namespace weft::hooks;
  if (!in_fiber() || nfds < 0 || nfds > FD_SETSIZE ||
      (timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_usec == 0)) {
    return libc().select(nfds, rd, wr, ex, timeout);
  }
  if (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_usec < 0)) {
    set_errno(EINVAL);
    return -1;
  }
  const std::int64_t deadline =
      deadline_after(timeout == nullptr ? -1
                                        : static_cast<std::int64_t>(timeout->tv_sec) * ns_per_s +
                                              static_cast<std::int64_t>(timeout->tv_usec) * 1000);
  // Each round asks select itself with a zero timeout, so the sets it
  // returns are the kernel's; the wait in between is poll's.
  const fd_set none{};
  const fd_set want_rd = rd != nullptr ? *rd : none, want_wr = wr != nullptr ? *wr : none,
               want_ex = ex != nullptr ? *ex : none;
  std::vector<pollfd> fds;
  for (int fd = 0; fd < nfds; ++fd) {
    short ev = 0;
    if (FD_ISSET(fd, &want_rd)) ev |= POLLIN;
    if (FD_ISSET(fd, &want_wr)) ev |= POLLOUT;
    if (FD_ISSET(fd, &want_ex)) ev |= POLLPRI;
    if (ev != 0) fds.push_back({fd, ev, 0});
  }
  fd_waiter w(fds.data(), fds.size(), deadline);
  for (;;) {
    timeval zero{0, 0};
    if (rd != nullptr) *rd = want_rd;
    if (wr != nullptr) *wr = want_wr;
    if (ex != nullptr) *ex = want_ex;
    const int r = libc().select(nfds, rd, wr, ex, &zero);
    if (r != 0) {
      if (r > 0 && timeout != nullptr) {
        // Linux reports the time left.
        const std::int64_t left = deadline - weft::detail::hook_now();
        timeout->tv_sec = left > 0 ? left / ns_per_s : 0;
        timeout->tv_usec = left > 0 ? (left % ns_per_s) / 1000 : 0;
      }
      return r;
    }
    if (fds.empty()) {
      sleep_ns(deadline == hook_no_deadline ? deadline : deadline - weft::detail::hook_now());
    } else {
      const int e = w.wait();
      if (e != 0 && e != ETIMEDOUT) {
        // Cannot wait on the netpoller: libc's call for the time left.
        timeval left{};
        timeval* tp = nullptr;
        if (deadline != hook_no_deadline) {
          const std::int64_t ns = std::max<std::int64_t>(0, deadline - weft::detail::hook_now());
          left = {static_cast<time_t>(ns / ns_per_s),
                  static_cast<suseconds_t>(ns % ns_per_s / 1000)};
          tp = &left;
        }
        return libc().select(nfds, rd, wr, ex, tp);
      }
    }
    if (deadline != hook_no_deadline && deadline <= weft::detail::hook_now()) {
      if (rd != nullptr) FD_ZERO(rd);
      if (wr != nullptr) FD_ZERO(wr);
      if (ex != nullptr) FD_ZERO(ex);
      if (timeout != nullptr) *timeout = timeval{0, 0};
      return 0;
    }
  }
}

int __poll_chk(pollfd* fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return poll(fds, n, timeout);
}

int __ppoll_chk(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* ss, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return ppoll(fds, n, timeout, ss);
}

// ---- sleeps: a parked fiber is never interrupted, so they return 0 ----

int nanosleep(const timespec* req, timespec* rem) {
  if (!weft::hooks::in_fiber() || req == nullptr) return libc().nanosleep(req, rem);
  if (!weft::hooks::valid(*req)) {
    weft::hooks::set_errno(EINVAL);
    return -1;
  }
  weft::hooks::sleep_ns(weft::hooks::ns_of(*req));
  return 0;
}

int clock_nanosleep(clockid_t clock, int flags, const timespec* req, timespec* rem) {
  // Clocks a fiber can sleep on: the steady one, and the ones that advance
  // with it (a wall-clock jump during the sleep is not followed).
  const bool known = clock == CLOCK_MONOTONIC || clock == CLOCK_REALTIME ||
                     clock == CLOCK_BOOTTIME || clock == CLOCK_TAI;
  if (!known || req == nullptr || !weft::hooks::in_fiber()) {
    return libc().clock_nanosleep(clock, flags, req, rem);
  }
  if (!weft::hooks::valid(*req)) return EINVAL;
  std::int64_t ns = weft::hooks::ns_of(*req);
  if ((flags & TIMER_ABSTIME) != 0) {
    timespec now{};
    ::clock_gettime(clock, &now);
    ns = ns == weft::hooks::hook_no_deadline ? ns : ns - weft::hooks::ns_of(now);
    if (ns <= 0) return 0;
  }
  weft::hooks::sleep_ns(ns);
  return 0;
}

int usleep(useconds_t us) {
  if (!weft::hooks::in_fiber()) return libc().usleep(us);
  weft::hooks::sleep_ns(std::int64_t{us} * 1000);
  return 0;
}

unsigned int sleep(unsigned int s) {
  if (!weft::hooks::in_fiber()) return libc().sleep(s);
  weft::hooks::sleep_ns(std::int64_t{s} * weft::hooks::ns_per_s);
  return 0;
}

// ---- name resolution ----

int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  if (!weft::hooks::in_fiber()) return libc().getaddrinfo(node, service, hints, res);
  // Numeric hosts (and none at all) need no resolver: answer inline, as Go
  // does, rather than tie up a thread.
  unsigned char addr[sizeof(in6_addr)];
  const bool numeric =
      node == nullptr || (hints != nullptr && (hints->ai_flags & AI_NUMERICHOST) != 0) ||
      ::inet_pton(AF_INET, node, addr) == 1 || ::inet_pton(AF_INET6, node, addr) == 1;
  if (numeric) return libc().getaddrinfo(node, service, hints, res);
  return weft::blocking([&] { return libc().getaddrinfo(node, service, hints, res); });
}

}  // extern "C"
