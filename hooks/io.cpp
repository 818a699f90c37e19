// io.cpp: the hooked descriptor calls: reads, writes, accept, connect, and
// the calls that create, close or replace descriptors (common.hpp holds
// the design note).

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hooks/common.hpp"
#include "hooks/libc.hpp"

namespace weft::hooks {
namespace {

constexpr int dir_read = 0;
constexpr int dir_write = 1;

// fail: return -1 with errno `e`.
ssize_t fail(int e) noexcept {
  set_errno(e);
  return -1;
}

// sock_wait_errno: the errno a blocking socket call reports when its wait
// ends without the call succeeding.
int sock_wait_errno(int e) noexcept { return e == ETIMEDOUT ? EAGAIN : e; }

// recv_blocking: a read-side socket call got EAGAIN with MSG_DONTWAIT;
// make it behave as on a blocking socket. `attempt()` repeats it.
template <class Attempt>
ssize_t recv_blocking(int fd, int saved, Attempt attempt) {
  if (user_nonblocking(fd)) return fail(EAGAIN);
  fd_waiter w(fd, POLLIN, sock_deadline(fd, dir_read));
  for (;;) {
    const int e = w.wait();
    if (e != 0) return fail(sock_wait_errno(e));
    const ssize_t r = attempt();
    if (r >= 0) {
      set_errno(saved);
      return r;
    }
    if (get_errno() != EAGAIN) return -1;
  }
}

// send_blocking: a write-side socket call queued `first` of `total` bytes
// (or got EAGAIN: first < 0) with MSG_DONTWAIT; like the kernel on a
// blocking socket, go on until everything is queued, an error or the
// SO_SNDTIMEO timeout, and return what was queued if anything was.
// `attempt(done)` sends from byte `done` on.
template <class Attempt>
ssize_t send_blocking(int fd, std::size_t total, ssize_t first, int saved, Attempt attempt) {
  if (user_nonblocking(fd)) return first >= 0 ? first : fail(EAGAIN);
  std::size_t done = first > 0 ? static_cast<std::size_t>(first) : 0;
  fd_waiter w(fd, POLLOUT, sock_deadline(fd, dir_write));
  while (done < total) {
    const int e = w.wait();
    if (e != 0) {
      if (done > 0) break;
      return fail(sock_wait_errno(e));
    }
    const ssize_t r = attempt(done);
    if (r >= 0) {
      done += static_cast<std::size_t>(r);
      continue;
    }
    if (get_errno() != EAGAIN) {
      if (done > 0) break;
      return -1;
    }
  }
  set_errno(saved);
  return static_cast<ssize_t>(done);
}

// poll_first: a call with no per-call non-blocking flag (accept, and any
// call on a pipe, tty or eventfd): wait until the descriptor is ready, then
// make it. `deadline_opt`: SO_RCVTIMEO for accept; on timeout: EAGAIN.
template <class Call>
ssize_t poll_first(int fd, short events, int opt_dir, Call call) {
  pollfd p{fd, events, 0};
  if (libc().poll(&p, 1, 0) != 0 || user_nonblocking(fd)) return call();
  const int saved = get_errno();
  const std::int64_t deadline = opt_dir >= 0 ? sock_deadline(fd, opt_dir) : hook_no_deadline;
  const int r = wait_ready(&p, 1, deadline);
  if (r == 0) return fail(EAGAIN);
  if (r < 0) return -1;
  if ((p.revents & POLLNVAL) != 0) return fail(EBADF);
  set_errno(saved);
  return call();
}

// advance: the iovecs left after `done` bytes of `iov`.
std::vector<iovec> advance(const iovec* iov, int cnt, std::size_t done) {
  std::vector<iovec> rest;
  for (int i = 0; i < cnt; ++i) {
    if (done >= iov[i].iov_len) {
      done -= iov[i].iov_len;
      continue;
    }
    rest.push_back({static_cast<char*>(iov[i].iov_base) + done, iov[i].iov_len - done});
    done = 0;
  }
  return rest;
}

std::size_t total_of(const iovec* iov, std::size_t cnt) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < cnt; ++i) n += iov[i].iov_len;
  return n;
}

