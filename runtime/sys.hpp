#pragma once
// sys.hpp: the system calls the runtime makes on its own descriptors,
// issued with syscall(2) rather than through libc's wrappers. With
// weft::hooks linked, libc's names (read, write, close, poll, connect, ...)
// resolve to the hooks in the executable, and the runtime's own I/O (the
// poller's eventfd, /proc reads, a fatal message, weft::net's sockets) must
// never go through them: a hook may park the calling fiber, and a signal
// handler or the scheduler itself must not. Each returns -1 with errno set
// on failure, as libc's wrappers do (and, like them, is no cancellation
// point: a fiber cannot be cancelled by pthread_cancel anyway).

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "runtime/sanitizers.hpp"

#if WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace weft::detail {

// TSan learns from libc's wrappers that bytes written to a descriptor and
// read from it carry a happens-before edge (for sockets, one shared sync
// object: any write releases it, any read acquires it). These calls bypass
// the wrappers, so they say it themselves, with the same coarse model:
// without it, a program whose fibers hand data over a socket (a client and
// a server in one process, the usual test) got false race reports.
#if WEFT_TSAN
inline char tsan_io_sync;
inline void tsan_io_written() noexcept { __tsan_release(&tsan_io_sync); }
inline void tsan_io_read() noexcept { __tsan_acquire(&tsan_io_sync); }
#else
inline void tsan_io_written() noexcept {}
inline void tsan_io_read() noexcept {}
#endif

// last_errno: errno, for code that may have parked since the function
// began. errno is *__errno_location(), declared const, so the compiler
// may compute the thread's errno address once and reuse it after a park
// that resumed the fiber on another worker: it then reads the old
// thread's errno (the switch restores a fiber's errno into the new
// thread's slot: runtime/context.cpp). Out of line, the address is taken
// afresh on every call.
[[gnu::noinline]] inline int last_errno() noexcept {
  asm volatile("" ::: "memory");
  return errno;
}

inline ssize_t sys_read(int fd, void* buf, std::size_t n) noexcept {
  const ssize_t r = ::syscall(SYS_read, fd, buf, n);
  if (r >= 0) tsan_io_read();
  return r;
}
inline ssize_t sys_write(int fd, const void* buf, std::size_t n) noexcept {
  tsan_io_written();
  return ::syscall(SYS_write, fd, buf, n);
}
// sys_open: open(2), for a descriptor closed with sys_close. (Opened
// through libc and closed here, TSan would think the descriptor still open
// and report a race on the next one to get its number.)
inline int sys_open(const char* path, int flags) noexcept {
  return static_cast<int>(::syscall(SYS_openat, AT_FDCWD, path, flags, 0));
}
inline int sys_close(int fd) noexcept { return static_cast<int>(::syscall(SYS_close, fd)); }
inline int sys_ppoll(pollfd* fds, nfds_t n, const timespec* timeout) noexcept {
  return static_cast<int>(::syscall(SYS_ppoll, fds, n, timeout, nullptr, 0));
}
inline int sys_socket(int domain, int type, int protocol) noexcept {
  return static_cast<int>(::syscall(SYS_socket, domain, type, protocol));
}
inline int sys_connect(int fd, const sockaddr* addr, socklen_t len) noexcept {
  tsan_io_written();  // what the connecting side did happens before the accept
  return static_cast<int>(::syscall(SYS_connect, fd, addr, len));
}
inline int sys_accept4(int fd, sockaddr* addr, socklen_t* len, int flags) noexcept {
  const int r = static_cast<int>(::syscall(SYS_accept4, fd, addr, len, flags));
  if (r >= 0) tsan_io_read();
  return r;
}
// sys_send: a write that never raises SIGPIPE.
inline ssize_t sys_send(int fd, const void* buf, std::size_t n) noexcept {
  tsan_io_written();
  return ::syscall(SYS_sendto, fd, buf, n, MSG_NOSIGNAL, nullptr, 0);
}
inline int sys_epoll_create(int flags) noexcept {
  return static_cast<int>(::syscall(SYS_epoll_create1, flags));
}
inline int sys_eventfd(unsigned initval, int flags) noexcept {
  return static_cast<int>(::syscall(SYS_eventfd2, initval, flags));
}
inline int sys_pipe2(int fds[2], int flags) noexcept {
  return static_cast<int>(::syscall(SYS_pipe2, fds, flags));
}

}  // namespace weft::detail
