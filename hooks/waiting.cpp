// waiting.cpp: the hooks' shared machinery (common.hpp): when to act, what
// a descriptor is, and parking until descriptors may be ready.

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "hooks/common.hpp"
#include "hooks/libc.hpp"

namespace weft::hooks {
namespace {

// Set in a forked child (pthread_atfork), where no runtime thread exists.
std::atomic<bool> g_forked{false};

// Resolve libc's functions before main, while one thread runs, and learn
// about forks.
[[gnu::constructor]] void init() {
  libc();
  ::pthread_atfork(nullptr, nullptr, [] { g_forked.store(true, std::memory_order_relaxed); });
}

// The kind cache: 4096 descriptors per chunk, chunks installed by CAS and
// never freed; numbers past the table are classified on every call.
// Relaxed: a stale kind costs one reclassification (ENOTSOCK) or a call
// that blocks its thread, never a wrong result.
constexpr unsigned chunk_bits = 12;
constexpr std::size_t max_chunks = 256;
std::atomic<std::atomic<std::uint8_t>*> g_kinds[max_chunks];

std::atomic<std::uint8_t>* kind_slot(int fd, bool create) noexcept {
  const auto u = static_cast<unsigned>(fd);
  const std::size_t c = u >> chunk_bits;
  if (fd < 0 || c >= max_chunks) return nullptr;
  auto* chunk = g_kinds[c].load(std::memory_order_acquire);  // pairs with the CAS below
  if (chunk == nullptr) {
    if (!create) return nullptr;
    auto* fresh = new (std::nothrow) std::atomic<std::uint8_t>[std::size_t{1} << chunk_bits]();
    if (fresh == nullptr) return nullptr;
    if (g_kinds[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      chunk = fresh;
    } else {
      delete[] fresh;
    }
  }
  return &chunk[u & ((1u << chunk_bits) - 1)];
}

// classify: unknown when fstat fails (the call itself then reports EBADF).
fd_kind classify(int fd) noexcept {
  struct stat st;
  const int saved = errno;
  const int rc = ::fstat(fd, &st);
  errno = saved;
  if (rc != 0) return fd_kind::unknown;
  if (S_ISSOCK(st.st_mode)) return fd_kind::socket;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) return fd_kind::plain;
  return fd_kind::pollable;  // pipes, ttys, other devices, eventfd and other anonymous files
}

}  // namespace

bool in_fiber() noexcept {
  return !g_forked.load(std::memory_order_relaxed) && detail::hook_parkable();
}

[[gnu::noinline]] int get_errno() noexcept { return errno; }
[[gnu::noinline]] void set_errno(int e) noexcept { errno = e; }

fd_kind kind_of(int fd) noexcept {
  std::atomic<std::uint8_t>* slot = kind_slot(fd, true);
  if (slot != nullptr) {
    const auto k = static_cast<fd_kind>(slot->load(std::memory_order_relaxed));
    if (k != fd_kind::unknown) return k;
  }
  const fd_kind k = classify(fd);
  if (k == fd_kind::unknown) return fd_kind::plain;
  if (slot != nullptr) slot->store(static_cast<std::uint8_t>(k), std::memory_order_relaxed);
  return k;
}

void set_kind(int fd, fd_kind k) noexcept {
  if (std::atomic<std::uint8_t>* slot = kind_slot(fd, k != fd_kind::unknown)) {
    slot->store(static_cast<std::uint8_t>(k), std::memory_order_relaxed);
  }
}

void fresh(int fd, fd_kind k) noexcept {
  if (g_forked.load(std::memory_order_relaxed)) return;
  detail::hook_forget(fd);
  set_kind(fd, k);
}

bool user_nonblocking(int fd) noexcept {
  const int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

std::int64_t sock_deadline(int fd, int dir) noexcept {
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, dir == 0 ? SO_RCVTIMEO : SO_SNDTIMEO, &tv, &len) != 0 ||
      (tv.tv_sec == 0 && tv.tv_usec == 0)) {
    return hook_no_deadline;
  }
  return detail::hook_now() + static_cast<std::int64_t>(tv.tv_sec) * 1000000000 +
         static_cast<std::int64_t>(tv.tv_usec) * 1000;
}