bool is_stream(int fd) noexcept {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

// ---- the socket calls, once we know fd is a socket and may park ----

ssize_t sock_recv(int fd, void* buf, std::size_t n, int flags, sockaddr* addr, socklen_t* alen) {
  const int saved = get_errno();
  const ssize_t r = libc().recvfrom(fd, buf, n, flags | MSG_DONTWAIT, addr, alen);
  if (r < 0 && get_errno() != EAGAIN) return r;
  const bool waitall = (flags & (MSG_WAITALL | MSG_PEEK)) == MSG_WAITALL;
  if (r >= 0 && (!waitall || r == 0 || static_cast<std::size_t>(r) == n || !is_stream(fd))) {
    return r;
  }
  if (!waitall) {
    return recv_blocking(
        fd, saved, [&] { return libc().recvfrom(fd, buf, n, flags | MSG_DONTWAIT, addr, alen); });
  }
  // MSG_WAITALL on a stream: the kernel returns only with all n bytes (or
  // at end of stream, an error or a timeout, with what it has).
  std::size_t done = r > 0 ? static_cast<std::size_t>(r) : 0;
  while (done < n) {
    const ssize_t k = recv_blocking(fd, saved, [&] {
      return libc().recvfrom(fd, static_cast<char*>(buf) + done, n - done, flags | MSG_DONTWAIT,
                             addr, alen);
    });
    if (k <= 0) {
      if (done > 0) break;
      return k;
    }
    done += static_cast<std::size_t>(k);
  }
  set_errno(saved);
  return static_cast<ssize_t>(done);
}

ssize_t sock_send(int fd, const void* buf, std::size_t n, int flags, const sockaddr* addr,
                  socklen_t alen) {
  const int saved = get_errno();
  const ssize_t r = libc().sendto(fd, buf, n, flags | MSG_DONTWAIT, addr, alen);
  if (r < 0 ? get_errno() != EAGAIN : static_cast<std::size_t>(r) == n) return r;
  return send_blocking(fd, n, r, saved, [&](std::size_t done) {
    return libc().sendto(fd, static_cast<const char*>(buf) + done, n - done, flags | MSG_DONTWAIT,
                         addr, alen);
  });
}

ssize_t sock_recvmsg(int fd, msghdr* msg, int flags) {
  const int saved = get_errno();
  const ssize_t r = libc().recvmsg(fd, msg, flags | MSG_DONTWAIT);
  if (r >= 0 || get_errno() != EAGAIN) return r;
  return recv_blocking(fd, saved, [&] { return libc().recvmsg(fd, msg, flags | MSG_DONTWAIT); });
}

ssize_t sock_sendmsg(int fd, const msghdr* msg, int flags) {
  const int saved = get_errno();
  const ssize_t r = libc().sendmsg(fd, msg, flags | MSG_DONTWAIT);
  const std::size_t total = total_of(msg->msg_iov, msg->msg_iovlen);
  if (r < 0 ? get_errno() != EAGAIN : static_cast<std::size_t>(r) == total) return r;
  return send_blocking(fd, total, r, saved, [&](std::size_t done) {
    std::vector<iovec> rest = advance(msg->msg_iov, static_cast<int>(msg->msg_iovlen), done);
    msghdr m = *msg;
    m.msg_iov = rest.data();
    m.msg_iovlen = rest.size();
    // Ancillary data went with the first bytes.
    if (done > 0) {
      m.msg_control = nullptr;
      m.msg_controllen = 0;
    }
    return libc().sendmsg(fd, &m, flags | MSG_DONTWAIT);
  });
}

// parked: should this call on `fd` be made to park rather than block? (A
// socket, pipe, tty or eventfd, from a fiber.) ENOTSOCK from a socket call
// means the kind was stale: the callers reclassify and go round once more.
fd_kind parking_kind(int fd) noexcept { return in_fiber() ? kind_of(fd) : fd_kind::plain; }

// The mode cache holds only "blocking" and "no timeout" (waiting.cpp): a
// change can make it wrong only by setting O_NONBLOCK or a timeout, so
// clearing them (hiredis's connect sets O_NONBLOCK and clears it again)
// leaves it alone.

// forward_fcntl: libc's fcntl or fcntl64 (`call`) with the hook's
// arguments; then a change that sets O_NONBLOCK empties the mode cache.
int forward_fcntl(int (*call)(int, int, ...), int fd, int cmd, va_list ap) noexcept {
  void* arg = va_arg(ap, void*);
  const int r = call(fd, cmd, arg);
  if (r != -1 && cmd == F_SETFL && (reinterpret_cast<std::uintptr_t>(arg) & O_NONBLOCK) != 0) {
    modes_changed();
  }
  return r;
}

// sets_timeout: SO_RCVTIMEO or SO_SNDTIMEO (either struct layout the kernel
// accepts) to anything but zero, or to a value this cannot read.
bool sets_timeout(int name, const void* value, socklen_t len) noexcept {
#if defined(SO_RCVTIMEO_NEW) && defined(SO_RCVTIMEO_OLD)
  const bool timeout = name == SO_RCVTIMEO_OLD || name == SO_RCVTIMEO_NEW ||
                       name == SO_SNDTIMEO_OLD || name == SO_SNDTIMEO_NEW;
#else
  const bool timeout = name == SO_RCVTIMEO || name == SO_SNDTIMEO;
#endif
  if (!timeout) return false;
  if (value == nullptr || len < static_cast<socklen_t>(2 * sizeof(std::int64_t))) return true;
  std::int64_t v[2];  // {seconds, microseconds}: timeval and the kernel's 64-bit layout
  std::memcpy(v, value, sizeof v);
  return v[0] != 0 || v[1] != 0;
}

bool stale_socket(int fd, ssize_t r) noexcept {
  if (r >= 0 || get_errno() != ENOTSOCK) return false;
  set_kind(fd, fd_kind::unknown);
  return true;
}

}  // namespace
}  // namespace weft::hooks

