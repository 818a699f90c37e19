#pragma once
// common.hpp: what the libc hooks (the weft::hooks target) share.
//
// Purpose
//   Unmodified blocking code (hiredis, libcurl, libpq, the user's own read
//   and sleep calls) run in a fiber parks the fiber, not its worker thread.
//   Linking weft::hooks defines read, recv, poll, nanosleep, ... in the
//   executable; they win symbol lookup for every library in the process
//   (the executable comes first), and reach libc's own through libc()
//   (libc.cpp).
//
// Design
//   * Where a hook does nothing: outside a fiber (plain threads, inside
//     weft::blocking, no runtime running), in a forked child, on regular
//     files, directories and block devices (epoll refuses them; fd_kind),
//     and when the user's own call asks not to block (O_NONBLOCK on the
//     descriptor, MSG_DONTWAIT, a zero timeout). There the call is exactly
//     libc's.
//   * Sockets: the hook never changes the descriptor. A read becomes
//     recv(MSG_DONTWAIT), a write send(MSG_DONTWAIT) (the same system calls
//     for a socket, made non-blocking for this call only); on EAGAIN it asks
//     the kernel whether the user set O_NONBLOCK (F_GETFL) and which
//     SO_RCVTIMEO / SO_SNDTIMEO applies, parks on the netpoller until the
//     descriptor may be ready, and tries again. A blocking send returns once
//     everything is queued, as the kernel's does. So plain threads, other
//     processes sharing the socket and fcntl(F_GETFL) all see the user's
//     flags. The two answers are cached while they say "block, no timeout"
//     (two system calls per wait saved); fcntl, ioctl and setsockopt are
//     hooked only to invalidate that cache.
//     Rejected: setting O_NONBLOCK on the descriptor and keeping the user's
//     bit (libgo, libco): every other user of the open file (a plain thread,
//     a forked child, stdio, the shell sharing a tty) would see it, and
//     fcntl and ioctl would have to be hooked to hide it.
//   * Other pollable descriptors (pipes, eventfds, ttys) and accept, which
//     have no per-call non-blocking flag: poll first (ppoll with a zero
//     timeout), park until ready if not, then make the user's call. Another
//     process or plain thread taking the data between the two can still
//     block the worker for that call: the price of leaving the descriptor
//     alone. connect on a blocking socket sets O_NONBLOCK for the one call.
//   * Waiting (fd_waiter): one descriptor in one direction waits on the
//     netpoller's record of it, which stays registered with epoll until the
//     descriptor is closed (fd_hooks.hpp). Several descriptors (poll,
//     select), both directions, or a direction another fiber already waits
//     in with a deadline to keep: a private epoll set (level-triggered)
//     holding them, itself waited on through the netpoller.
//   * close, dup2 and dup3 wake the fibers waiting on the descriptor they
//     close or replace (EBADF) and drop its registration; calls that create
//     descriptors drop any stale record of the number they return (a
//     descriptor closed behind the hooks' back).
//   * errno: the kernel's, exactly; a call that succeeds after waiting
//     leaves errno as it found it. Every errno access after a possible park
//     goes through a non-inlined function: the fiber may have moved to
//     another thread, and the compiler may keep &errno in a register.
//   * The runtime's own I/O never comes here: it uses system calls directly
//     (runtime/sys.hpp). getaddrinfo from weft::net runs inside blocking(),
//     where the hook passes through.

#include <poll.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "netpoll/fd_hooks.hpp"

namespace weft::hooks {

using detail::hook_no_deadline;

// in_fiber: may this call park? False in a forked child (the runtime's
// threads do not exist there, though this thread's state says fiber).
bool in_fiber() noexcept;

// get_errno / set_errno: errno of the thread running the caller now.
int get_errno() noexcept;
void set_errno(int e) noexcept;

// fd_kind: what the hooks do with a descriptor, cached per descriptor
// number; reset by close, dup2, dup3 and the calls that create descriptors,
// and corrected when a socket call says ENOTSOCK.
enum class fd_kind : std::uint8_t { unknown, socket, pollable, plain };
fd_kind kind_of(int fd) noexcept;
void set_kind(int fd, fd_kind k) noexcept;
// fresh: `fd` was just created as `k`.
void fresh(int fd, fd_kind k) noexcept;

// user_nonblocking: the descriptor's O_NONBLOCK, as the user set it.
bool user_nonblocking(int fd) noexcept;
// sock_deadline: now + SO_RCVTIMEO (dir 0) or SO_SNDTIMEO (dir 1), or none.
std::int64_t sock_deadline(int fd, int dir) noexcept;
// Both answers are cached per descriptor while they say "wait, with no
// limit" (waiting.cpp, the mode cache). modes_changed: a hooked call may
// have changed O_NONBLOCK or a timeout of some open file; forget them all.
void modes_changed() noexcept;

// fd_waiter: park until one descriptor (one direction) or any of a set of
// pollfds may be ready. wait() returns 0 (make the call again), ETIMEDOUT,
// EBADF (the descriptor was closed or replaced), or another errno when the
// descriptors cannot be waited for on the netpoller (then make the plain
// call). The first wait() may return 0 at once: see fd_hooks.hpp on turns.
class fd_waiter {
 public:
  fd_waiter(int fd, short events, std::int64_t deadline) noexcept;
  fd_waiter(pollfd* fds, nfds_t n, std::int64_t deadline) noexcept;
  ~fd_waiter();
  fd_waiter(const fd_waiter&) = delete;
  fd_waiter& operator=(const fd_waiter&) = delete;
  int wait();

 private:
  int start();
  int start_private();

  pollfd one_{};
  pollfd* fds_;
  nfds_t n_;
  std::int64_t deadline_;
  detail::fd_turn turn_;
  int epfd_ = -1;  // the private epoll set, if any
  bool started_ = false;
};

// wait_ready: park until poll(fds, n, 0) reports something or `deadline`
// passes; returns poll's result (0 at the deadline). For poll, ppoll, and
// the calls that poll first.
int wait_ready(pollfd* fds, nfds_t n, std::int64_t deadline);

}  // namespace weft::hooks