// ---- fd_waiter ----

namespace {

constexpr short read_events = POLLIN | POLLRDNORM | POLLRDHUP;
constexpr short write_events = POLLOUT | POLLWRNORM;

// direction_of: 0 (read) or 1 (write) when `events` asks for one direction
// the netpoller's record tracks, else -1 (both, or urgent data).
int direction_of(short events) noexcept {
  if (events != 0 && (events & ~read_events) == 0) return 0;
  if (events != 0 && (events & ~write_events) == 0) return 1;
  return -1;
}

}  // namespace

fd_waiter::fd_waiter(int fd, short events, std::int64_t deadline) noexcept
    : one_{fd, events, 0}, fds_(&one_), n_(1), deadline_(deadline) {}

fd_waiter::fd_waiter(pollfd* fds, nfds_t n, std::int64_t deadline) noexcept
    : fds_(fds), n_(n), deadline_(deadline) {}

fd_waiter::~fd_waiter() {
  // Runs after the hook set its errno: keep it (deregistering a descriptor
  // dup2 replaced, say, fails with ENOENT).
  const int saved = get_errno();
  if (turn_.pd != nullptr) detail::hook_end_turn(turn_);
  if (epfd_ >= 0) {
    detail::hook_forget(epfd_);
    libc().close(epfd_);
  }
  set_errno(saved);
}

int fd_waiter::start() {
  started_ = true;
  const int dir = n_ == 1 ? direction_of(fds_[0].events) : -1;
  if (dir < 0) return start_private();
  // Without a deadline, queue behind another operation in this direction;
  // with one, do not wait for it (its wait might outlast our deadline).
  const int e = detail::hook_take_turn(fds_[0].fd, dir, deadline_ == hook_no_deadline, turn_);
  if (e == EBUSY) return start_private();
  return e;  // 0: try once more under the turn first (fd_hooks.hpp)
}

int fd_waiter::start_private() {
  // Level-triggered: readiness that exists now or later always shows, so
  // the first wait needs no retry.
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return get_errno();
  fresh(ep, fd_kind::pollable);
  epfd_ = ep;
  for (nfds_t i = 0; i < n_; ++i) {
    if (fds_[i].fd < 0) continue;
    epoll_event ev{};
    ev.events = static_cast<std::uint32_t>(fds_[i].events) &
                (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM |
                 EPOLLWRBAND | EPOLLRDHUP);
    ev.data.u64 = i;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fds_[i].fd, &ev) != 0 && errno == EEXIST) {
      // The same descriptor twice in the set: wait for anything on it.
      ev.events = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP;
      ::epoll_ctl(ep, EPOLL_CTL_MOD, fds_[i].fd, &ev);
    }
    // Others (EPERM: a regular file, always ready; EBADF) show in poll().
  }
  return detail::hook_take_turn(ep, 0, true, turn_);
}

int fd_waiter::wait() {
  if (!started_) {
    const int e = start();
    if (e != 0 || turn_.pd == nullptr || epfd_ < 0) return e;
  }
  return detail::hook_wait(turn_, deadline_);
}

int wait_ready(pollfd* fds, nfds_t n, std::int64_t deadline) {
  fd_waiter w(fds, n, deadline);
  for (;;) {
    const int r = libc().poll(fds, n, 0);
    if (r != 0) return r;
    const int e = w.wait();
    if (e == ETIMEDOUT) return 0;
    if (e == EBADF && n == 1) {
      fds[0].revents = POLLNVAL;  // closed (or replaced) while we waited
      return 1;
    }
    if (e != 0) {
      // Cannot wait on the netpoller: block the thread like libc.
      const std::int64_t now = detail::hook_now();
      const int ms =
          deadline == hook_no_deadline
              ? -1
              : static_cast<int>(deadline <= now ? 0 : (deadline - now + 999999) / 1000000);
      return libc().poll(fds, n, ms);
    }
  }
}

}  // namespace weft::hooks