using weft::hooks::fd_kind;
using weft::hooks::libc;
using weft::hooks::parking_kind;

extern "C" {

// Named by the weft::hooks target's --undefined, so the linker keeps this
// object (CMakeLists.txt).
int weft_hooks_io_anchor = 0;

ssize_t read(int fd, void* buf, size_t n) {
  switch (parking_kind(fd)) {
    case fd_kind::socket: {
      const ssize_t r = weft::hooks::sock_recv(fd, buf, n, 0, nullptr, nullptr);
      return weft::hooks::stale_socket(fd, r) ? read(fd, buf, n) : r;
    }
    case fd_kind::pollable:
      return weft::hooks::poll_first(fd, POLLIN, -1, [&] { return libc().read(fd, buf, n); });
    default:
      return libc().read(fd, buf, n);
  }
}

ssize_t write(int fd, const void* buf, size_t n) {
  switch (parking_kind(fd)) {
    case fd_kind::socket: {
      const ssize_t r = weft::hooks::sock_send(fd, buf, n, 0, nullptr, 0);
      return weft::hooks::stale_socket(fd, r) ? write(fd, buf, n) : r;
    }
    case fd_kind::pollable:
      return weft::hooks::poll_first(fd, POLLOUT, -1, [&] { return libc().write(fd, buf, n); });
    default:
      return libc().write(fd, buf, n);
  }
}

ssize_t readv(int fd, const iovec* iov, int cnt) {
  switch (parking_kind(fd)) {
    case fd_kind::socket: {
      if (cnt < 0) break;  // libc reports EINVAL
      msghdr m{};
      m.msg_iov = const_cast<iovec*>(iov);
      m.msg_iovlen = static_cast<std::size_t>(cnt);
      const ssize_t r = weft::hooks::sock_recvmsg(fd, &m, 0);
      return weft::hooks::stale_socket(fd, r) ? readv(fd, iov, cnt) : r;
    }
    case fd_kind::pollable:
      return weft::hooks::poll_first(fd, POLLIN, -1, [&] { return libc().readv(fd, iov, cnt); });
    default:
      break;
  }
  return libc().readv(fd, iov, cnt);
}

ssize_t writev(int fd, const iovec* iov, int cnt) {
  switch (parking_kind(fd)) {
    case fd_kind::socket: {
      if (cnt < 0) break;
      msghdr m{};
      m.msg_iov = const_cast<iovec*>(iov);
      m.msg_iovlen = static_cast<std::size_t>(cnt);
      const ssize_t r = weft::hooks::sock_sendmsg(fd, &m, 0);
      return weft::hooks::stale_socket(fd, r) ? writev(fd, iov, cnt) : r;
    }
    case fd_kind::pollable:
      return weft::hooks::poll_first(fd, POLLOUT, -1, [&] { return libc().writev(fd, iov, cnt); });
    default:
      break;
  }
  return libc().writev(fd, iov, cnt);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr, socklen_t* alen) {
  if ((flags & MSG_DONTWAIT) != 0 || parking_kind(fd) != fd_kind::socket) {
    return libc().recvfrom(fd, buf, n, flags, addr, alen);
  }
  const ssize_t r = weft::hooks::sock_recv(fd, buf, n, flags, addr, alen);
  return weft::hooks::stale_socket(fd, r) ? libc().recvfrom(fd, buf, n, flags, addr, alen) : r;
}

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  if ((flags & MSG_DONTWAIT) != 0 || parking_kind(fd) != fd_kind::socket) {
    return libc().recv(fd, buf, n, flags);
  }
  const ssize_t r = weft::hooks::sock_recv(fd, buf, n, flags, nullptr, nullptr);
  return weft::hooks::stale_socket(fd, r) ? libc().recv(fd, buf, n, flags) : r;
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if ((flags & MSG_DONTWAIT) != 0 || parking_kind(fd) != fd_kind::socket) {
    return libc().recvmsg(fd, msg, flags);
  }
  const ssize_t r = weft::hooks::sock_recvmsg(fd, msg, flags);
  return weft::hooks::stale_socket(fd, r) ? libc().recvmsg(fd, msg, flags) : r;
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr, socklen_t alen) {
  if ((flags & MSG_DONTWAIT) != 0 || parking_kind(fd) != fd_kind::socket) {
    return libc().sendto(fd, buf, n, flags, addr, alen);
  }
  const ssize_t r = weft::hooks::sock_send(fd, buf, n, flags, addr, alen);
  return weft::hooks::stale_socket(fd, r) ? libc().sendto(fd, buf, n, flags, addr, alen) : r;
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  if ((flags & MSG_DONTWAIT) != 0 || parking_kind(fd) != fd_kind::socket) {
    return libc().send(fd, buf, n, flags);
  }
  const ssize_t r = weft::hooks::sock_send(fd, buf, n, flags, nullptr, 0);
  return weft::hooks::stale_socket(fd, r) ? libc().send(fd, buf, n, flags) : r;
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if ((flags & MSG_DONTWAIT) != 0 || parking_kind(fd) != fd_kind::socket) {
    return libc().sendmsg(fd, msg, flags);
  }
  const ssize_t r = weft::hooks::sock_sendmsg(fd, msg, flags);
  return weft::hooks::stale_socket(fd, r) ? libc().sendmsg(fd, msg, flags) : r;
}

int accept4(int fd, sockaddr* addr, socklen_t* alen, int flags) {
  int r;
  if (parking_kind(fd) == fd_kind::socket) {
    r = static_cast<int>(weft::hooks::poll_first(
        fd, POLLIN, 0, [&] { return libc().accept4(fd, addr, alen, flags); }));
  } else {
    r = libc().accept4(fd, addr, alen, flags);
  }
  if (r >= 0) weft::hooks::fresh(r, fd_kind::socket);
  return r;
}

int accept(int fd, sockaddr* addr, socklen_t* alen) {
  int r;
  if (parking_kind(fd) == fd_kind::socket) {
    r = static_cast<int>(
        weft::hooks::poll_first(fd, POLLIN, 0, [&] { return libc().accept(fd, addr, alen); }));
  } else {
    r = libc().accept(fd, addr, alen);
  }
  if (r >= 0) weft::hooks::fresh(r, fd_kind::socket);
  return r;
}

int connect(int fd, const sockaddr* addr, socklen_t alen) {
  using namespace weft::hooks;
  if (parking_kind(fd) != fd_kind::socket) return libc().connect(fd, addr, alen);
  const int fl = libc().fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_NONBLOCK) != 0) return libc().connect(fd, addr, alen);
  // Blocking socket: non-blocking for this one call, then wait for the
  // handshake (bounded by SO_SNDTIMEO, as the kernel's connect is).
  const int saved = get_errno();
  // libc's fcntl: the flags are back before anyone can see them, so the
  // mode cache need not hear of it.
  libc().fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  const int r = libc().connect(fd, addr, alen);
  const int e = get_errno();
  libc().fcntl(fd, F_SETFL, fl);
  if (r == 0 || e != EINPROGRESS) {
    set_errno(r == 0 ? saved : e);
    return r;
  }
  fd_waiter w(fd, POLLOUT, sock_deadline(fd, dir_write));
  for (;;) {
    const int we = w.wait();
    // A timed-out blocking connect reports EINPROGRESS (the handshake goes on).
    if (we != 0) return static_cast<int>(fail(we == ETIMEDOUT ? EINPROGRESS : we));
    pollfd p{fd, POLLOUT, 0};
    if (libc().poll(&p, 1, 0) == 0) continue;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -1;
    if (err != 0) return static_cast<int>(fail(err));
    set_errno(saved);
    return 0;
  }
}

// ---- descriptors created, closed, replaced ----

int close(int fd) {
  weft::hooks::fresh(fd, fd_kind::unknown);  // wakes its waiters: EBADF
  return libc().close(fd);
}

int dup2(int from, int to) noexcept {
  if (from != to) weft::hooks::fresh(to, fd_kind::unknown);
  return libc().dup2(from, to);
}

int dup3(int from, int to, int flags) noexcept {
  if (from != to) weft::hooks::fresh(to, fd_kind::unknown);
  return libc().dup3(from, to, flags);
}

int dup(int fd) noexcept {
  const int r = libc().dup(fd);
  if (r >= 0) weft::hooks::fresh(r, fd_kind::unknown);
  return r;
}

int socket(int domain, int type, int protocol) noexcept {
  const int r = libc().socket(domain, type, protocol);
  if (r >= 0) weft::hooks::fresh(r, fd_kind::socket);
  return r;
}

int socketpair(int domain, int type, int protocol, int sv[2]) noexcept {
  const int r = libc().socketpair(domain, type, protocol, sv);
  if (r == 0) {
    weft::hooks::fresh(sv[0], fd_kind::socket);
    weft::hooks::fresh(sv[1], fd_kind::socket);
  }
  return r;
}

int pipe(int fds[2]) noexcept {
  const int r = libc().pipe(fds);
  if (r == 0) {
    weft::hooks::fresh(fds[0], fd_kind::pollable);
    weft::hooks::fresh(fds[1], fd_kind::pollable);
  }
  return r;
}

int pipe2(int fds[2], int flags) noexcept {
  const int r = libc().pipe2(fds, flags);
  if (r == 0) {
    weft::hooks::fresh(fds[0], fd_kind::pollable);
    weft::hooks::fresh(fds[1], fd_kind::pollable);
  }
  return r;
}

int eventfd(unsigned int initval, int flags) noexcept {
  const int r = libc().eventfd(initval, flags);
  if (r >= 0) weft::hooks::fresh(r, fd_kind::pollable);
  return r;
}

// ---- calls that change what a blocking call waits for ----
// Made as the user asked; then the mode cache forgets what it knew
// (waiting.cpp). The variadic argument is an int or a pointer: passed on as
// a pointer-sized word, as glibc's own fcntl reads it.

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const int r = weft::hooks::forward_fcntl(libc().fcntl, fd, cmd, ap);
  va_end(ap);
  return r;
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const int r = weft::hooks::forward_fcntl(libc().fcntl64, fd, cmd, ap);
  va_end(ap);
  return r;
}

int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  const int r = libc().ioctl(fd, request, arg);
  // FIONBIO's argument is an int*: non-zero sets O_NONBLOCK.
  if (request == FIONBIO && r != -1 && (arg == nullptr || *static_cast<const int*>(arg) != 0)) {
    weft::hooks::modes_changed();
  }
  return r;
}

int setsockopt(int fd, int level, int name, const void* value, socklen_t len) noexcept {
  const int r = libc().setsockopt(fd, level, name, value, len);
  if (r == 0 && level == SOL_SOCKET && weft::hooks::sets_timeout(name, value, len)) {
    weft::hooks::modes_changed();
  }
  return r;
}

// _FORTIFY_SOURCE builds call these instead; check as glibc does, then hook.
ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return read(fd, buf, n);
}

ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __chk_fail();
  return recv(fd, buf, n, flags);
}

ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, sockaddr* addr,
                       socklen_t* alen) {
  if (n > buflen) __chk_fail();
  return recvfrom(fd, buf, n, flags, addr, alen);
}

}  // extern "C"
